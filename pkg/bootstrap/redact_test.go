package bootstrap

import (
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
)

// indented is a PEM key as a YAML dump in an error message quotes it: line by line, indented.
func indented(pem []byte) string {
	var b strings.Builder

	for line := range strings.Lines(string(pem)) {
		b.WriteString("        " + line)
	}

	return b.String()
}

// TestSecretStrings: every secret of the bundle that a generated config carries is found, so node messages
// quoting the config can be scrubbed; public values are not.
func TestSecretStrings(t *testing.T) {
	contract, err := config.ParseContractFromVersion("v1.14.1")
	if err != nil {
		t.Fatal(err)
	}

	bundle, err := secrets.NewBundle(secrets.NewFixedClock(time.Now()), contract)
	if err != nil {
		t.Fatal(err)
	}

	input, err := generate.NewInput("redact", "https://10.0.0.10:6443", "1.37.0", generate.WithSecretsBundle(bundle), generate.WithVersionContract(contract))
	if err != nil {
		t.Fatal(err)
	}

	enc := base64.StdEncoding.EncodeToString

	for _, tt := range []struct {
		typ  machine.Type
		want map[string]string
	}{
		{machine.TypeControlPlane, map[string]string{
			"machine token":       bundle.TrustdInfo.Token,
			"bootstrap token":     bundle.Secrets.BootstrapToken,
			"secretbox secret":    bundle.Secrets.SecretboxEncryptionSecret,
			"cluster secret":      bundle.Cluster.Secret,
			"OS CA key":           enc(bundle.Certs.OS.Key),
			"Kubernetes CA key":   indented(bundle.Certs.K8s.Key),
			"etcd CA key":         enc(bundle.Certs.Etcd.Key),
			"service account key": indented(bundle.Certs.K8sServiceAccount.Key),
		}},
		{machine.TypeWorker, map[string]string{
			"machine token":  bundle.TrustdInfo.Token,
			"cluster secret": bundle.Cluster.Secret,
		}},
	} {
		t.Run(tt.typ.String(), func(t *testing.T) {
			cfg, err := input.Config(tt.typ)
			if err != nil {
				t.Fatal(err)
			}

			found, err := secretStrings(cfg)
			if err != nil {
				t.Fatal(err)
			}

			var s scrubber
			s.add(found)

			for name, secret := range tt.want {
				scrubbed := s.scrub("node says: " + secret + " is wrong")

				for line := range strings.Lines(secret) {
					if line = strings.TrimSpace(line); len(line) > 16 && !strings.HasPrefix(line, "-----") && strings.Contains(scrubbed, line) {
						t.Errorf("%s is not scrubbed: %q survives", name, line)
					}
				}
			}

			for _, public := range []string{"redact", "https://10.0.0.10:6443", enc(bundle.Certs.OS.Crt)} {
				if slices.Contains(found, public) {
					t.Errorf("public value %.20q is treated as a secret", public)
				}
			}
		})
	}
}
