package generate_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/machineconfig"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// corpusDir is pkg/profile's bad-input corpus; its helper files (patches/, secrets/) sit beside
// the profiles because relative paths resolve against the profile's directory.
const corpusDir = "../profile/testdata/invalid"

// isolateSOPS points every place sops and talforge look for age keys into the test: the
// identity file is keyFile, and the user's own keys (SOPS_AGE_KEY, ~/.config/sops/age,
// ~/.ssh) are out of reach.
func isolateSOPS(t *testing.T, keyFile string) {
	t.Helper()

	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	t.Setenv("SOPS_AGE_KEY_FILE", keyFile)

	// sops treats a set-but-empty variable as configured, so these must be unset.
	for _, k := range []string{"SOPS_AGE_KEY", "SOPS_AGE_KEY_CMD", "SOPS_AGE_SSH_PRIVATE_KEY_FILE", "SOPS_AGE_SSH_PRIVATE_KEY_CMD", "SOPS_AGE_RECIPIENT"} {
		t.Setenv(k, "")
		os.Unsetenv(k) // restored by t.Setenv's cleanup
	}
}

// fileState is what "nothing was written" compares: content, mode and mtime.
type fileState struct {
	sum   [sha256.Size]byte
	mode  fs.FileMode
	mtime time.Time
}

// snapshot records every file and directory under root.
func snapshot(t *testing.T, root string) map[string]fileState {
	t.Helper()

	out := map[string]fileState{}

	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}

		info, err := d.Info()
		if err != nil {
			return err
		}

		rel, _ := filepath.Rel(root, path)
		st := fileState{mode: info.Mode(), mtime: info.ModTime()}

		if d.Type().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}

			st.sum = sha256.Sum256(data)
		}

		out[filepath.ToSlash(rel)] = st

		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	return out
}

// assertUnchanged fails for every file added, removed or changed under root since before.
func assertUnchanged(t *testing.T, root string, before map[string]fileState) {
	t.Helper()

	after := snapshot(t, root)

	for _, p := range slices.Sorted(maps.Keys(after)) {
		b, ok := before[p]

		switch {
		case !ok:
			t.Errorf("a failed run created %s", p)
		case b.sum != after[p].sum:
			t.Errorf("a failed run changed the content of %s", p)
		case b.mode != after[p].mode:
			t.Errorf("a failed run changed the mode of %s: %v → %v", p, b.mode, after[p].mode)
		case !b.mtime.Equal(after[p].mtime) && !after[p].mode.IsDir():
			t.Errorf("a failed run rewrote %s (mtime %v → %v)", p, b.mtime, after[p].mtime)
		}
	}

	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("a failed run removed %s", p)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()

	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}

	writeFile(t, to, string(data))
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()

	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies the regular files under from into to.
func copyTree(t *testing.T, from, to string) {
	t.Helper()

	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}

		rel, _ := filepath.Rel(from, path)
		copyFile(t, path, filepath.Join(to, rel))

		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBadProfileWritesNothing runs generate on every broken profile of the corpus in a fresh
// project: it must fail with the profile's problems before creating anything — no age
// identity, no .sops.yaml, no clusters/.
func TestBadProfileWritesNothing(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(corpusDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}

	if len(files) < 45 {
		t.Fatalf("found %d corpus files in %s, want at least 45", len(files), corpusDir)
	}

	entries, err := os.ReadDir(corpusDir)
	if err != nil {
		t.Fatal(err)
	}

	var helpers []string

	for _, e := range entries {
		if e.IsDir() {
			helpers = append(helpers, e.Name())
		}
	}

	for _, src := range files {
		name := filepath.Base(src)

		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			dir := t.TempDir()
			keyFile := filepath.Join(dir, "age", "keys.txt")
			isolateSOPS(t, keyFile)

			copyFile(t, src, filepath.Join(dir, name))

			// Helper files the profiles reference (patches/, secrets/): every subdirectory.
			for _, helper := range helpers {
				copyTree(t, filepath.Join(corpusDir, helper), filepath.Join(dir, helper))
			}

			before := snapshot(t, dir)

			res, err := generate.Run(context.Background(), generate.Options{Profile: filepath.Join(dir, name)})
			if err == nil {
				t.Fatalf("generate accepted a broken profile and wrote %v", res.Files.Written)
			}

			var ps profile.Problems
			if !errors.As(err, &ps) {
				t.Errorf("error is a %T, want profile.Problems: %v", err, err)
			}

			if !strings.Contains(err.Error(), name) {
				t.Errorf("error does not name the profile %s: %v", name, err)
			}

			assertUnchanged(t, dir, before)

			for _, never := range []string{keyFile, filepath.Join(dir, sopsfile.ConfigFileName), filepath.Join(dir, "clusters")} {
				if _, err := os.Stat(never); err == nil {
					t.Errorf("a failed run created %s", never)
				}
			}
		})
	}
}

// validProfile is a small cluster that generates; PATCHES is replaced per test.
const validProfile = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
talos: {version: v1.14.1}
network: {cidr: 192.168.1.0/24, gateway: 192.168.1.1, nameservers: [192.168.1.1]}
nodes:
  - {name: cp-1, role: controlplane, ip: 192.168.1.51}
  - {name: w-1, role: worker, ip: 192.168.1.61, longhornDisk: 20G}
PATCHES
`

// newProject writes profiles/lab.yaml (and the given files) into a temp project.
func newProject(t *testing.T, patches string, files map[string]string) (dir, profilePath string) {
	t.Helper()

	dir = t.TempDir()
	profilePath = filepath.Join(dir, "profiles", "lab.yaml")
	writeFile(t, profilePath, strings.Replace(validProfile, "PATCHES", patches, 1))

	for name, content := range files {
		writeFile(t, filepath.Join(dir, name), content)
	}

	return dir, profilePath
}

func writeAgeIdentity(t *testing.T, path string) string {
	t.Helper()

	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}

	writeFile(t, path, "# test identity\n"+id.String()+"\n")

	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}

	return id.Recipient().String()
}

// TestBundleForAnotherKey generates a cluster with key A, then runs again holding only key B:
// the secrets bundle cannot be decrypted, and the run must say so (naming the file and who can
// open it) without touching a single file.
func TestBundleForAnotherKey(t *testing.T) {
	dir, path := newProject(t, "", nil)
	keyA := filepath.Join(dir, "keys", "a.txt")
	keyB := filepath.Join(dir, "keys", "b.txt")
	recipientA := writeAgeIdentity(t, keyA)
	recipientB := writeAgeIdentity(t, keyB)

	isolateSOPS(t, keyA)

	if _, err := generate.Run(context.Background(), generate.Options{Profile: path}); err != nil {
		t.Fatalf("first generate with key A: %v", err)
	}

	bundle := filepath.Join(dir, "clusters", "lab", "secrets.sops.yaml")
	if _, err := os.Stat(bundle); err != nil {
		t.Fatalf("the first run wrote no bundle: %v", err)
	}

	// Make any rewrite visible in mtimes, even on filesystems with coarse timestamps.
	old := time.Now().Add(-time.Hour)
	_ = filepath.WalkDir(filepath.Join(dir, "clusters"), func(p string, _ fs.DirEntry, _ error) error {
		return os.Chtimes(p, old, old)
	})

	before := snapshot(t, dir)

	t.Setenv("SOPS_AGE_KEY_FILE", keyB)

	_, err := generate.Run(context.Background(), generate.Options{Profile: path})
	if err == nil {
		t.Fatal("generate succeeded without a key that opens the secrets bundle")
	}

	var de *sopsfile.DecryptError
	if !errors.As(err, &de) {
		t.Errorf("error is not a *sopsfile.DecryptError: %T %v", err, err)
	}

	msg := err.Error()
	for _, want := range []string{"cannot decrypt", bundle, recipientA, "SOPS_AGE_KEY_FILE", "sops updatekeys"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}

	if strings.Contains(msg, recipientB) {
		t.Errorf("error names key B as a recipient of the bundle:\n%s", msg)
	}

	assertUnchanged(t, dir, before)
}

// TestPatchBreaksValidation: a user patch that applies but makes a node's config invalid for
// machinery fails generate with a PatchError naming the node and the patch, and writes nothing,
// both in a fresh project and in one that was generated before.
func TestPatchBreaksValidation(t *testing.T) {
	tests := []struct {
		name, patch, content string
		node                 string
		want                 []string
	}{
		{
			name:  "v1alpha1 apiServer args on a multi-document contract",
			patch: "patches/legacy-apiserver.yaml",
			// Talos ≥ 1.14 configures kube-apiserver in KubeAPIServerConfig; the v1alpha1 field
			// may not be set as well.
			content: "cluster:\n  apiServer:\n    extraArgs:\n      audit-log-maxage: \"30\"\n",
			node:    "cp-1",
			want:    []string{"node cp-1", "patch patches/legacy-apiserver.yaml", "makes the machine config invalid", "kube-apiserver config is already set in v1alpha1 config"},
		},
		{
			name:  "invalid user volume",
			patch: "patches/bad-volume.yaml",
			content: `apiVersion: v1alpha1
kind: UserVolumeConfig
name: data
provisioning:
  diskSelector:
    match: disk.transport == "nvme"
  minSize: 10GiB
  maxSize: 1GiB
`,
			node: "w-1",
			want: []string{"node w-1", "patch patches/bad-volume.yaml", "makes the machine config invalid", "min size is greater than max size"},
		},
	}

	for _, tt := range tests {
		for _, existing := range []bool{false, true} {
			name := tt.name + "/fresh project"
			if existing {
				name = tt.name + "/generated project"
			}

			t.Run(name, func(t *testing.T) {
				role := "controlplane"
				if tt.node == "w-1" {
					role = "worker"
				}

				dir, path := newProject(t, "", map[string]string{tt.patch: tt.content})
				keyFile := filepath.Join(dir, "keys.txt")
				isolateSOPS(t, keyFile)

				if existing {
					if _, err := generate.Run(context.Background(), generate.Options{Profile: path}); err != nil {
						t.Fatalf("generate without the patch: %v", err)
					}
				}

				writeFile(t, path, strings.Replace(validProfile, "PATCHES", "patches: {"+role+": ["+tt.patch+"]}", 1))

				before := snapshot(t, dir)

				_, err := generate.Run(context.Background(), generate.Options{Profile: path})

				var pe *machineconfig.PatchError
				if !errors.As(err, &pe) {
					t.Fatalf("want a *machineconfig.PatchError, got %T: %v", err, err)
				}

				if pe.Node != tt.node || pe.Patch != tt.patch {
					t.Errorf("PatchError blames node %q patch %q, want node %q patch %q", pe.Node, pe.Patch, tt.node, tt.patch)
				}

				for _, want := range tt.want {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error lacks %q:\n%v", want, err)
					}
				}

				assertUnchanged(t, dir, before)

				if !existing {
					for _, never := range []string{keyFile, filepath.Join(dir, sopsfile.ConfigFileName), filepath.Join(dir, "clusters")} {
						if _, err := os.Stat(never); err == nil {
							t.Errorf("a failed run created %s", never)
						}
					}
				}
			})
		}
	}
}

// TestBadInputKeepsTheIdentityFile: a failing run never rewrites an existing age identity.
func TestBadInputKeepsTheIdentityFile(t *testing.T) {
	dir, path := newProject(t, "patches: {all: [patches/missing.yaml]}", nil)
	keyFile := filepath.Join(dir, "keys.txt")
	writeAgeIdentity(t, keyFile)
	isolateSOPS(t, keyFile)

	want, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := generate.Run(context.Background(), generate.Options{Profile: path}); err == nil {
		t.Fatal("generate accepted a profile whose patch is missing")
	}

	got, err := os.ReadFile(keyFile)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("the identity file changed (err %v)", err)
	}
}
