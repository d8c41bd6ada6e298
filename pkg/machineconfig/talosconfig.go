package machineconfig

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"slices"
	"time"

	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/role"
)

// RenewBefore is how close to expiry a stored client certificate gets replaced: the
// talosconfig's by Talosconfig, the kubeconfig's by the next command that needs it.
const RenewBefore = 30 * 24 * time.Hour

// RenewalDue reports whether a certificate that expires at notAfter is to be renewed now.
func RenewalDue(notAfter, now time.Time) bool { return notAfter.Sub(now) < RenewBefore }

// TalosconfigExpiry is when the client certificate of the talosconfig's current context
// expires.
func TalosconfigExpiry(data []byte) (time.Time, error) {
	cfg, err := clientconfig.FromBytes(data)
	if err != nil {
		return time.Time{}, fmt.Errorf("talosconfig: %w", err)
	}

	ctx := cfg.Contexts[cfg.Context]
	if ctx == nil || ctx.Crt == "" {
		return time.Time{}, fmt.Errorf("talosconfig: context %q has no client certificate", cfg.Context)
	}

	crt, err := parseCert(ctx.Crt)
	if err != nil {
		return time.Time{}, fmt.Errorf("talosconfig: client certificate: %w", err)
	}

	return crt.NotAfter, nil
}

// Talosconfig returns the cluster's talosconfig: one context named after the cluster, the
// control planes' IPs as endpoints (not the VIP, which needs a healthy cluster) and no default
// nodes, so that every talosctl call names its target.
//
// The client certificate is kept from existing (a previously generated talosconfig) while it
// is signed by the cluster's CA and valid for more than 30 days: minting a new one on every
// run would change the file every time.
func (g *Generator) Talosconfig(existing []byte) ([]byte, error) {
	name := g.cluster.Metadata.Name
	endpoints := g.cluster.ControlPlaneIPs()
	caCrt := g.bundle.Certs.OS.Crt

	if ctx := g.reusableContext(existing, name); ctx != nil {
		cfg := &clientconfig.Config{Context: name, Contexts: map[string]*clientconfig.Context{name: {
			Endpoints: endpoints,
			CA:        base64.StdEncoding.EncodeToString(caCrt),
			Crt:       ctx.Crt,
			Key:       ctx.Key,
		}}}

		return cfg.Bytes()
	}

	cert, err := g.bundle.GenerateTalosAPIClientCertificate(role.MakeSet(role.Admin))
	if err != nil {
		return nil, fmt.Errorf("talosconfig client certificate: %w", err)
	}

	return clientconfig.NewConfig(name, endpoints, caCrt, cert).Bytes()
}

func (g *Generator) reusableContext(existing []byte, name string) *clientconfig.Context {
	if len(existing) == 0 {
		return nil
	}

	old, err := clientconfig.FromBytes(existing)
	if err != nil {
		return nil
	}

	ctx := old.Contexts[name]
	if ctx == nil || ctx.Crt == "" || ctx.Key == "" {
		return nil
	}

	crt, err := parseCert(ctx.Crt)
	if err != nil || RenewalDue(crt.NotAfter, time.Now()) {
		return nil
	}

	ca, err := parseCert(base64.StdEncoding.EncodeToString(g.bundle.Certs.OS.Crt))
	if err != nil || crt.CheckSignatureFrom(ca) != nil {
		return nil
	}

	if !slices.Contains(crt.Subject.Organization, string(role.Admin)) {
		return nil
	}

	return ctx
}

func parseCert(b64 string) (*x509.Certificate, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, err
	}

	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("no PEM certificate")
	}

	return x509.ParseCertificate(block.Bytes)
}
