package sopsfile_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/getsops/sops/v3/cmd/sops/common"
	"github.com/getsops/sops/v3/cmd/sops/formats"
	sopsconfig "github.com/getsops/sops/v3/config"

	"github.com/talforge/talforge/pkg/sopsfile"
)

// dataKeyOf unwraps the data key of the SOPS file at path with the identities in
// SOPS_AGE_KEY_FILE, through sops' own metadata code.
func dataKeyOf(t *testing.T, path string) []byte {
	t.Helper()

	tree, err := common.StoreForFormat(formats.FormatForPath(path), sopsconfig.NewStoresConfig()).LoadEncryptedFile(mustRead(t, path))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}

	key, err := tree.Metadata.GetDataKey()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}

	return key
}

// TestARunSharesOneDataKeyPerRecipients: the files one Config encrypts for the same recipients
// share a data key (wrapping it is an X25519 agreement per file otherwise, issue 16); files for
// other recipients, and the files of the next run (a new Config), get keys of their own; the
// sops CLI opens every one of them.
func TestARunSharesOneDataKeyPerRecipients(t *testing.T) {
	k := newKeyring(t)

	// A second identity for a second rule; the key file holds both, so every file unwraps here.
	otherKeyFile := filepath.Join(t.TempDir(), "keys.txt")
	otherID := newIdentity(t, otherKeyFile)
	both := filepath.Join(t.TempDir(), "both.txt")

	if err := os.WriteFile(both, append(mustRead(t, k.keyFile), mustRead(t, otherKeyFile)...), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Setenv("SOPS_AGE_KEY_FILE", both)

	rules := "creation_rules:\n  - path_regex: ^team/\n    age: " + otherID + "\n  - path_regex: \\.sops\\.ya?ml$|\\.enc$\n    age: " + k.recipient + "\n"
	if err := os.WriteFile(filepath.Join(k.dir, sopsfile.ConfigFileName), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}

	plain := map[string]string{
		"a.yaml.enc":        "machine:\n  token: a\n",
		"b.yaml.enc":        "machine:\n  token: b\n",
		"secrets.sops.yaml": "cluster:\n    secret: c\n",
		"team/c.yaml.enc":   "machine:\n  token: team-c\n",
		"team/d.yaml.enc":   "machine:\n  token: team-d\n",
		"next/run.yaml.enc": "machine:\n  token: next\n",
	}

	write := func(cfg *sopsfile.Config, names ...string) {
		t.Helper()

		for _, name := range names {
			path := filepath.Join(k.dir, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}

			if wrote, err := cfg.WriteFile(path, []byte(plain[name])); err != nil || !wrote {
				t.Fatalf("WriteFile %s: wrote=%v err=%v", name, wrote, err)
			}
		}
	}

	run1, err := sopsfile.OpenConfig(filepath.Join(k.dir, sopsfile.ConfigFileName))
	if err != nil {
		t.Fatal(err)
	}

	write(run1, "a.yaml.enc", "b.yaml.enc", "secrets.sops.yaml", "team/c.yaml.enc", "team/d.yaml.enc")

	key := func(name string) []byte { return dataKeyOf(t, filepath.Join(k.dir, filepath.FromSlash(name))) }

	mine, team := key("a.yaml.enc"), key("team/c.yaml.enc")

	for _, name := range []string{"b.yaml.enc", "secrets.sops.yaml"} {
		if !bytes.Equal(key(name), mine) {
			t.Errorf("%s has another data key than a.yaml.enc, though one run wrote both for the same recipient", name)
		}
	}

	if !bytes.Equal(key("team/d.yaml.enc"), team) {
		t.Error("team/d.yaml.enc has another data key than team/c.yaml.enc, though one run wrote both for the same recipient")
	}

	if bytes.Equal(mine, team) {
		t.Error("files for different recipients share a data key")
	}

	// The recipients of each file are its rule's, not the first file's.
	if got := recipientsOf(t, filepath.Join(k.dir, "secrets.sops.yaml")); len(got) != 1 || got[0] != k.recipient {
		t.Errorf("secrets.sops.yaml is encrypted for %v, want %s", got, k.recipient)
	}

	if enc := mustRead(t, filepath.Join(k.dir, "team", "c.yaml.enc")); !bytes.Contains(enc, []byte(otherID)) || bytes.Contains(enc, []byte(k.recipient)) {
		t.Errorf("team/c.yaml.enc is not encrypted for exactly %s:\n%s", otherID, enc)
	}

	run2, err := sopsfile.OpenConfig(filepath.Join(k.dir, sopsfile.ConfigFileName))
	if err != nil {
		t.Fatal(err)
	}

	write(run2, "next/run.yaml.enc")

	if next := key("next/run.yaml.enc"); bytes.Equal(next, mine) || bytes.Equal(next, team) {
		t.Error("the next run (a new Config) encrypted with a data key of the previous run")
	}

	bin := sopsBinary(t)

	for name, want := range plain {
		if got := k.sops(t, bin, "-d", name); string(got) != want {
			t.Errorf("sops -d %s = %q, want %q", name, got, want)
		}
	}
}

// TestRekeyLeavesTheRunsDataKeyAlone: re-wrapping a file's own key with a rule (Rekey) does not
// change the wrapped key that the run's other files get, even with the rule whose file made it.
func TestRekeyLeavesTheRunsDataKeyAlone(t *testing.T) {
	k := newKeyring(t)
	other := newIdentity(t, filepath.Join(t.TempDir(), "other.txt"))
	conf := filepath.Join(k.dir, sopsfile.ConfigFileName)
	path := func(name string) string { return filepath.Join(k.dir, name) }

	// An earlier run encrypted old.yaml.enc for a teammate too, who has left since.
	k.writeRules(t, k.recipient, other)

	earlier, err := sopsfile.OpenConfig(conf)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := earlier.WriteFile(path("old.yaml.enc"), []byte("old: 1\n")); err != nil {
		t.Fatal(err)
	}

	k.writeRules(t, k.recipient)

	run, err := sopsfile.OpenConfig(conf)
	if err != nil {
		t.Fatal(err)
	}

	rule, err := run.RuleFor(path("a.yaml.enc"))
	if err != nil {
		t.Fatal(err)
	}

	if _, err := rule.WriteFile(path("a.yaml.enc"), []byte("a: 1\n")); err != nil {
		t.Fatal(err)
	}

	if rekeyed, err := rule.Rekey(path("old.yaml.enc")); err != nil || !rekeyed {
		t.Fatalf("Rekey: rekeyed=%v err=%v", rekeyed, err)
	}

	if _, err := run.WriteFile(path("b.yaml.enc"), []byte("b: 1\n")); err != nil {
		t.Fatal(err)
	}

	for name, want := range map[string]string{"a.yaml.enc": "a: 1\n", "b.yaml.enc": "b: 1\n", "old.yaml.enc": "old: 1\n"} {
		got, err := sopsfile.DecryptFile(path(name))
		if err != nil || string(got) != want {
			t.Errorf("%s decrypts to %q, %v; want %q", name, got, err, want)
		}
	}

	if got := recipientsOf(t, path("old.yaml.enc")); len(got) != 1 || got[0] != k.recipient {
		t.Errorf("old.yaml.enc is encrypted for %v after Rekey, want only %s", got, k.recipient)
	}
}

// TestConcurrentRekeysUnderOneConfig: the rules of one Config share their master keys
// (ruleCache), so files rekeyed at once must each be wrapped in keys of their own (run it with
// -race too): every file opens afterwards, for exactly the new recipients.
func TestConcurrentRekeysUnderOneConfig(t *testing.T) {
	k := newKeyring(t)
	other := newIdentity(t, filepath.Join(t.TempDir(), "other.txt"))
	conf := filepath.Join(k.dir, sopsfile.ConfigFileName)
	path := func(i int) string { return filepath.Join(k.dir, fmt.Sprintf("f%d.yaml.enc", i)) }

	const files = 8

	k.writeRules(t, k.recipient, other)

	earlier, err := sopsfile.OpenConfig(conf)
	if err != nil {
		t.Fatal(err)
	}

	for i := range files {
		// One Config per file: each gets a data key of its own, as in separate runs.
		if _, err := earlier.WriteFile(path(i), fmt.Appendf(nil, "f: %d\n", i)); err != nil {
			t.Fatal(err)
		}

		if earlier, err = sopsfile.OpenConfig(conf); err != nil {
			t.Fatal(err)
		}
	}

	k.writeRules(t, k.recipient)

	run, err := sopsfile.OpenConfig(conf)
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup

	errs := make([]error, files)

	for i := range files {
		wg.Go(func() {
			rule, err := run.RuleFor(path(i))
			if err == nil {
				_, err = rule.Rekey(path(i))
			}

			errs[i] = err
		})
	}

	wg.Wait()

	for i := range files {
		if errs[i] != nil {
			t.Fatalf("Rekey f%d: %v", i, errs[i])
		}

		if got, err := sopsfile.DecryptFile(path(i)); err != nil || string(got) != fmt.Sprintf("f: %d\n", i) {
			t.Errorf("f%d decrypts to %q, %v", i, got, err)
		}

		if got := recipientsOf(t, path(i)); len(got) != 1 || got[0] != k.recipient {
			t.Errorf("f%d is encrypted for %v, want only %s", i, got, k.recipient)
		}
	}
}
