package gitops

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/talforge/talforge/pkg/sopsfile"
)

const pemKey = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIJI3AB+efOauLJ9zNRD47lhuymrMFpPR/IgiBV/4z4GQoAoGCCqGSM49\n-----END EC PRIVATE KEY-----\n"

func TestCheckLeaks(t *testing.T) {
	for _, tc := range []struct {
		name string
		file File
		want string // "" = clean
	}{
		{"PEM key", File{Path: "a.yaml", Data: []byte("x: 1\nkey: |\n  " + pemKey)}, "a.yaml:3: PEM private key"},
		{"base64 PEM key as Talos stores CAs", File{Path: "n.yaml", Data: []byte("ca:\n  crt: abc\n  key: " + base64.StdEncoding.EncodeToString([]byte(pemKey)) + "\n")}, "n.yaml:3: base64-encoded PEM private key"},
		{"age identity", File{Path: "k.txt", Data: []byte("# public key: age1x\nAGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ\n")}, "k.txt:2: age identity"},
		{"bootstrap token", File{Path: "t.yaml", Data: []byte("machine:\n  token: abcdef.0123456789abcdef\n")}, "t.yaml:2: bootstrap token"},
		{"AWS secret key anywhere", File{Path: "v.yaml", Data: []byte("AWS_SECRET_ACCESS_KEY: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n")}, "plaintext AWS_SECRET_ACCESS_KEY"},
		{"plaintext secret field in a file meant to be encrypted", File{Path: "s.sops.yaml", Secret: true, Data: []byte("cluster:\n  secret: hunter2\n")}, `s.sops.yaml:2: plaintext "secret"`},
		{"unredacted field in a redacted view", File{Path: "r.yaml", Redacted: true, Data: []byte("issuer:\n  privateKey: abc\n")}, `plaintext "privateKey"`},
		{"JSON member", File{Path: "x.enc", Secret: true, Data: []byte("{\n  \"token\": \"plain\",\n")}, `x.enc:2: plaintext "token"`},
		{"encrypted values are fine", File{Path: "s.sops.yaml", Secret: true, Data: []byte("token: ENC[AES256_GCM,data:abc,iv:x,tag:y,type:str]\nsops:\n  age:\n    - recipient: age1abc\n      enc: |\n        -----BEGIN AGE ENCRYPTED FILE-----\n")}, ""},
		{"redacted values are fine", File{Path: "r.yaml", Redacted: true, Data: []byte("machine:\n  token: '******'\n  ca:\n    crt: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t\n    key: \"\"\n")}, ""},
		{"a certificate is not a key", File{Path: "c.yaml", Data: []byte("crt: " + base64.StdEncoding.EncodeToString([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")) + "\n")}, ""},
		{"field names are only checked where secrets live", File{Path: "values.yaml", Data: []byte("tolerations:\n  - key: node-role\n")}, ""},
		// The secrets bundle spells its fields in lower case; a .sops.yaml encrypted_regex in
		// machine-config spelling leaves them in clear.
		{"bundle field in lower case", File{Path: "secrets.sops.yaml", Secret: true, Data: []byte("secrets:\n  secretboxencryptionsecret: abc\n")}, `secrets.sops.yaml:2: plaintext "secretboxencryptionsecret"`},
		{"bundle field in lower case, aescbc", File{Path: "secrets.sops.yaml", Secret: true, Data: []byte("secrets:\n  bootstraptoken: ENC[AES256_GCM,data:x]\n  aescbcencryptionsecret: abc\n")}, `secrets.sops.yaml:3: plaintext "aescbcencryptionsecret"`},
		{"upper-case field in a redacted view", File{Path: "r.yaml", Redacted: true, Data: []byte("Password: abc\n")}, `plaintext "Password"`},
		{"URL with a password anywhere", File{Path: "values.yaml", Data: []byte("env:\n  HTTPS_PROXY: https://user:hunter2@proxy.lab:3128\n")}, "values.yaml:2: URL with a password"},
		{"URLs without a password are fine", File{Path: "values.yaml", Data: []byte("target: s3://backups@us-east-1/\nimage: ghcr.io/x/y@sha256:0123\nurl: https://host:8443/p\n")}, ""},
		{"a diff line", File{Path: "diff", Redacted: true, Data: []byte("--- live\n+++ desired\n@@ -1,2 +1,2 @@\n-    token: '******'\n+    token: abc\n")}, `diff:5: plaintext "token"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckLeaks([]File{tc.file})

			if tc.want == "" {
				if err != nil {
					t.Fatalf("false positive: %v", err)
				}

				return
			}

			var le LeakError
			if !errors.As(err, &le) {
				t.Fatalf("want a LeakError, got %v", err)
			}

			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "nothing was written") {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

func TestCheckPrintable(t *testing.T) {
	clean := "--- live\n+++ desired\n@@ -1,3 +1,3 @@\n machine:\n-    token: '******'\n+    token: '******'\n-    hostname: a\n+    hostname: b\n"
	if err := CheckPrintable("the diff", []byte(clean)); err != nil {
		t.Errorf("false positive: %v", err)
	}

	for _, leak := range []string{
		"+    token: abcdef.0123456789abcdef\n",
		"+        HTTPS_PROXY: https://u:hunter2@proxy:3128\n",
		"+  secret: hunter2\n",
	} {
		err := CheckPrintable("the diff", []byte(clean+leak))
		if err == nil || !strings.Contains(err.Error(), "refusing to print the diff") || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: err = %v", leak, err)
		}
	}
}

// TestWriteSecret: a kubeconfig stored outside a Writer run is encrypted, leak-checked and
// written once; a rule that would leave a field in clear writes nothing.
func TestWriteSecret(t *testing.T) {
	dir := t.TempDir()

	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}

	keyFile := filepath.Join(t.TempDir(), "keys.txt")
	if err := os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Setenv("SOPS_AGE_KEY_FILE", keyFile)
	t.Setenv("SOPS_AGE_KEY", "")
	os.Unsetenv("SOPS_AGE_KEY") // restored by t.Setenv's cleanup

	rules := filepath.Join(dir, sopsfile.ConfigFileName)
	if err := os.WriteFile(rules, sopsfile.CreationRules([]string{id.Recipient().String()}), 0o644); err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(dir, "kubeconfig.sops.yaml")
	kubeconfig := []byte("users:\n  - name: admin\n    user:\n      client-key-data: " + base64.StdEncoding.EncodeToString([]byte(pemKey)) + "\n")

	write := func() (bool, error) {
		t.Helper()

		rule, err := sopsfile.RuleFor(path)
		if err != nil {
			t.Fatal(err)
		}

		return WriteSecret(rule, path, kubeconfig)
	}

	if wrote, err := write(); err != nil || !wrote {
		t.Fatalf("first write: wrote %v, %v", wrote, err)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	if err := CheckLeaks([]File{{Path: "kubeconfig.sops.yaml", Data: data, Secret: true}}); err != nil {
		t.Fatal(err)
	}

	if wrote, err := write(); err != nil || wrote {
		t.Fatalf("second write of the same content: wrote %v, %v", wrote, err)
	}

	// A rule that encrypts only "token" fields leaves the client key in clear: refused.
	bad := "creation_rules:\n  - path_regex: \\.sops\\.yaml$\n    encrypted_regex: ^token$\n    age: " + id.Recipient().String() + "\n"
	if err := os.WriteFile(rules, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}

	wrote, err := write()

	var pe *sopsfile.PlaintextError
	if !errors.As(err, &pe) || wrote {
		t.Fatalf("partial encryption rule: wrote %v, err %v; want a *sopsfile.PlaintextError", wrote, err)
	}

	if _, err := os.Stat(path); err == nil {
		t.Error("a refused write left a file")
	}
}

// TestFindURLPasswordIsTheRegexp: the line-by-line search finds what the regexp finds over the
// whole data, at the same offset.
func TestFindURLPasswordIsTheRegexp(t *testing.T) {
	for _, data := range []string{
		"",
		"no url here\n",
		"a: https://host:8443/p\nb: s3://bucket@region/\n",
		"first line\n  proxy: http://u:p@h:1\n",
		"x: ftp://a:b@c",
		"two on a line: https://ok.lan/x then https://u:secret@h/\n",
		"://:@x\n9ab://u:p@h\n",
		"word_ab://u:p@h\n",
		"a://u:p\n@h\n",
		"\"https://u:p@h\"\n",
	} {
		want := -1
		if loc := urlPasswordRE().FindIndex([]byte(data)); loc != nil {
			want = loc[0]
		}
		if got := findURLPassword([]byte(data)); got != want {
			t.Errorf("%q: %d, the regexp says %d", data, got, want)
		}
	}
}

// TestFindBase64PEMsIsTheRegexp: the hand-written scan finds exactly what the regexp it
// replaces finds, on crafted edges and on random strings over the characters that matter.
func TestFindBase64PEMsIsTheRegexp(t *testing.T) {
	re := regexp.MustCompile(`LS0tLS1CRUdJTi[A-Za-z0-9+/]+={0,2}`)

	inputs := []string{
		"", "LS0tLS1CRUdJTi", "LS0tLS1CRUdJTi\n", "LS0tLS1CRUdJTiA", "xLS0tLS1CRUdJTiAB===C",
		"LS0tLS1CRUdJTiLS0tLS1CRUdJTiA=", "crt: LS0tLS1CRUdJTiBDRVJU==\nkey: LS0tLS1CRUdJTi=\n",
		"LS0tLS1CRUdJTLS0tLS1CRUdJTi+/9=", "a LS0tLS1CRUdJTi- LS0tLS1CRUdJTi0",
	}

	rnd := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"LS0tLS1CRUdJTi", "LS0tLS1", "A", "z", "9", "+", "/", "=", "==", "\n", " ", "-", ":"}

	for range 3000 {
		var b strings.Builder
		for range rnd.IntN(12) {
			b.WriteString(alphabet[rnd.IntN(len(alphabet))])
		}

		inputs = append(inputs, b.String())
	}

	for _, in := range inputs {
		want := re.FindAllIndex([]byte(in), -1)
		got := findBase64PEMs([]byte(in))

		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: got %v, the regexp %v", in, got, want)
		}
	}
}

// BenchmarkCheckLeaksView scans a review view the size of a 1,000-node cluster's: every
// node shows its certificates in base64 and a few hundred field names.
func BenchmarkCheckLeaksView(b *testing.B) {
	cert := base64.StdEncoding.EncodeToString([]byte("-----BEGIN CERTIFICATE-----\n" + strings.Repeat("MIIBhTCCASugAwIBAgIQIRi6zePL6mKjOipn+dNuaTAKBggqhkjOPQQDAjASMRAw\n", 12) + "-----END CERTIFICATE-----\n"))

	var node strings.Builder

	node.WriteString("---\n# node n (worker, 10.0.0.2)\nversion: v1alpha1\nmachine:\n    type: worker\n    token: '******'\n")
	node.WriteString("    ca:\n        crt: " + cert + "\n        key: \"\"\n    certSANs: []\n    kubelet:\n        image: ghcr.io/siderolabs/kubelet:v1.37.0\n")

	for i := range 150 {
		fmt.Fprintf(&node, "        field%d: value-%d.example\n", i%40, i)
	}

	data := []byte(strings.Repeat(node.String(), 1000))

	b.SetBytes(int64(len(data)))
	b.ReportAllocs()

	for b.Loop() {
		if err := CheckLeaks([]File{{Path: "nodes.redacted.yaml", Data: data, Redacted: true}}); err != nil {
			b.Fatal(err)
		}
	}
}
