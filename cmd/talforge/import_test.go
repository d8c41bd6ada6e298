package main

import (
	"os"
	"strings"
	"testing"
)

// TestImportInput: what import refuses before it reads anything, exit 3 and nothing written.
func TestImportInput(t *testing.T) {
	dir, _ := cliProject(t)
	writeProjectFile(t, "profiles/lab.yaml", cliProfile)
	writeProjectFile(t, "talosconfig", "context: x\ncontexts: {x: {endpoints: [192.0.2.1]}}\n")

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no talosconfig", []string{"import", "homelab"}, "--talosconfig FILE is required"},
		{"no name", []string{"import", "--talosconfig", "talosconfig"}, "accepts 1 arg(s)"},
		{"bad name", []string{"import", "Home_Lab", "--talosconfig", "talosconfig"}, `"Home_Lab" is not a valid cluster name`},
		{"existing profile", []string{"import", "lab", "--talosconfig", "talosconfig"}, "profiles/lab.yaml exists already: import never replaces a project's files"},
		{"missing talosconfig", []string{"import", "homelab", "--talosconfig", "nowhere"}, "--talosconfig: open nowhere"},
		{"bad output", []string{"import", "homelab", "--talosconfig", "talosconfig", "-o", "yaml"}, "--output must be text or json"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := stamps(t, dir)
			r := talforge(t, tt.args...)
			if r.code != exitInvalid || !strings.Contains(r.errOut, tt.want) {
				t.Errorf("want exit %d and %q:\n%v", exitInvalid, tt.want, r)
			}
			assertSameStamps(t, tt.name, before, stamps(t, dir))
		})
	}

	if _, err := os.Stat("patches"); err == nil {
		t.Error("a refused import wrote patches/")
	}
}
