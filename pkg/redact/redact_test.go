package redact

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	yaml "go.yaml.in/yaml/v4"
)

// canary marks every planted secret; b64Canary is how any base64 of a value starting with
// "hunter2-" starts.
const (
	canary    = "hunter2"
	b64Canary = "aHVudGVyMi"
)

var contracts = []struct{ talos, k8s string }{
	{"v1.10.9", "1.33.0"},
	{"v1.12.11", "1.35.0"},
	{"v1.14.1", "1.37.0"},
}

// bundles caches a secrets bundle per Talos version; tests using it do not run in parallel.
var bundles = map[string]*secrets.Bundle{}

// machineryConfig generates a control-plane config with machinery for a Talos version and
// applies patches (strategic merge or JSON6902, as configpatcher loads them).
func machineryConfig(t *testing.T, talos, k8s string, patches ...string) config.Provider {
	t.Helper()

	contract, err := config.ParseContractFromVersion(talos)
	if err != nil {
		t.Fatal(err)
	}

	bundle, ok := bundles[talos]
	if !ok {
		// Generating a bundle takes a second (an RSA service-account key): one per contract.
		if bundle, err = secrets.NewBundle(secrets.NewFixedClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), contract); err != nil {
			t.Fatal(err)
		}

		bundles[talos] = bundle
	}

	in, err := generate.NewInput("lab", "https://10.1.0.10:6443", k8s, generate.WithSecretsBundle(bundle), generate.WithVersionContract(contract),
		generate.WithInstallDisk("/dev/sda"), generate.WithInstallImage("factory.talos.dev/installer/abc:"+talos))
	if err != nil {
		t.Fatal(err)
	}

	cfg, err := in.Config(machine.TypeControlPlane)
	if err != nil {
		t.Fatal(err)
	}

	if len(patches) == 0 {
		return cfg
	}

	loaded, err := configpatcher.LoadPatches(patches)
	if err != nil {
		t.Fatal(err)
	}

	out, err := configpatcher.Apply(configpatcher.WithConfig(cfg), loaded)
	if err != nil {
		t.Fatal(err)
	}

	patched, err := out.Config()
	if err != nil {
		t.Fatal(err)
	}

	return patched
}

func encode(t *testing.T, cfg config.Provider) []byte {
	t.Helper()

	data, err := cfg.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
	if err != nil {
		t.Fatal(err)
	}

	return data
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

const inlineSecret = `apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: default}
stringData:
  password: hunter2-inline
data:
  token: aHVudGVyMi1iNjQ=
`

// secretPatches are the audit's secret-bearing patches and their relatives: every planted
// value contains the canary (or is base64 of one that does); visible is what must still show.
var secretPatches = []struct {
	name, patch string
	visible     []string
}{
	{"machine.env, proxy URL with a password", `machine:
  env:
    HTTPS_PROXY: https://proxyuser:hunter2-proxy@proxy.lab:3128
    API_TOKEN: hunter2-token
`, []string{"HTTPS_PROXY: '******'", "API_TOKEN: '******'"}},
	{"extraManifestHeaders and a manifest URL with a token", `cluster:
  extraManifests:
    - https://manifests.lab/app.yaml?token=hunter2-query
    - https://manifests.lab/public.yaml
  extraManifestHeaders:
    Authorization: Bearer hunter2-header
`, []string{"- https://manifests.lab/public.yaml", "Authorization: '******'"}},
	{"inline manifest holding a Secret", "cluster:\n  inlineManifests:\n    - name: creds\n      contents: |\n" + indent(inlineSecret, "        "),
		[]string{"- name: creds", "contents: '******'"}},
	{"registry auth and a mirror with user info", `machine:
  registries:
    mirrors:
      docker.io:
        endpoints:
          - https://mirroruser:hunter2-mirror@mirror.lab
          - https://mirror2.lab
    config:
      registry.lab:5000:
        auth:
          username: robot-hunter2
          password: hunter2-registry
          auth: ` + b64("hunter2-auth:x") + `
          identityToken: hunter2-identity
`, []string{"- https://mirror2.lab", "registry.lab:5000:", "password: '******'"}},
	{"kubelet extraConfig and extraArgs", `machine:
  kubelet:
    extraArgs:
      bootstrap-kubeconfig-token: hunter2-arg
    extraConfig:
      staticPodURLHeader:
        Authorization: [Bearer hunter2-kubelet]
      maxPods: 250
`, []string{"maxPods: '******'"}},
	{"files, kernel args, udev rules, sysctls", `machine:
  files:
    - content: password=hunter2-file
      path: /var/etc/app.conf
      op: create
      permissions: 0o600
  install:
    extraKernelArgs: [talos.config=https://cfg.lab/x?token=hunter2-kernel]
  udev:
    rules: ['ACTION=="add", RUN+="/bin/curl -H token:hunter2-udev x"']
  sysctls:
    net.core.somaxconn: "65535"
`, []string{"path: /var/etc/app.conf", "net.core.somaxconn: \"65535\""}},
	{"documents: environment, extension service, registry auth, external manifest headers", `apiVersion: v1alpha1
kind: EnvironmentConfig
variables:
  AWS_SECRET_ACCESS_KEY: hunter2-env
---
apiVersion: v1alpha1
kind: ExtensionServiceConfig
name: tailscale
environment:
  - TS_AUTHKEY=tskey-hunter2
configFiles:
  - content: key=hunter2-ext
    mountPath: /etc/ts.conf
---
apiVersion: v1alpha1
kind: RegistryAuthConfig
name: ghcr.io
username: hunter2-user
password: hunter2-pass
`, []string{"name: tailscale", "mountPath: /etc/ts.conf", "name: ghcr.io"}},
}

func indent(s, prefix string) string {
	var b strings.Builder

	for line := range strings.Lines(s) {
		b.WriteString(prefix + line)
	}

	return b.String()
}

// TestSecretBearingPatches: a secret a user patch puts anywhere is redacted, by the
// allow-list alone (machinery's redaction knows none of these fields), while the fields a
// reviewer needs stay readable.
func TestSecretBearingPatches(t *testing.T) {
	for _, tc := range secretPatches {
		t.Run(tc.name, func(t *testing.T) {
			plain := encode(t, machineryConfig(t, "v1.14.1", "1.37.0", tc.patch))
			if !bytes.Contains(plain, []byte(canary)) {
				t.Fatal("the patch planted nothing: the test would prove nothing")
			}

			for name, view := range map[string]func() ([]byte, error){
				"YAML":   func() ([]byte, error) { return YAML(plain) },
				"Config": func() ([]byte, error) { return Config(machineryConfig(t, "v1.14.1", "1.37.0", tc.patch)) },
			} {
				out, err := view()
				if err != nil {
					t.Fatal(err)
				}

				for _, bad := range []string{canary, b64Canary} {
					if i := bytes.Index(out, []byte(bad)); i >= 0 {
						t.Errorf("%s shows %q: %s", name, bad, line(out, i))
					}
				}

				for _, want := range append(tc.visible, "clusterName: lab", "image: factory.talos.dev/installer/abc:v1.14.1") {
					if !bytes.Contains(out, []byte(want)) {
						t.Errorf("%s hides %q", name, want)
					}
				}
			}
		})
	}
}

func line(data []byte, at int) string {
	start := bytes.LastIndexByte(data[:at], '\n') + 1
	end := bytes.IndexByte(data[at:], '\n')

	if end < 0 {
		return string(data[start:])
	}

	return string(data[start : at+end])
}

// TestMachinerySecretsNeverShown: every value machinery's own redaction hides is hidden by
// the allow-list alone too, for every contract and with the secret fields users add (registry
// passwords, disk encryption passphrases, VIP API tokens, WireGuard keys).
func TestMachinerySecretsNeverShown(t *testing.T) {
	patch := `machine:
  registries:
    config:
      registry.lab:
        auth: {username: u, password: registry-password-1, auth: cmVnaXN0cnktYXV0aA==, identityToken: registry-identity-1}
  systemDiskEncryption:
    ephemeral:
      provider: luks2
      keys:
        - slot: 0
          static: {passphrase: disk-passphrase-12}
`

	for _, c := range contracts {
		t.Run(c.talos, func(t *testing.T) {
			cfg := machineryConfig(t, c.talos, c.k8s, patch)
			plain := encode(t, cfg)
			masked := encode(t, cfg.RedactSecrets(Marker))

			secrets := differences(t, plain, masked)
			if len(secrets) < 6 {
				t.Fatalf("machinery redacted only %d values: the test would prove little", len(secrets))
			}

			out, err := YAML(plain)
			if err != nil {
				t.Fatal(err)
			}

			for _, s := range secrets {
				if bytes.Contains(out, []byte(s)) {
					t.Errorf("the allow-list shows a value machinery redacts: %.40q", s)
				}
			}
		})
	}
}

// differences returns the scalars of plain that differ from masked, document by document.
func differences(t *testing.T, plain, masked []byte) []string {
	t.Helper()

	docs := func(data []byte) []*yaml.Node {
		var out []*yaml.Node

		dec := yaml.NewDecoder(bytes.NewReader(data))

		for {
			var n yaml.Node
			if dec.Decode(&n) != nil {
				return out
			}

			out = append(out, &n)
		}
	}

	var out []string

	var walk func(a, b *yaml.Node)
	walk = func(a, b *yaml.Node) {
		if a.Kind == yaml.ScalarNode && a.Value != b.Value && len(a.Value) >= 8 {
			out = append(out, a.Value)
		}

		for i := range min(len(a.Content), len(b.Content)) {
			walk(a.Content[i], b.Content[i])
		}
	}

	p, m := docs(plain), docs(masked)
	for i := range min(len(p), len(m)) {
		walk(p[i], m[i])
	}

	return out
}

// benignPatch adds a free-form map, a block scalar and a multi-document kind.
const benignPatch = `machine:
  env:
    LANG: C.UTF-8
  files:
    - content: |
        line one
        line two
      path: /var/etc/x.conf
      op: create
      permissions: 0o644
---
apiVersion: v1alpha1
kind: TimeSyncConfig
ntp:
  servers: [time.cloudflare.com]
`

// TestUnredactedBytesAreMachinerys: re-encoding keeps machinery's formatting byte for byte,
// so the view differs from the config only where a value is redacted. (The input is
// machinery's redaction: with every field allowed, private keys would still be redacted.)
func TestUnredactedBytesAreMachinerys(t *testing.T) {
	all := &trie{leaf: true}
	all.anyKey, all.item = all, all

	for _, c := range contracts {
		plain := encode(t, machineryConfig(t, c.talos, c.k8s, benignPatch).RedactSecrets(Marker))

		out, err := redactStream(plain, func(*yaml.Node) *trie { return all })
		if err != nil {
			t.Fatal(err)
		}

		if !bytes.Equal(out, plain) {
			t.Errorf("%s: re-encoding changed the config:\n%s", c.talos, out)
		}
	}
}

// TestViewOfGeneratedConfigs: what the view of a fresh config shows and hides, per contract.
func TestViewOfGeneratedConfigs(t *testing.T) {
	for _, c := range contracts {
		t.Run(c.talos, func(t *testing.T) {
			cfg := machineryConfig(t, c.talos, c.k8s)

			out, err := Config(cfg)
			if err != nil {
				t.Fatal(err)
			}

			again, err := Config(cfg)
			if err != nil {
				t.Fatal(err)
			}

			if !bytes.Equal(out, again) {
				t.Error("the view is not deterministic")
			}

			for _, want := range []string{"type: controlplane", "endpoint: https://10.1.0.10:6443", "crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t",
				"image: registry.k8s.io/kube-apiserver:v" + c.k8s, "disk: /dev/sda", "token: '******'", "key: '******'"} {
				if strings.HasPrefix(c.talos, "v1.14") && want == "disk: /dev/sda" {
					want = `match: disk.dev_path == "/dev/sda"`
				}

				if !bytes.Contains(out, []byte(want)) {
					t.Errorf("the view lacks %q", want)
				}
			}
		})
	}
}

func TestUnknownKindShowsItsIdentityOnly(t *testing.T) {
	in := "apiVersion: v1alpha1\nkind: FutureConfig\nname: x\nport: 4242\nenabled: true\nsecret: abc\nnested:\n    list:\n        - one\n"

	out, err := YAML([]byte(in))
	if err != nil {
		t.Fatal(err)
	}

	want := "apiVersion: v1alpha1\nkind: FutureConfig\nname: x\nport: '******'\nenabled: true\nsecret: '******'\nnested:\n    list:\n        - '******'\n"
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
}

func TestSafeValue(t *testing.T) {
	for _, tc := range []struct {
		v    string
		safe bool
	}{
		{"https://10.1.0.10:6443", true},
		{"factory.talos.dev/installer/abc@sha256:0123", true},
		{"https://user:pass@proxy.lab:3128", false},
		{"https://token@git.lab/repo", false},
		{"https://manifests.lab/x.yaml?token=abc", false},
		{"https://manifests.lab/x.yaml#frag", false},
		{"-----BEGIN EC PRIVATE KEY-----\nabc\n", false},
		{b64("-----BEGIN RSA PRIVATE KEY-----\nabc\n"), false},
		{b64("-----BEGIN CERTIFICATE-----\nabc\n"), true},
	} {
		if got := safeValue(tc.v); got != tc.safe {
			t.Errorf("safeValue(%.40q) = %v, want %v", tc.v, got, tc.safe)
		}
	}
}
