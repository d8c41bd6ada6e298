package machineconfig

import (
	"context"
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

// laughsPatch is a billion-laughs patch (9^9 strings from 577 bytes) under a free-form field
// machinery decodes with every alias expanded. Before patches were bounded, depth 7 took 39 s
// and 5.8 GB in configpatcher; depth 8 never finished.
var laughsPatch = func() string {
	var b strings.Builder

	b.WriteString("machine:\n  kubelet:\n    extraConfig:\n      a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")

	for i := 1; i <= 8; i++ {
		fmt.Fprintf(&b, "      a%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 9), ", "))
	}

	return b.String()
}()

// TestHostilePatchChild is the child process of TestHostilePatches: it loads a profile whose
// patch is valid, then swaps the patch for a hostile one (as a file changed after validation,
// or a Cluster not loaded from disk) and renders.
func TestHostilePatchChild(t *testing.T) {
	bounded.Child(t, func(kind string) string {
		outside := t.TempDir()
		c := loadProfile(t, "v1.14.1", "v1.37.0", "patches: {all: [patches/p.yaml]}", map[string]string{"patches/p.yaml": "machine: {}\n"})
		patch := filepath.Join(c.Root(), "patches", "p.yaml")

		if err := os.Remove(patch); err != nil {
			t.Fatal(err)
		}

		switch kind {
		case "laughs":
			if err := os.WriteFile(patch, []byte(laughsPatch), 0o600); err != nil {
				t.Fatal(err)
			}
		case "huge":
			if err := os.WriteFile(patch, []byte("machine: {}\n"), 0o600); err != nil {
				t.Fatal(err)
			}

			if err := os.Truncate(patch, 512<<20); err != nil { // sparse: nothing on disk
				t.Fatal(err)
			}
		case "symlink":
			if err := os.WriteFile(filepath.Join(outside, "id.yaml"), []byte("machine:\n  env:\n    STOLEN: yes\n"), 0o600); err != nil {
				t.Fatal(err)
			}

			if err := os.Symlink(filepath.Join(outside, "id.yaml"), patch); err != nil {
				t.Fatal(err)
			}
		case "fifo":
			if out, err := exec.Command("mkfifo", patch).CombinedOutput(); err != nil {
				t.Fatalf("mkfifo: %v: %s", err, out)
			}
		}

		_, err := New(t.Context(), c, mustImage(t, c), bundleFor(t, c.Talos.Version))

		var pe *PatchError

		switch {
		case err == nil:
			return "accepted"
		case !errors.As(err, &pe) || pe.Patch != "patches/p.yaml":
			return "not a PatchError naming patches/p.yaml: " + err.Error()
		}

		return err.Error()
	})
}

// TestHostilePatches renders with hostile patches, each in a child process bounded in time and
// memory: every one is refused with an error naming the patch.
func TestHostilePatches(t *testing.T) {
	limits := bounded.Limits{Wall: 10 * time.Second, Heap: 256 << 20, TotalAlloc: 768 << 20}

	for _, tc := range []struct{ kind, want string }{
		{"laughs", "the file passes 100000 YAML nodes here"},
		{"huge", "is larger than 1048576 bytes"},
		{"symlink", "resolves through a symlink to"},
		{"fifo", "not a regular file"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			if tc.kind == "fifo" {
				if _, err := exec.LookPath("mkfifo"); err != nil {
					t.Skip("no mkfifo")
				}
			}

			res := bounded.Run(t, "TestHostilePatchChild", tc.kind, limits)
			t.Logf("returned in %v, peak heap %d KiB, allocated %d KiB: %s", res.Wall, res.PeakHeap>>10, res.TotalAlloc>>10, res.Output)

			if !strings.HasPrefix(res.Output, "patch patches/p.yaml: ") || !strings.Contains(res.Output, tc.want) {
				t.Errorf("want a PatchError for patches/p.yaml with %q, got %s", tc.want, res.Output)
			}
		})
	}
}

// TestNewStopsWhenCancelled: New generates a base config per install disk, thousands for a
// big profile; a cancelled context stops it at the next one.
func TestNewStopsWhenCancelled(t *testing.T) {
	var b strings.Builder

	b.WriteString("apiVersion: talforge.dev/v1alpha1\nkind: Cluster\nmetadata: {name: lab}\nnetwork: {cidr: 10.0.0.0/16, gateway: 10.0.0.1}\nnodes:\n")

	for i := range 5000 {
		role := "worker"
		if i == 0 {
			role = "controlplane"
		}

		fmt.Fprintf(&b, "  - {name: n-%d, role: %s, ip: 10.0.%d.%d, installDisk: /dev/disk%d}\n", i, role, 1+i/200, 2+i%200, i)
	}

	c, err := profile.Parse(filepath.Join(t.TempDir(), "lab.yaml"), []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}

	img, bundle := mustImage(t, c), bundleFor(t, c.Talos.Version)

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(200*time.Millisecond, cancel)

	start := time.Now()
	_, err = New(ctx, c, img, bundle)
	late := time.Since(start) - 200*time.Millisecond

	if !errors.Is(err, context.Canceled) {
		t.Fatalf("New after cancel: %v, want context.Canceled", err)
	}

	if late > time.Second {
		t.Errorf("New returned %v after the cancel, want within 1 s", late)
	}
}
