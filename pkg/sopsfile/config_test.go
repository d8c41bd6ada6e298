package sopsfile_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/getsops/sops/v3"
	"github.com/getsops/sops/v3/aes"
	sopsage "github.com/getsops/sops/v3/age"
	"github.com/getsops/sops/v3/cmd/sops/common"
	"github.com/getsops/sops/v3/cmd/sops/formats"
	sopsconfig "github.com/getsops/sops/v3/config"
	"github.com/getsops/sops/v3/version"
	"gopkg.in/yaml.v3"

	"github.com/talforge/talforge/pkg/sopsfile"
)

// recipientsOf returns the age recipients a SOPS YAML file is encrypted for, from its metadata.
func recipientsOf(t *testing.T, path string) []string {
	t.Helper()

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	var doc struct {
		SOPS struct {
			Age []struct {
				Recipient string `yaml:"recipient"`
			} `yaml:"age"`
		} `yaml:"sops"`
	}

	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}

	var out []string
	for _, a := range doc.SOPS.Age {
		out = append(out, a.Recipient)
	}

	slices.Sort(out)

	return out
}

// TestConfigIgnoresRulesAboveTheOutput: a .sops.yaml planted above an output directory
// decides nothing; the project's own rules (or an explicit file) do. Package-level RuleFor,
// which walks up like the sops CLI, is what generate used before.
func TestConfigIgnoresRulesAboveTheOutput(t *testing.T) {
	k := newKeyring(t)

	planted := t.TempDir()
	attacker := newIdentity(t, filepath.Join(t.TempDir(), "attacker.txt"))

	if err := os.WriteFile(filepath.Join(planted, sopsfile.ConfigFileName), sopsfile.CreationRules([]string{attacker}), 0o644); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(planted, "clusters", "lab", "talosconfig.sops.yaml")

	// What a walk up from the output finds: the planted file.
	if r, err := sopsfile.RuleFor(out); err != nil || !slices.Equal(r.Recipients(), []string{attacker}) {
		t.Fatalf("walking up from the output: %v, %v", r, err)
	}

	cfg, err := sopsfile.ProjectConfig(k.dir)
	if err != nil {
		t.Fatal(err)
	}

	if wrote, err := cfg.WriteFile(out, []byte("a: b\n")); err != nil || !wrote {
		t.Fatalf("write: %v %v", wrote, err)
	}

	if got := recipientsOf(t, out); !slices.Equal(got, []string{k.recipient}) {
		t.Errorf("encrypted for %v, want the project's %v", got, k.recipient)
	}

	// An explicit configuration is used as it is.
	other := filepath.Join(t.TempDir(), "team.sops.yaml")
	mate := newIdentity(t, filepath.Join(t.TempDir(), "mate.txt"))

	if err := os.WriteFile(other, sopsfile.CreationRules([]string{k.recipient, mate}), 0o644); err != nil {
		t.Fatal(err)
	}

	explicit, err := sopsfile.OpenConfig(other)
	if err != nil {
		t.Fatal(err)
	}

	r, err := explicit.RuleFor(out)
	if err != nil {
		t.Fatal(err)
	}

	if want := []string{k.recipient, mate}; !slices.Equal(r.Recipients(), slices.Sorted(slices.Values(want))) {
		t.Errorf("explicit rules: %v, want %v", r.Recipients(), want)
	}
}

// TestProjectConfigIsTheRootsOwn: a project without .sops.yaml has no rules, even when a
// parent directory has some; a missing or broken explicit file is an error.
func TestProjectConfigIsTheRootsOwn(t *testing.T) {
	k := newKeyring(t)

	sub := filepath.Join(k.dir, "project")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}

	if _, err := sopsfile.ProjectConfig(sub); !errors.Is(err, sopsfile.ErrNoRules) || !strings.Contains(err.Error(), "--sops-config") {
		t.Errorf("a project without .sops.yaml: %v", err)
	}

	if _, err := sopsfile.OpenConfig(filepath.Join(sub, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing explicit file: %v", err)
	}

	broken := filepath.Join(sub, "broken.yaml")
	if err := os.WriteFile(broken, []byte("creation_rules: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	if _, err := sopsfile.OpenConfig(broken); err == nil {
		t.Error("a broken explicit file was accepted")
	}
}

// body is a SOPS YAML file without its sops metadata: the encrypted values as they are on disk.
func body(t *testing.T, path string) map[string]any {
	t.Helper()

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}

	delete(m, "sops")

	return m
}

// TestRekey: a new recipient gets the file, its content and encrypted values stay byte for
// byte, and a second run changes nothing.
func TestRekey(t *testing.T) {
	k := newKeyring(t)
	path := filepath.Join(k.dir, "secrets.sops.yaml")

	if _, err := sopsfile.WriteFile(path, []byte(interopFiles[0].plain)); err != nil {
		t.Fatal(err)
	}

	before, err := sopsfile.DecryptFile(path)
	if err != nil {
		t.Fatal(err)
	}

	valuesBefore := body(t, path)

	mateKey := filepath.Join(t.TempDir(), "mate.txt")
	mate := newIdentity(t, mateKey)
	k.writeRules(t, k.recipient, mate)

	cfg, err := sopsfile.ProjectConfig(k.dir)
	if err != nil {
		t.Fatal(err)
	}

	rule, err := cfg.RuleFor(path)
	if err != nil {
		t.Fatal(err)
	}

	if changed, err := rule.Rekey(path); err != nil || !changed {
		t.Fatalf("rekey: %v %v", changed, err)
	}

	if got := recipientsOf(t, path); !slices.Equal(got, rule.Recipients()) {
		t.Errorf("recipients %v, want %v", got, rule.Recipients())
	}

	if !equalYAML(t, valuesBefore, body(t, path)) {
		t.Error("the encrypted values changed: a recipient change must only re-wrap the data key")
	}

	// The teammate opens it, to the same bytes.
	t.Setenv("SOPS_AGE_KEY_FILE", mateKey)

	after, err := sopsfile.DecryptFile(path)
	if err != nil {
		t.Fatalf("the new recipient cannot decrypt: %v", err)
	}

	if !bytes.Equal(before, after) {
		t.Errorf("plaintext changed:\n%s\n---\n%s", before, after)
	}

	backdate(t, path)
	st := stat(t, path)

	if changed, err := rule.Rekey(path); err != nil || changed {
		t.Errorf("second rekey: %v %v", changed, err)
	}

	assertSameFile(t, path, st)
}

func equalYAML(t *testing.T, a, b map[string]any) bool {
	t.Helper()

	x, _ := yaml.Marshal(a)
	y, _ := yaml.Marshal(b)

	return bytes.Equal(x, y)
}

// encryptOnly encrypts plain for recipient with an encrypted_regex, as the sops CLI does under
// such a rule (which talforge's own Encrypt refuses): the files an older rule left behind.
func encryptOnly(t *testing.T, path, plain, recipient, encryptedRegex string) {
	t.Helper()

	store := common.StoreForFormat(formats.FormatForPath(path), sopsconfig.NewStoresConfig())

	branches, err := store.LoadPlainFile([]byte(plain))
	if err != nil {
		t.Fatal(err)
	}

	keys, err := sopsage.MasterKeysFromRecipients(recipient)
	if err != nil {
		t.Fatal(err)
	}

	var group sops.KeyGroup
	for _, k := range keys {
		group = append(group, k)
	}

	tree := sops.Tree{Branches: branches, FilePath: path, Metadata: sops.Metadata{
		KeyGroups: []sops.KeyGroup{group}, EncryptedRegex: encryptedRegex, Version: version.Version,
	}}

	dataKey, errs := tree.GenerateDataKey()
	if len(errs) > 0 {
		t.Fatal(errs)
	}

	if err := common.EncryptTree(common.EncryptTreeOpts{DataKey: dataKey, Tree: &tree, Cipher: aes.NewCipher()}); err != nil {
		t.Fatal(err)
	}

	out, err := store.EmitEncryptedFile(tree)
	if err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRekeyEncryptsWhatAnOldRuleLeftInClear: a bundle encrypted under an encrypted_regex that
// skipped fields is encrypted whole under the project's rule, to the same plaintext.
func TestRekeyEncryptsWhatAnOldRuleLeftInClear(t *testing.T) {
	k := newKeyring(t)
	path := filepath.Join(k.dir, "secrets.sops.yaml")

	encryptOnly(t, path, interopFiles[0].plain, k.recipient, "^(secret|token)$")

	if got, _ := sopsfile.ClearValues(path, mustRead(t, path)); !slices.Contains(got, "certs.etcd.key") {
		t.Fatalf("the old rule encrypted everything: %v", got)
	}

	before, err := sopsfile.DecryptFile(path)
	if err != nil {
		t.Fatal(err)
	}

	cfg, _ := sopsfile.ProjectConfig(k.dir)
	rule, _ := cfg.RuleFor(path)

	if changed, err := rule.Rekey(path); err != nil || !changed {
		t.Fatalf("rekey: %v %v", changed, err)
	}

	after, err := sopsfile.DecryptFile(path)
	if err != nil || !bytes.Equal(before, after) {
		t.Errorf("plaintext changed (%v):\n%s\n---\n%s", err, before, after)
	}

	if got, err := sopsfile.ClearValues(path, mustRead(t, path)); err != nil || len(got) != 0 {
		t.Errorf("still in clear after rekey: %v %v", got, err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	return data
}

// TestRekeyNeverReplacesWhatItCannotRead: a file this machine cannot decrypt, or one that the
// new recipients would lock this machine out of, stays byte for byte.
func TestRekeyNeverReplacesWhatItCannotRead(t *testing.T) {
	t.Run("foreign file", func(t *testing.T) {
		k := newKeyring(t)
		path := filepath.Join(k.dir, "secrets.sops.yaml")

		// Written by someone else, for their key only.
		other := filepath.Join(t.TempDir(), "other.txt")
		otherRecipient := newIdentity(t, other)
		k.writeRules(t, otherRecipient)

		if _, err := sopsfile.WriteFile(path, []byte("a: b\n")); err != nil {
			t.Fatal(err)
		}

		k.writeRules(t, k.recipient, otherRecipient)
		backdate(t, path)
		st := stat(t, path)

		cfg, _ := sopsfile.ProjectConfig(k.dir)
		rule, _ := cfg.RuleFor(path)

		_, err := rule.Rekey(path)

		var de *sopsfile.DecryptError
		if !errors.As(err, &de) {
			t.Errorf("want a DecryptError, got %v", err)
		}

		assertSameFile(t, path, st)
	})

	t.Run("own key removed", func(t *testing.T) {
		k := newKeyring(t)
		path := filepath.Join(k.dir, "secrets.sops.yaml")

		if _, err := sopsfile.WriteFile(path, []byte("a: b\n")); err != nil {
			t.Fatal(err)
		}

		k.writeRules(t, newIdentity(t, filepath.Join(t.TempDir(), "mate.txt")))
		backdate(t, path)
		st := stat(t, path)

		cfg, _ := sopsfile.ProjectConfig(k.dir)
		rule, _ := cfg.RuleFor(path)

		if _, err := rule.Rekey(path); err == nil || !strings.Contains(err.Error(), "left as it is") {
			t.Errorf("a rekey that locks this machine out: %v", err)
		}

		assertSameFile(t, path, st)
	})
}

// TestClearValues: plaintext files, hand-edited values and rules that skip values are found
// without a key, and no value is ever returned.
func TestClearValues(t *testing.T) {
	k := newKeyring(t)
	path := filepath.Join(k.dir, "aws-backup.sops.yaml")
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	plain := "AWS_ACCESS_KEY_ID: AKIAEXAMPLE\nAWS_SECRET_ACCESS_KEY: " + secret + "\n"

	if _, err := sopsfile.ClearValues(path, []byte(plain)); !errors.Is(err, sopsfile.ErrNotEncrypted) {
		t.Errorf("plaintext: %v", err)
	}

	if _, err := sopsfile.WriteFile(path, []byte(plain)); err != nil {
		t.Fatal(err)
	}

	enc, _ := os.ReadFile(path)

	if got, err := sopsfile.ClearValues(path, enc); err != nil || len(got) != 0 {
		t.Errorf("encrypted: %v %v", got, err)
	}

	// A value pasted over an encrypted one.
	edited := replaceValue(t, enc, "AWS_SECRET_ACCESS_KEY", secret)
	if got, err := sopsfile.ClearValues(path, edited); err != nil || !slices.Equal(got, []string{"AWS_SECRET_ACCESS_KEY"}) {
		t.Errorf("hand-edited: %v %v", got, err)
	}

	// Written under a rule that encrypts only data/stringData (the usual one for Kubernetes
	// Secrets).
	encryptOnly(t, path, plain, k.recipient, "^(data|stringData)$")

	enc, _ = os.ReadFile(path)
	if got, err := sopsfile.ClearValues(path, enc); err != nil || !slices.Equal(got, []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}) {
		t.Errorf("encrypted_regex that skips the keys: %v %v", got, err)
	}
}

// replaceValue sets key's value in a SOPS YAML file to value, as a hand edit would.
func replaceValue(t *testing.T, data []byte, key, value string) []byte {
	t.Helper()

	var out []string

	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, key+": ") {
			line = key + ": " + value
		}

		out = append(out, line)
	}

	return []byte(strings.Join(out, "\n"))
}

// TestDecryptNeverQuotesAValue: sops' own error for a value that is not encrypted data quotes
// it; a secret pasted into an encrypted file must not be printed back.
func TestDecryptNeverQuotesAValue(t *testing.T) {
	k := newKeyring(t)
	path := filepath.Join(k.dir, "proxmox.sops.yaml")

	if _, err := sopsfile.WriteFile(path, []byte("token: a@pve!t=old\n")); err != nil {
		t.Fatal(err)
	}

	enc, _ := os.ReadFile(path)
	const secret = "a@pve!t=5ec12e7a-0c1d-4a4b-9d77-a1b2c3d4e5f6"

	_, err := sopsfile.Decrypt(path, replaceValue(t, enc, "token", secret))
	if err == nil {
		t.Fatal("a value in clear decrypted")
	}

	if strings.Contains(err.Error(), "5ec12e7a") {
		t.Errorf("the error quotes the value: %v", err)
	}

	if !strings.Contains(err.Error(), "the value of token") {
		t.Errorf("the error does not name the key: %v", err)
	}

	// A plaintext file: no content either.
	_, err = sopsfile.Decrypt(path, []byte("token: "+secret+"\n"))
	if !errors.Is(err, sopsfile.ErrNotEncrypted) || strings.Contains(err.Error(), "5ec12e7a") {
		t.Errorf("plaintext: %v", err)
	}
}

// TestIdentityErrorsNeverQuoteTheKey: age quotes a line it does not recognise in full, which
// for SOPS_AGE_KEY is a secret key in a form it does not accept.
func TestIdentityErrorsNeverQuoteTheKey(t *testing.T) {
	newKeyring(t)

	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}

	key := strings.ToLower(id.String())
	t.Setenv("SOPS_AGE_KEY", key)

	_, err = sopsfile.EnsureIdentity()
	if err == nil {
		t.Fatal("a malformed key was accepted")
	}

	if strings.Contains(err.Error(), key[20:40]) {
		t.Errorf("the error quotes the key: %v", err)
	}

	if !strings.Contains(err.Error(), "line 1") {
		t.Errorf("the error does not name the line: %v", err)
	}
}

// TestSOPSCLIOpensARekeyedFile: the standard sops CLI decrypts a re-keyed file with the new
// recipient's key, to the same plaintext.
func TestSOPSCLIOpensARekeyedFile(t *testing.T) {
	bin := sopsBinary(t)
	k := newKeyring(t)
	path := filepath.Join(k.dir, "secrets.sops.yaml")

	if _, err := sopsfile.WriteFile(path, []byte(interopFiles[0].plain)); err != nil {
		t.Fatal(err)
	}

	mateKey := filepath.Join(t.TempDir(), "mate.txt")
	k.writeRules(t, k.recipient, newIdentity(t, mateKey))

	cfg, _ := sopsfile.ProjectConfig(k.dir)
	rule, _ := cfg.RuleFor(path)

	if changed, err := rule.Rekey(path); err != nil || !changed {
		t.Fatalf("rekey: %v %v", changed, err)
	}

	t.Setenv("SOPS_AGE_KEY_FILE", mateKey)

	if got := k.sops(t, bin, "decrypt", path); string(got) != interopFiles[0].plain {
		t.Errorf("sops -d with the new key:\n%s\nwant\n%s", got, interopFiles[0].plain)
	}
}
