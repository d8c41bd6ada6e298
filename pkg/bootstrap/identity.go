package bootstrap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
)

// Identity dials nodes as a talosconfig's current context: its CA and client certificate.
// Build it with NewIdentity once per command and share it: it holds no connection.
type Identity struct {
	config *clientconfig.Config
	// tls is the context's TLS config, parsed once (nil: machinery builds it on every dial).
	tls *tls.Config
}

// NewIdentity parses tc's current context. A context that does not exist, or whose CA,
// certificate or key does not parse or match, is an error here rather than on every call.
func NewIdentity(tc *clientconfig.Config) (*Identity, error) {
	ctx, ok := tc.Contexts[tc.Context]
	if !ok || ctx == nil {
		return nil, fmt.Errorf("its current context %q does not exist", tc.Context)
	}

	cfg, err := clusterTLS(ctx)
	if err != nil {
		return nil, fmt.Errorf("context %q: %w", tc.Context, err)
	}

	return &Identity{config: tc, tls: cfg}, nil
}

// ParseIdentity is NewIdentity of a talosconfig's bytes.
func ParseIdentity(talosconfig []byte) (*Identity, error) {
	tc, err := clientconfig.FromBytes(talosconfig)
	if err != nil {
		return nil, err
	}

	return NewIdentity(tc)
}

// Client dials one node's Talos API (host:port) with the identity.
func (id *Identity) Client(ctx context.Context, endpoint string) (*client.Client, error) {
	opts := []client.OptionFunc{client.WithConfig(id.config), client.WithEndpoints(endpoint)}
	if id.tls != nil {
		opts = append(opts, client.WithTLSConfig(id.tls)) // the config stays for the cluster name
	}

	return client.New(ctx, opts...)
}

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

	cfg := &tls.Config{}

	// As buildTLSConfig: a context without a CA trusts the system's roots.
	if ctx.CA != "" {
		caPEM, err := base64.StdEncoding.DecodeString(ctx.CA)
		if err != nil {
			return nil, fmt.Errorf("CA: %w", err)
		}

		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("CA: no PEM certificate")
		}
	}

	crt, err := client.CertificateFromConfigContext(ctx)
	if err != nil {
		return nil, err
	}

	if crt != nil {
		cfg.Certificates = []tls.Certificate{*crt}
	}

	return cfg, nil
}
