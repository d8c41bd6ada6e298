package profile_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talforge/talforge/internal/testenv/bounded"
	"github.com/talforge/talforge/pkg/profile"
)

// hostileDir holds the hostile-input corpus: profiles, and files they name, made to keep a
// loader busy for minutes, exhaust its memory or make it read outside the project. The headers
// are the bad-input corpus' ("# expect:", "# line:"). Cases that need a huge file, a symlink or
// a FIFO are made at run time by generatedHostileCases.
const hostileDir = "testdata/hostile"

// hostileLimits bound every hostile case, start-up of the child process included. They are
// generous: a refused case takes milliseconds and a few MiB. Before the loader bounded its
// input, the merge-key bomb ran for 151 s, the billion-laughs Helm values and the dense list
// for minutes, a 512 MiB file took 512 MiB, and a FIFO blocked forever.
var hostileLimits = bounded.Limits{Wall: 5 * time.Second, Heap: 256 << 20, TotalAlloc: 512 << 20}

// maxErrorBytes bounds what a refused profile prints: a screenful, not megabytes.
const maxErrorBytes = 64 << 10

// loadOutcome is what TestHostileChild reports of one Load.
type loadOutcome struct {
	Accepted  bool
	Error     string
	Problems  int // -1: the error is not a profile.Problems
	FirstLine int
	Files     []string
	NoHint    []string
}

// TestHostileChild loads one profile in the child process TestHostileCorpus starts.
func TestHostileChild(t *testing.T) {
	bounded.Child(t, func(path string) string {
		var o loadOutcome

		_, err := profile.Load(path)
		if err == nil {
			o.Accepted = true
		} else {
			o.Error = err.Error()
			o.Problems = -1

			var ps profile.Problems
			if errors.As(err, &ps) {
				o.Problems = len(ps)
				o.FirstLine = ps[0].Line

				for _, p := range ps {
					o.Files = append(o.Files, p.File)
					if p.Hint == "" {
						o.NoHint = append(o.NoHint, p.String())
					}
				}
			}
		}

		data, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}

		return string(data)
	})
}

// TestHostileCorpus loads every hostile profile in a child process bounded in time and memory
// and checks that it is refused with a short error that says what is wrong and where.
func TestHostileCorpus(t *testing.T) {
	cases := append(readCorpusDir(t, hostileDir), generatedHostileCases(t)...)

	for _, tc := range cases {
		t.Run(strings.TrimSuffix(filepath.Base(tc.file), ".yaml"), func(t *testing.T) {
			res := bounded.Run(t, "TestHostileChild", tc.file, hostileLimits)

			var o loadOutcome
			if err := json.Unmarshal([]byte(res.Output), &o); err != nil {
				t.Fatalf("child output %q: %v", res.Output, err)
			}

			t.Logf("returned in %v, peak heap %d KiB, allocated %d KiB", res.Wall, res.PeakHeap>>10, res.TotalAlloc>>10)

			if o.Accepted {
				t.Fatal("Load accepted a hostile profile")
			}

			if o.Problems < 1 {
				t.Fatalf("error is not a profile.Problems: %s", o.Error)
			}

			if len(o.Error) > maxErrorBytes {
				t.Errorf("the error is %d bytes, want at most %d: problems are not capped", len(o.Error), maxErrorBytes)
			}

			msg := o.Error
			if len(msg) > 4000 {
				msg = msg[:4000] + "..."
			}

			for _, want := range tc.expects {
				if !strings.Contains(o.Error, want) {
					t.Errorf("error lacks %q:\n%s", want, msg)
				}
			}

			if tc.line > 0 && o.FirstLine != tc.line {
				t.Errorf("first problem is at line %d, want %d:\n%s", o.FirstLine, tc.line, msg)
			}

			for _, f := range o.Files {
				if f != tc.file {
					t.Errorf("a problem names file %q, want %q", f, tc.file)

					break
				}
			}

			if len(o.NoHint) > 0 {
				t.Errorf("problems say nothing about how to fix them: %v", o.NoHint)
			}
		})
	}
}

// hostileHead is a valid profile up to its node list.
const hostileHead = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
network: {cidr: 192.168.1.0/24, gateway: 192.168.1.1}
nodes:
  - {name: cp-1, role: controlplane, ip: 192.168.1.51}
`

// generatedHostileCases makes the hostile inputs that a repository cannot hold (512 MiB files,
// symlinks, a FIFO) in a temporary project whose root is its directory.
func generatedHostileCases(t *testing.T) []corpusCase {
	t.Helper()

	root := t.TempDir()
	outside := t.TempDir() // a directory beside the project, not in it

	write := func(name, content string) string {
		t.Helper()

		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}

		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}

		return path
	}

	// huge makes a sparse file of 512 MiB: nothing on disk, everything for a loader that reads it.
	huge := func(path, head string) {
		t.Helper()

		write(path, head)

		if err := os.Truncate(filepath.Join(root, path), 512<<20); err != nil {
			t.Fatal(err)
		}
	}

	if err := os.WriteFile(filepath.Join(outside, "secret.yaml"), []byte("machine:\n  env:\n    STOLEN: yes\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	if err := os.Symlink(filepath.Join(outside, "secret.yaml"), filepath.Join(root, "evil.yaml")); err != nil {
		t.Fatal(err)
	}

	if err := os.Symlink(outside, filepath.Join(root, "secrets")); err != nil {
		t.Fatal(err)
	}

	var cases []corpusCase

	add := func(name, content string, expects ...string) {
		cases = append(cases, corpusCase{file: write(name+".yaml", content), expects: expects})
	}

	huge("huge-profile.yaml", hostileHead)
	cases = append(cases, corpusCase{file: filepath.Join(root, "huge-profile.yaml"), expects: []string{"is larger than 1048576 bytes (1 MiB)"}})

	huge("patches/huge.yaml", "machine: {}\n")
	add("huge-patch", hostileHead+"patches: {all: [patches/huge.yaml]}\n",
		"patches.all[0]: patch "+filepath.Join(root, "patches/huge.yaml")+": is larger than 1048576 bytes")

	// Just under the size limit, the densest YAML there is: half a million list items.
	dense := hostileHead + "talos:\n  extensions: [" + strings.Repeat("a/b,", (profile.MaxFileBytes-len(hostileHead)-40)/4) + "a/b]\n"
	add("dense-list", dense, "the file passes 100000 YAML nodes here")

	// Many independent mistakes: each listed once, the rest counted.
	many := hostileHead + "talos:\n  extensions: [" + strings.Repeat("Not-An-Extension,", 20000) + "x]\n"
	add("many-problems", many, "... and 19901 more problems (only the first 100 are listed)")

	add("symlink-patch", hostileHead+"patches: {all: [evil.yaml]}\n",
		"patches.all[0]: patch evil.yaml: ", "evil.yaml resolves through a symlink to "+filepath.Join(outside, "secret.yaml"), "outside the project root")
	add("symlink-dir-credentials", strings.Replace(hostileHead, "ip: 192.168.1.51}", "ip: 192.168.1.51, longhornDisk: 50G}", 1)+
		"longhorn: {backup: {target: 's3://b@eu-west-1/', credentialsFile: secrets/secret.yaml}}\n",
		"longhorn.backup.credentialsFile: file secrets/secret.yaml: ", "resolves through a symlink to "+filepath.Join(outside, "secret.yaml"))

	// /dev/zero never ends: confined to a trusted /dev, it is still no patch.
	add("dev-zero", hostileHead+"externalDirs: [/dev]\npatches: {all: [/dev/zero]}\n", "patch /dev/zero: ", "not a regular file")

	if mkfifo, err := exec.LookPath("mkfifo"); err == nil {
		if out, err := exec.Command(mkfifo, filepath.Join(root, "fifo.yaml")).CombinedOutput(); err != nil {
			t.Fatalf("mkfifo: %v: %s", err, out)
		}

		// Reading a FIFO blocks until someone writes to it: forever.
		add("fifo-patch", hostileHead+"patches: {all: [fifo.yaml]}\n", "patch "+filepath.Join(root, "fifo.yaml")+": ", "not a regular file")
	}

	return cases
}

// TestExternalDirs: a file outside the project root is read when the profile lists its
// directory in externalDirs, through a symlink or by absolute path; the opt-in covers that
// directory only.
func TestExternalDirs(t *testing.T) {
	root, outside, other := t.TempDir(), t.TempDir(), t.TempDir()

	for _, dir := range []string{outside, other} {
		if err := os.WriteFile(filepath.Join(dir, "common.yaml"), []byte("machine: {}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	if err := os.Symlink(outside, filepath.Join(root, "shared")); err != nil {
		t.Fatal(err)
	}

	rel, err := filepath.Rel(root, outside)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, extra, wantErr string
	}{
		{"symlinked dir, not listed", "patches: {all: [shared/common.yaml]}\n", "resolves through a symlink to " + filepath.Join(outside, "common.yaml")},
		{"symlinked dir, listed", fmt.Sprintf("externalDirs: [%s]\npatches: {all: [shared/common.yaml]}\n", outside), ""},
		{"absolute path, listed relative to the root", fmt.Sprintf("externalDirs: [%s]\npatches: {all: [%s]}\n", rel, filepath.Join(outside, "common.yaml")), ""},
		{"another directory", fmt.Sprintf("externalDirs: [%s]\npatches: {all: [%s]}\n", outside, filepath.Join(other, "common.yaml")), filepath.Join(other, "common.yaml") + " is outside the project root " + root + " and externalDirs (" + outside + ")"},
		{"missing external dir", "externalDirs: [nowhere]\n", "externalDirs[0]: " + filepath.Join(root, "nowhere") + " is not a directory"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(root, "lab.yaml")

			c, err := profile.Parse(path, []byte(hostileHead+tt.extra))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}

				if data, err := c.ReadFile(c.Patches.All[0]); err != nil || string(data) != "machine: {}\n" {
					t.Errorf("ReadFile: %q, %v", data, err)
				}

				return
			}

			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("want an error with %q, got %v", tt.wantErr, err)
			}
		})
	}
}

// TestReadFileRefusesASwappedSymlink: a file that was inside the project root when the profile
// was loaded and is then replaced by a symlink to the outside is refused when it is read.
func TestReadFileRefusesASwappedSymlink(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	patch := filepath.Join(root, "patches", "p.yaml")

	if err := os.MkdirAll(filepath.Dir(patch), 0o755); err != nil {
		t.Fatal(err)
	}

	for _, p := range []string{patch, filepath.Join(outside, "p.yaml")} {
		if err := os.WriteFile(p, []byte("machine: {}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	c, err := profile.Parse(filepath.Join(root, "lab.yaml"), []byte(hostileHead+"patches: {all: [patches/p.yaml]}\n"))
	if err != nil {
		t.Fatal(err)
	}

	if err := os.RemoveAll(filepath.Join(root, "patches")); err != nil {
		t.Fatal(err)
	}

	if err := os.Symlink(outside, filepath.Join(root, "patches")); err != nil {
		t.Fatal(err)
	}

	if _, err := c.ReadFile("patches/p.yaml"); !errors.Is(err, profile.ErrOutsideRoot) {
		t.Errorf("ReadFile through a swapped-in symlink: %v, want ErrOutsideRoot", err)
	}
}
