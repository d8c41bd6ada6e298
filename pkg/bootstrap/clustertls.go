package bootstrap

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
)

// clusterTLS is the TLS config a client built from the talosconfig context uses, parsed once.
// machinery's client builds it on every dial (client/connection.go, buildTLSConfig), and
// parsing the key pair expands the ed25519 key each time: while `up` waits for a booting or
// installing node it dials every PollInterval/8, which made that parse most of talforge's CPU
// time in the apply phase (issue 16). gRPC clones the config for each connection
// (credentials.NewTLS), so one value serves every dial.
//
// It returns nil, and the clients fall back to machinery's own path, when the context
// routes or authenticates calls in ways a bare TLS config does not carry (a proxy, basic or
// SideroV1 auth: machinery skips those when given a TLS config).
func clusterTLS(ctx *clientconfig.Context) (*tls.Config, error) {
	if ctx.ProxyURL != "" || ctx.Auth.Basic != nil || ctx.Auth.SideroV1 != nil {
		return nil, nil
	}

	caPEM, err := base64.StdEncoding.DecodeString(ctx.CA)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("CA: no PEM certificate")
	}

	crt, err := client.CertificateFromConfigContext(ctx)
	if err != nil {
		return nil, err
	}

	cfg := &tls.Config{RootCAs: roots}
	if crt != nil {
		cfg.Certificates = []tls.Certificate{*crt}
	}

	return cfg, nil
}
