package bootstrap

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
)

// talosContext is a talosconfig context with a fresh CA and an admin certificate it signed.
func talosContext(t *testing.T) *clientconfig.Context {
	t.Helper()

	caPub, caKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"talos"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}

	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caPub, caKey)
	if err != nil {
		t.Fatal(err)
	}

	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	crtDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{Organization: []string{"os:admin"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		caTmpl, pub, caKey)
	if err != nil {
		t.Fatal(err)
	}

	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}

	b64 := func(typ string, der []byte) string {
		return base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}

	return &clientconfig.Context{CA: b64("CERTIFICATE", caDER), Crt: b64("CERTIFICATE", crtDER), Key: b64("PRIVATE KEY", keyDER)}
}

func TestNewIdentity(t *testing.T) {
	for _, tc := range []struct {
		name     string
		change   func(*clientconfig.Context)
		fallback bool
		noRoots  bool
		fails    string
	}{
		{name: "certificates only", change: func(*clientconfig.Context) {}},
		{name: "no CA: the system's roots, as machinery", change: func(c *clientconfig.Context) { c.CA = "" }, noRoots: true},
		{name: "a proxy", change: func(c *clientconfig.Context) { c.ProxyURL = "http://proxy:3128" }, fallback: true},
		{name: "basic auth", change: func(c *clientconfig.Context) { c.Auth.Basic = &clientconfig.Basic{Username: "u", Password: "p"} }, fallback: true},
		{name: "SideroV1 auth", change: func(c *clientconfig.Context) { c.Auth.SideroV1 = &clientconfig.SideroV1{Identity: "me"} }, fallback: true},
		{name: "a CA that is not base64", change: func(c *clientconfig.Context) { c.CA = "not base64!" }, fails: `context "lab": CA: illegal base64`},
		{name: "a CA that is not PEM", change: func(c *clientconfig.Context) { c.CA = base64.StdEncoding.EncodeToString([]byte("junk")) }, fails: `context "lab": CA: no PEM certificate`},
		{name: "a key of another certificate", change: func(c *clientconfig.Context) { c.Key = talosContext(t).Key }, fails: `context "lab": `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := talosContext(t)
			tc.change(ctx)

			id, err := NewIdentity(&clientconfig.Config{Context: "lab", Contexts: map[string]*clientconfig.Context{"lab": ctx}})

			switch {
			case tc.fails != "":
				if err == nil || !strings.HasPrefix(err.Error(), tc.fails) {
					t.Fatalf("error %v, want one starting %q", err, tc.fails)
				}
			case err != nil:
				t.Fatal(err)
			case tc.fallback:
				if id.tls != nil {
					t.Fatal("a TLS config for a context that needs machinery's own dial path")
				}
			case id.tls == nil || (id.tls.RootCAs == nil) != tc.noRoots || len(id.tls.Certificates) != 1 || id.tls.Certificates[0].PrivateKey == nil:
				t.Fatalf("config %+v: want the CA as root (none: %v) and the admin key pair", id.tls, tc.noRoots)
			}
		})
	}

	t.Run("a current context that does not exist", func(t *testing.T) {
		_, err := NewIdentity(&clientconfig.Config{Context: "gone", Contexts: map[string]*clientconfig.Context{"lab": talosContext(t)}})
		if err == nil || err.Error() != `its current context "gone" does not exist` {
			t.Fatalf("error %v", err)
		}
	})
}
