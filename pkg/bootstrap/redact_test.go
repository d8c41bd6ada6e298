package bootstrap

import (
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
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

// patched applies strategic-merge or JSON6902 patches to a config, as machinery does.
func patched(t *testing.T, cfg config.Provider, patches ...string) config.Provider {
	t.Helper()

	loaded, err := configpatcher.LoadPatches(patches)
	if err != nil {
		t.Fatal(err)
	}

	out, err := configpatcher.Apply(configpatcher.WithConfig(cfg), loaded)
	if err != nil {
		t.Fatal(err)
	}

	c, err := out.Config()
	if err != nil {
		t.Fatal(err)
	}

	return c
}

func testConfig(t *testing.T) config.Provider {
	t.Helper()

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

	cfg, err := input.Config(machine.TypeControlPlane)
	if err != nil {
		t.Fatal(err)
	}

	return cfg
}

// TestRedactedDiffOfSecretBearingPatches: the diff plan and apply print for a patch that adds
// secrets machinery does not know (environment, proxy URL with a password, manifest headers,
// an inline Secret, registry auth) shows the changed keys and none of the values; the node
// messages are scrubbed of them too.
func TestRedactedDiffOfSecretBearingPatches(t *testing.T) {
	live := testConfig(t)
	desired := patched(t, live, `machine:
  env:
    HTTPS_PROXY: https://proxyuser:hunter2-proxy@proxy.lab:3128
  registries:
    config:
      registry.lab:
        auth: {username: robot, password: hunter2-registry}
cluster:
  extraManifestHeaders:
    Authorization: Bearer hunter2-header
  inlineManifests:
    - name: creds
      contents: |
        apiVersion: v1
        kind: Secret
        stringData: {password: hunter2-inline}
---
apiVersion: v1alpha1
kind: TimeSyncConfig
ntp:
  servers: [time.example.org]
`)

	changed, diff, err := redactedDiff(live, desired)
	if err != nil || !changed {
		t.Fatalf("changed %v, err %v", changed, err)
	}

	if strings.Contains(diff, "hunter2") {
		t.Errorf("the diff shows a secret:\n%s", diff)
	}

	for _, want := range []string{"+        HTTPS_PROXY: '******'", "+        Authorization: '******'", "+        - name: creds", "+        - time.example.org"} {
		if !strings.Contains(diff, want) {
			t.Errorf("the diff lacks %q:\n%s", want, diff)
		}
	}

	found, err := secretStrings(desired)
	if err != nil {
		t.Fatal(err)
	}

	var s scrubber
	s.add(found)

	if msg := s.scrub("node says: bad header Bearer hunter2-header, proxy https://proxyuser:hunter2-proxy@proxy.lab:3128"); strings.Contains(msg, "hunter2") {
		t.Errorf("node message not scrubbed: %s", msg)
	}
}

// TestRedactedDiffIsLeakChecked: a value that passes redaction (an allow-listed field) but
// looks like a secret is refused rather than printed.
func TestRedactedDiffIsLeakChecked(t *testing.T) {
	live := testConfig(t)
	desired := patched(t, live, "apiVersion: v1alpha1\nkind: HostnameConfig\nhostname: abcdef.0123456789abcdef\n")

	_, diff, err := redactedDiff(live, desired)
	if err == nil || !strings.Contains(err.Error(), "refusing to print the config diff") || !strings.Contains(err.Error(), "bootstrap token") {
		t.Fatalf("err = %v, diff:\n%s", err, diff)
	}

	if strings.Contains(err.Error(), "0123456789abcdef") {
		t.Errorf("the error quotes the value: %v", err)
	}
}
