package sopsfile

import (
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"
	sopsage "github.com/getsops/sops/v3/age"
)

// encryptedKeys lists what r's own master keys hold as wrapped data keys.
func encryptedKeys(t *testing.T, r *Rule) []string {
	t.Helper()

	var out []string

	for _, g := range r.conf.KeyGroups {
		for _, k := range g {
			mk, ok := k.(*sopsage.MasterKey)
			if !ok {
				t.Fatalf("master key %T, want age", k)
			}

			out = append(out, mk.EncryptedKey)
		}
	}

	return out
}

// TestWrappingLeavesTheRulesMasterKeysAlone: encrypting under a Config's rule and rekeying with
// it wrap keys in master keys of their own, never in the rule's, which the Config's other rules
// share (ruleCache): a wrapped key written there would end up in another file's metadata, where
// it opens nothing, when two files are written or rekeyed at once.
func TestWrappingLeavesTheRulesMasterKeysAlone(t *testing.T) {
	dir := t.TempDir()

	var recipients []string

	var keys []byte

	for range 2 {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}

		recipients = append(recipients, id.Recipient().String())
		keys = append(keys, id.String()+"\n"...)
	}

	keyFile := filepath.Join(dir, "keys.txt")
	if err := os.WriteFile(keyFile, keys, 0o600); err != nil {
		t.Fatal(err)
	}

	t.Setenv("SOPS_AGE_KEY_FILE", keyFile)

	conf := filepath.Join(dir, ConfigFileName)
	writeRules := func(recipients ...string) {
		t.Helper()

		if err := os.WriteFile(conf, CreationRules(recipients), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// old.yaml.enc was written for both recipients; the project now names only the first.
	writeRules(recipients...)

	earlier, err := OpenConfig(conf)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := earlier.WriteFile(filepath.Join(dir, "old.yaml.enc"), []byte("old: 1\n")); err != nil {
		t.Fatal(err)
	}

	writeRules(recipients[0])

	run, err := OpenConfig(conf)
	if err != nil {
		t.Fatal(err)
	}

	rule, err := run.RuleFor(filepath.Join(dir, "a.yaml.enc"))
	if err != nil {
		t.Fatal(err)
	}

	if _, err := rule.WriteFile(filepath.Join(dir, "a.yaml.enc"), []byte("a: 1\n")); err != nil {
		t.Fatal(err)
	}

	for _, k := range encryptedKeys(t, rule) {
		if k != "" {
			t.Fatalf("encrypting a file wrapped its key in the rule's own master key: %.40s...", k)
		}
	}

	if rekeyed, err := rule.Rekey(filepath.Join(dir, "old.yaml.enc")); err != nil || !rekeyed {
		t.Fatalf("Rekey: rekeyed=%v err=%v", rekeyed, err)
	}

	for _, k := range encryptedKeys(t, rule) {
		if k != "" {
			t.Fatalf("Rekey wrapped the file's key in the rule's own master key: %.40s...", k)
		}
	}
}
