package sopsfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/getsops/sops/v3"
	"github.com/getsops/sops/v3/aes"
	sopsage "github.com/getsops/sops/v3/age"
	"github.com/getsops/sops/v3/cmd/sops/common"
	"github.com/getsops/sops/v3/cmd/sops/formats"
	sopsconfig "github.com/getsops/sops/v3/config"
	"github.com/getsops/sops/v3/version"

	"github.com/talforge/talforge/pkg/sopsfile"
)

// bundleLike has the shape and spelling of a Talos secrets bundle: lower-case field names.
const bundleLike = `cluster:
  id: abc
  secret: c2VjcmV0
secrets:
  bootstraptoken: abcdef.0123456789abcdef
  secretboxencryptionsecret: hunter2-secretbox
  aescbcencryptionsecret: hunter2-aescbc
trustdinfo:
  token: abcdef.0123456789abcdef
`

// TestPartialEncryptionRulesAreRefused: a creation rule that encrypts only some values
// (encrypted_regex and friends) must not leave a bundle or config field in clear; the error
// names the .sops.yaml, the rule and what to change. The audit's case: encrypted_regex written
// in machine-config spelling misses the bundle's lower-case secretboxencryptionsecret.
func TestPartialEncryptionRulesAreRefused(t *testing.T) {
	k := newKeyring(t)
	talforgeRule := "  - path_regex: \\.sops\\.ya?ml$|\\.enc$\n    age: " + k.recipient + "\n"

	for _, tc := range []struct {
		name, rules, file, content string
		// want: substrings of the error; nil: encryption succeeds.
		want []string
	}{
		{
			name:  "encrypted_regex in camel case",
			rules: "  - path_regex: \\.sops\\.ya?ml$\n    encrypted_regex: ^(key|token|secret|bootstrapToken|secretboxEncryptionSecret|aescbcEncryptionSecret)$\n    age: RECIPIENT\n",
			file:  "secrets.sops.yaml", content: bundleLike,
			want: []string{"creation rule 1", `path_regex: \.sops\.ya?ml$)`, "cluster.id", "secrets.bootstraptoken", "secrets.secretboxencryptionsecret",
				"secrets.aescbcencryptionsecret", "encrypted_regex: ^(key|token", "remove encrypted_regex from that rule"},
		},
		{
			name:  "unencrypted_regex",
			rules: "  - path_regex: \\.sops\\.ya?ml$\n    unencrypted_regex: ^id$\n    age: RECIPIENT\n",
			file:  "secrets.sops.yaml", content: bundleLike,
			want: []string{"cluster.id", "unencrypted_regex: ^id$"},
		},
		{
			name:  "encrypted_suffix",
			rules: "  - path_regex: \\.sops\\.ya?ml$\n    encrypted_suffix: _secret\n    age: RECIPIENT\n",
			file:  "talosconfig.sops.yaml", content: "contexts:\n  lab:\n    key: cHJpdmF0ZQ==\n",
			want: []string{"contexts.lab.key", "encrypted_suffix: _secret"},
		},
		{
			name:  "the second rule matches",
			rules: "  - path_regex: other\\.yaml$\n    age: RECIPIENT\n  - path_regex: \\.enc$\n    encrypted_regex: ^token$\n    age: RECIPIENT\n",
			file:  "nodes/cp-1.yaml.enc", content: "machine:\n  token: x\n",
			want: []string{"creation rule 2", `path_regex: \.enc$)`, " data of ", "encrypted_regex: ^token$"},
		},
		{
			name:  "a rule without path_regex",
			rules: "  - encrypted_regex: ^token$\n    age: RECIPIENT\n",
			file:  "kubeconfig.sops.yaml", content: "users:\n  - name: admin\n    user:\n      client-key-data: a2V5\n",
			want: []string{"creation rule 1", "users.user.client-key-data"},
		},
		{name: "encrypted_regex that covers the whole binary file", rules: "  - path_regex: \\.enc$\n    encrypted_regex: ^(data|stringData)$\n    age: RECIPIENT\n",
			file: "nodes/cp-1.yaml.enc", content: "machine:\n  token: x\n"},
		{name: "talforge init's rule", rules: talforgeRule, file: "secrets.sops.yaml", content: bundleLike},
		{name: "the default suffix, said explicitly", rules: "  - unencrypted_suffix: _unencrypted\n    age: RECIPIENT\n", file: "secrets.sops.yaml", content: bundleLike},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rules := "creation_rules:\n" + strings.ReplaceAll(tc.rules, "RECIPIENT", k.recipient)
			if err := os.WriteFile(filepath.Join(k.dir, sopsfile.ConfigFileName), []byte(rules), 0o644); err != nil {
				t.Fatal(err)
			}

			path := filepath.Join(k.dir, filepath.FromSlash(tc.file))

			rule, err := sopsfile.RuleFor(path)
			if err != nil {
				t.Fatal(err)
			}

			enc, err := rule.Encrypt(path, []byte(tc.content))

			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused a rule that encrypts everything: %v", err)
				}

				return
			}

			var pe *sopsfile.PlaintextError
			if !errors.As(err, &pe) {
				t.Fatalf("want a *sopsfile.PlaintextError, got %v (encrypted:\n%s)", err, enc)
			}

			for _, w := range append(tc.want, filepath.Join(k.dir, sopsfile.ConfigFileName), path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}

			for _, secret := range []string{"hunter2", "cHJpdmF0ZQ", "a2V5"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error quotes a secret value %q", secret)
				}
			}
		})
	}
}

// TestPartlyEncryptedFileIsNotUpToDate: a file an earlier rule left partly in clear is not
// kept because its content is unchanged: it is re-encrypted whole.
func TestPartlyEncryptedFileIsNotUpToDate(t *testing.T) {
	k := newKeyring(t)
	path := filepath.Join(k.dir, "secrets.sops.yaml")

	// What sops (or an older talforge) wrote under `encrypted_regex: ^secret$`.
	store := common.StoreForFormat(formats.Yaml, sopsconfig.NewStoresConfig())

	branches, err := store.LoadPlainFile([]byte(bundleLike))
	if err != nil {
		t.Fatal(err)
	}

	mk, err := sopsage.MasterKeyFromRecipient(k.recipient)
	if err != nil {
		t.Fatal(err)
	}

	tree := sops.Tree{Branches: branches, Metadata: sops.Metadata{
		KeyGroups: []sops.KeyGroup{{mk}}, EncryptedRegex: "^secret$", Version: version.Version,
	}}

	dataKey, errs := tree.GenerateDataKey()
	if len(errs) > 0 {
		t.Fatal(errs)
	}

	if err := common.EncryptTree(common.EncryptTreeOpts{DataKey: dataKey, Tree: &tree, Cipher: aes.NewCipher()}); err != nil {
		t.Fatal(err)
	}

	old, err := store.EmitEncryptedFile(tree)
	if err != nil {
		t.Fatal(err)
	}

	if !strings.Contains(string(old), "hunter2-secretbox") {
		t.Fatal("the old file does not hold a value in clear: the test would prove nothing")
	}

	if err := os.WriteFile(path, old, 0o644); err != nil {
		t.Fatal(err)
	}

	rule, err := sopsfile.RuleFor(path)
	if err != nil {
		t.Fatal(err)
	}

	same, err := rule.UpToDate(path, []byte(bundleLike))
	if err != nil {
		t.Fatal(err)
	}

	if same {
		t.Fatal("a file holding values in clear counts as up to date")
	}

	if _, err := rule.WriteFile(path, []byte(bundleLike)); err != nil {
		t.Fatal(err)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	if strings.Contains(string(data), "hunter2") {
		t.Errorf("the rewritten file still holds a value in clear:\n%s", data)
	}
}
