package sopsfile_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	sopsconfig "github.com/getsops/sops/v3/config"

	"github.com/talforge/talforge/pkg/sopsfile"
)

// newRecipient is a new age recipient (newIdentity, with its identity in a file of its own).
func newRecipient(t *testing.T) string {
	t.Helper()

	return newIdentity(t, filepath.Join(t.TempDir(), "identity.txt"))
}

// sopsRecipients is the rule sops itself reads from conf for the file at abs: its recipients,
// sorted, or the error.
func sopsRecipients(conf, abs string) ([]string, error) {
	c, err := sopsconfig.LoadCreationRuleForFile(conf, abs, nil)
	if err != nil {
		return nil, err
	}

	if c == nil {
		return nil, os.ErrNotExist
	}

	var out []string

	for _, g := range c.KeyGroups {
		for _, k := range g {
			out = append(out, k.ToString())
		}
	}

	slices.Sort(out)

	return out, nil
}

// TestConfigSelectsTheRuleSOPSSelects: a Config reads each creation rule once, and picks for
// every path the rule sops picks (config.LoadCreationRuleForFile, run here for comparison):
// first match wins, an empty path_regex matches anything, the path is relative to the
// configuration's directory (absolute outside it), YAML aliases resolve, and a path no rule
// matches is an error in both.
func TestConfigSelectsTheRuleSOPSSelects(t *testing.T) {
	a, b, c := newRecipient(t), newRecipient(t), newRecipient(t)

	configs := map[string]string{
		"ordered with catch-all": "creation_rules:\n" +
			"  - path_regex: ^nodes/\n    age: " + a + "\n" +
			"  - path_regex: \\.enc$\n    age: " + b + "\n" +
			"  - age: " + c + "\n",
		"no catch-all": "creation_rules:\n" +
			"  - path_regex: secrets\\.sops\\.yaml$\n    age: " + a + "\n" +
			"  - path_regex: (^|/)cp-[0-9]+\\.yaml\\.enc$\n    age: " + a + "," + b + "\n",
		"aliases and key groups": "x-regex: &enc \\.enc$\n" +
			"creation_rules:\n" +
			"  - path_regex: *enc\n    key_groups:\n      - age: [" + b + ", " + c + "]\n" +
			"  - path_regex: ''\n    age: " + a + "\n",
	}

	paths := []string{
		"nodes/cp-1.yaml.enc", "nodes/w-1.yaml.enc", "deep/nodes/cp-2.yaml.enc", "other/x.enc",
		"secrets.sops.yaml", "clusters/lab/secrets.sops.yaml", "talosconfig.sops.yaml", "README.md",
		"cp-1.yaml.enc", "cp-1.yaml.enc.bak",
	}

	for name, rules := range configs {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			conf := filepath.Join(dir, sopsfile.ConfigFileName)

			if err := os.WriteFile(conf, []byte(rules), 0o644); err != nil {
				t.Fatal(err)
			}

			cfg, err := sopsfile.OpenConfig(conf)
			if err != nil {
				t.Fatal(err)
			}

			outside := t.TempDir()

			// Twice over: the second round comes from rules already loaded.
			for range 2 {
				for _, p := range paths {
					for _, abs := range []string{filepath.Join(dir, p), filepath.Join(outside, p)} {
						want, wantErr := sopsRecipients(conf, abs)

						r, err := cfg.RuleFor(abs)
						if (err != nil) != (wantErr != nil) {
							t.Fatalf("%s: RuleFor error %v, sops error %v", abs, err, wantErr)
						}

						if err != nil {
							continue
						}

						if got := r.Recipients(); !slices.Equal(got, want) {
							t.Errorf("%s: rule for %v, sops picks %v", abs, got, want)
						}
					}
				}
			}
		})
	}
}

// TestConfigRefusesRulesChangedDuringTheRun: a rule first needed after .sops.yaml changed is an
// error, not a mix of two files' rules; rules already loaded keep the recipients the run began
// with.
func TestConfigRefusesRulesChangedDuringTheRun(t *testing.T) {
	a, b := newRecipient(t), newRecipient(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, sopsfile.ConfigFileName)

	write := func(recipient string) {
		t.Helper()

		rules := "creation_rules:\n  - path_regex: ^nodes/\n    age: " + recipient + "\n  - age: " + recipient + "\n"
		if err := os.WriteFile(conf, []byte(rules), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	write(a)

	cfg, err := sopsfile.OpenConfig(conf)
	if err != nil {
		t.Fatal(err)
	}

	if r, err := cfg.RuleFor(filepath.Join(dir, "nodes", "n1.yaml.enc")); err != nil || !slices.Equal(r.Recipients(), []string{a}) {
		t.Fatalf("before the change: %v, %v", r, err)
	}

	write(b)

	if r, err := cfg.RuleFor(filepath.Join(dir, "nodes", "n2.yaml.enc")); err != nil || !slices.Equal(r.Recipients(), []string{a}) {
		t.Errorf("a rule loaded before the change: %v, %v; want the run's recipient %s", r, err, a)
	}

	if _, err := cfg.RuleFor(filepath.Join(dir, "secrets.sops.yaml")); err == nil || !strings.Contains(err.Error(), "changed during the run") {
		t.Errorf("a rule first needed after the change: %v, want an error saying the file changed", err)
	}
}
