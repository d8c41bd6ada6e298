package generate

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/talforge/talforge/pkg/gitops"
	"github.com/talforge/talforge/pkg/runlock"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// TestPruneKeepsUserFiles: when a node leaves the profile its files go, and only they: a
// file in nodes/ that talforge never wrote survives, whatever its name. Before, prune removed
// every *.yaml and *.enc in nodes/ the run did not write.
func TestPruneKeepsUserFiles(t *testing.T) {
	dir, path := project(t, homelab)
	out := filepath.Join(dir, "clusters", "home")

	run(t, path)

	user := map[string]string{"nodes/notes.yaml": "mine\n", "nodes/w-9.yaml.enc": "mine", "nodes/README.md": "mine", "extra.yaml": "mine\n"}
	for p, data := range user {
		mustWrite(t, filepath.Join(out, p), data)
	}

	mustWrite(t, path, strings.Replace(homelab, "  - {name: w-2, role: worker, ip: 192.168.1.62}\n", "", 1))

	res := run(t, path)
	if !slices.Equal(res.Files.Removed, []string{"nodes/w-2.yaml.enc"}) {
		t.Errorf("removed %v, want nodes/w-2.yaml.enc", res.Files.Removed)
	}

	for p, data := range user {
		if got, err := os.ReadFile(filepath.Join(out, p)); err != nil || string(got) != data {
			t.Errorf("the user's %s: %q %v", p, got, err)
		}
	}

	if _, err := os.Stat(filepath.Join(out, NodeConfigFile("w-2"))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the departed node's config stays: %v", err)
	}
}

// TestTornSetIsRepaired: a directory holding the new node files under the old lockfile (what a
// kill amid the renames of an older talforge left) is detected, reported and rewritten: after
// the next run every file is what the lockfile says and what the profile renders.
func TestTornSetIsRepaired(t *testing.T) {
	dir, path := project(t, homelab)
	out := filepath.Join(dir, "clusters", "home")

	run(t, path)

	oldLock, err := os.ReadFile(filepath.Join(out, LockFile))
	if err != nil {
		t.Fatal(err)
	}

	oldW1, _ := os.ReadFile(filepath.Join(out, NodeConfigFile("w-1")))

	// The next generation: another nameserver changes every node.
	next := strings.Replace(homelab, "nameservers: [1.1.1.1]", "nameservers: [9.9.9.9]", 1)
	mustWrite(t, path, next)
	want := run(t, path)

	// Torn: the old lockfile back, one node file of the old generation back too.
	mustWrite(t, filepath.Join(out, LockFile), string(oldLock))
	mustWrite(t, filepath.Join(out, NodeConfigFile("w-1")), string(oldW1))

	var log bytes.Buffer

	res, err := Run(context.Background(), Options{Profile: path, Log: &log})
	if err != nil {
		t.Fatal(err)
	}

	if !strings.Contains(log.String(), "differ from talforge.lock.yaml") || !strings.Contains(log.String(), NodeConfigFile("cp-1")) {
		t.Errorf("the torn set was not reported:\n%s", log.String())
	}

	lock := readLock(filepath.Join(out, LockFile))
	if torn := lock.differing(context.Background(), out); len(torn) != 0 {
		t.Errorf("after the repair these differ from the lockfile: %v", torn)
	}

	for _, cfg := range want.Configs {
		plain, err := sopsfile.DecryptFile(filepath.Join(out, NodeConfigFile(cfg.Node.Name)))
		if err != nil {
			t.Fatal(err)
		}

		if !bytes.Equal(plain, cfg.Bytes) || digest(plain) != lock.nodeDigest(cfg.Node.Name) {
			t.Errorf("%s is not the profile's config after the repair", cfg.Node.Name)
		}
	}

	if !slices.Contains(res.Files.Written, NodeConfigFile("w-1")) {
		t.Errorf("the stale w-1 was not rewritten: %v", res.Files.Written)
	}

	// Repaired: the next run has nothing to do.
	if again := run(t, path); again.Files.Changed() {
		t.Errorf("a run after the repair wrote %v", again.Files.Written)
	}
}

// TestStaleStagingIsCleared: staging directories of killed runs go at the next start (and
// one whose run had committed is completed); nothing else in the directory is touched.
func TestStaleStagingIsCleared(t *testing.T) {
	dir, path := project(t, homelab)
	out := filepath.Join(dir, "clusters", "home")

	run(t, path)

	mustWrite(t, filepath.Join(out, gitops.StagingPrefix+"dead1", "nodes", "cp-1.yaml.enc"), "half")
	mustWrite(t, filepath.Join(out, gitops.StagingPrefix+"dead2", "schematic.yaml"), "half")
	mustWrite(t, filepath.Join(out, "staging-notes", "a.txt"), "mine")
	mustWrite(t, filepath.Join(out, ".schematic.yaml.tmp-123"), "an older talforge's leftover")

	var log bytes.Buffer
	if _, err := Run(context.Background(), Options{Profile: path, Log: &log}); err != nil {
		t.Fatal(err)
	}

	if !strings.Contains(log.String(), "removed what 2 interrupted run(s) had staged") {
		t.Errorf("log:\n%s", log.String())
	}

	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), gitops.StagingPrefix) {
			t.Errorf("%s stays", e.Name())
		}
	}

	for _, p := range []string{"staging-notes/a.txt", ".schematic.yaml.tmp-123"} {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Errorf("%s was touched: %v", p, err)
		}
	}
}

// TestGenerateLocked: while another run holds the cluster directory's lock, generate fails at
// once with a message naming it, and writes nothing.
func TestGenerateLocked(t *testing.T) {
	dir, path := project(t, homelab)
	out := filepath.Join(dir, "clusters", "home")

	run(t, path)

	before := snapshot(t, dir)

	_, lk, err := runlock.Acquire(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}

	mustWrite(t, path, strings.Replace(homelab, "nameservers: [1.1.1.1]", "nameservers: [9.9.9.9]", 1))

	_, err = Run(context.Background(), Options{Profile: path})

	var held *runlock.HeldError
	if !errors.As(err, &held) || !strings.Contains(err.Error(), "another talforge run holds the lock on ") || held.PID != os.Getpid() {
		t.Fatalf("generate under another run's lock: %v", err)
	}

	after := snapshot(t, dir)
	for f, b := range before {
		if f != filepath.Join("profiles", "home.yaml") && f != filepath.Join("clusters", "home", runlock.FileName) && after[f] != b {
			t.Errorf("%s changed under another run's lock", f)
		}
	}

	lk.Release()

	if res := run(t, path); !res.Files.Changed() {
		t.Error("after the lock was released the change was not written")
	}
}
