package generate_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talforge/talforge/internal/testenv/bounded"
	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// secretPatchDir is the hostile corpus's secret-bearing patches: each plants values holding
// the canary in a field machinery's redaction does not know (environment, proxy and mirror
// URLs with passwords, manifest headers, an inline Secret, registry auth, file contents,
// multi-document configs). Header lines "# visible: TEXT" name what the redacted view must
// still show.
const secretPatchDir = "../profile/testdata/hostile/secret-patches"

// canary is in every planted secret; b64Canary starts the base64 of any value starting with
// "hunter2-".
const (
	canary    = "hunter2"
	b64Canary = "aHVudGVyMi"
)

// secretPatchLimits bound a generate run of a two-node cluster whose bundle exists, in a
// child process, start-up included (measured: 0.05-0.15 s, 6 MiB peak heap, 8 MiB allocated).
var secretPatchLimits = bounded.Limits{Wall: 10 * time.Second, Heap: 128 << 20, TotalAlloc: 256 << 20}

// TestSecretBearingPatches generates a cluster with each secret-bearing patch of the corpus,
// in a child process bounded in time and memory: no file written under clusters/ may hold a
// planted value in clear (nodes.redacted.yaml included), and the view must still show what
// a reviewer needs.
func TestSecretBearingPatches(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(secretPatchDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}

	if len(files) < 8 {
		t.Fatalf("found %d secret-bearing patches in %s, want at least 8", len(files), secretPatchDir)
	}

	// One project generated without a patch: its identity, rules and secrets bundle are copied
	// into each case, so that no case spends its time bound on making keys.
	base, profilePath := newProject(t, "", nil)
	keyFile := filepath.Join(base, "keys.txt")
	isolateSOPS(t, keyFile)
	writeAgeIdentity(t, keyFile)

	if _, err := generate.Run(context.Background(), generate.Options{Profile: profilePath}); err != nil {
		t.Fatal(err)
	}

	for _, src := range files {
		name := filepath.Base(src)

		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			dir := t.TempDir()
			copyTree(t, base, dir)
			copyFile(t, src, filepath.Join(dir, "patches", name))
			writeFile(t, filepath.Join(dir, "profiles", "lab.yaml"), strings.Replace(validProfile, "PATCHES", "patches: {all: [patches/"+name+"]}", 1))

			res := bounded.Run(t, "TestSecretBearingPatchChild", dir, secretPatchLimits)
			if res.Output != "ok" {
				t.Error(res.Output)
			}

			t.Logf("%v, peak heap %d MiB, allocated %d MiB", res.Wall.Round(time.Millisecond), res.PeakHeap>>20, res.TotalAlloc>>20)
		})
	}
}

// TestSecretBearingPatchChild is the child of TestSecretBearingPatches.
func TestSecretBearingPatchChild(t *testing.T) {
	bounded.Child(t, checkSecretPatch)
}

// checkSecretPatch generates the project at dir (profiles/lab.yaml, one patch under
// patches/) and returns "ok" or what is wrong.
func checkSecretPatch(dir string) string {
	patches, err := filepath.Glob(filepath.Join(dir, "patches", "*.yaml"))
	if err != nil || len(patches) != 1 {
		return "want exactly one patch in the project"
	}

	patch, err := os.ReadFile(patches[0])
	if err != nil {
		return err.Error()
	}

	if _, err := generate.Run(context.Background(), generate.Options{Profile: filepath.Join(dir, "profiles", "lab.yaml")}); err != nil {
		return "generate: " + err.Error()
	}

	var problems []string

	out := filepath.Join(dir, "clusters", "lab")

	err = filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}

		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}

		for _, planted := range []string{canary, b64Canary} {
			if i := bytes.Index(data, []byte(planted)); i >= 0 {
				rel, _ := filepath.Rel(out, p)
				problems = append(problems, rel+" holds a planted secret in clear: "+lineAt(data, i))
			}
		}

		return nil
	})
	if err != nil {
		return err.Error()
	}

	view, err := os.ReadFile(filepath.Join(out, generate.RedactedFile))
	if err != nil {
		return err.Error()
	}

	visible := []string{"hostname: cp-1", "hostname: w-1"}

	for line := range strings.Lines(string(patch)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "# visible: "); ok {
			visible = append(visible, v)
		}
	}

	for _, v := range visible {
		if !bytes.Contains(view, []byte(v)) {
			problems = append(problems, generate.RedactedFile+" does not show "+v)
		}
	}

	if len(problems) == 0 {
		return "ok"
	}

	return strings.Join(problems, "\n")
}

func lineAt(data []byte, at int) string {
	start := bytes.LastIndexByte(data[:at], '\n') + 1

	end := bytes.IndexByte(data[at:], '\n')
	if end < 0 {
		return string(data[start:])
	}

	return string(data[start : at+end])
}

// TestPartialSOPSRuleIsRefused: a project whose .sops.yaml encrypts only the fields its
// encrypted_regex names (here in machine-config spelling, which misses the bundle's lower-case
// secretboxencryptionsecret) gets an error naming the rule and writes nothing.
func TestPartialSOPSRuleIsRefused(t *testing.T) {
	dir, profilePath := newProject(t, "", nil)
	keyFile := filepath.Join(dir, "keys.txt")
	isolateSOPS(t, keyFile)
	recipient := writeAgeIdentity(t, keyFile)

	writeFile(t, filepath.Join(dir, sopsfile.ConfigFileName), "creation_rules:\n"+
		"  - path_regex: \\.sops\\.ya?ml$|\\.enc$\n"+
		"    encrypted_regex: ^(key|token|secret|secretboxEncryptionSecret|aescbcEncryptionSecret|bootstrapToken|data)$\n"+
		"    age: "+recipient+"\n")

	before := snapshot(t, dir)

	_, err := generate.Run(context.Background(), generate.Options{Profile: profilePath})

	var pe *sopsfile.PlaintextError
	if !errors.As(err, &pe) {
		t.Fatalf("want a *sopsfile.PlaintextError, got %v", err)
	}

	for _, want := range []string{filepath.Join(dir, sopsfile.ConfigFileName), "creation rule 1", "secrets.secretboxencryptionsecret", "remove encrypted_regex"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}

	assertUnchanged(t, dir, before)
}
