//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/talforge/talforge/internal/testenv/bigprofile"
)

// BenchmarkProcess measures what a user waits for: the release binary (`make build`) run as a
// whole process, start-up and exit included, where BenchmarkGenerate measures generate.Run in a
// warm test process. It reports the peak resident memory of one more run (peak-MiB) beside ns/op,
// for issue 16's whole-process targets: `talforge version`, and `generate` with no change at 3
// and 1,000 nodes and with every node's config changed at 1,000 nodes.
//
// The projects live in the test's temporary directory, so $TMPDIR picks the filesystem the
// "all-changed" runs write to, and that filesystem decides much of their system time. Each run
// replaces 1,000 files, that is 1,000 new inodes and 1,000 deleted ones. ext4 without a journal
// (the root filesystem of some VMs and CI runners) will not reuse an inode deleted less than a
// minute ago (six while its inode table block is dirty): fs/ext4/ialloc.c, find_inode_bit and
// recently_deleted. Each new file then scans past the previous runs' deleted inodes. Runs back to
// back, as here, grow from 0.3 s to over 1 s of system time that way. Journaled ext4, XFS,
// btrfs and tmpfs do not do this: measure on the kind of filesystem a project lives on, e.g.
// TMPDIR=/mnt/ext4 go test -run '^$' -bench BenchmarkProcess ./cmd/talforge.
func BenchmarkProcess(b *testing.B) {
	if testing.Short() {
		b.Skip("builds the talforge binary")
	}

	bin := buildRelease(b)

	// The peak resident memory is measured by a small parent (see internal/testenv/peakrss).
	peakrss := filepath.Join(b.TempDir(), "peakrss")
	if out, err := exec.CommandContext(b.Context(), "go", "build", "-o", peakrss, "../../internal/testenv/peakrss").CombinedOutput(); err != nil {
		b.Fatalf("build peakrss: %v\n%s", err, out)
	}

	b.Run("version", func(b *testing.B) {
		benchProcess(b, bin, peakrss, nil, nil, "version")
	})

	for _, n := range []int{3, 1000} {
		dir := b.TempDir()
		env := append(os.Environ(),
			"SOPS_AGE_KEY_FILE="+filepath.Join(dir, "age.txt"),
			"XDG_CACHE_HOME="+filepath.Join(dir, "cache"), // generate's records of the last run
			"GOGC=", "GOMEMLIMIT=", "GODEBUG=")
		profile, err := bigprofile.WriteProject(dir, n)
		if err != nil {
			b.Fatal(err)
		}

		// The first run makes the age key, the .sops.yaml and the secrets bundle.
		first := exec.CommandContext(b.Context(), bin, "generate", "-p", profile)
		first.Env = env
		if out, err := first.CombinedOutput(); err != nil {
			b.Fatalf("first generate: %v\n%s", err, out)
		}

		b.Run(fmt.Sprintf("generate/nodes=%d/no-change", n), func(b *testing.B) {
			benchProcess(b, bin, peakrss, env, nil, "generate", "-p", profile)
		})

		if n < 1000 {
			continue
		}

		b.Run(fmt.Sprintf("generate/nodes=%d/all-changed", n), func(b *testing.B) {
			i := 0
			change := func() {
				i++
				if err := bigprofile.ChangeEveryNode(profile, i); err != nil {
					b.Fatal(err)
				}
			}

			benchProcess(b, bin, peakrss, env, change, "generate", "-p", profile)
		})
	}
}

// benchProcess runs bin with argv once per iteration, after before (untimed) when it is not
// nil, and fails on a non-zero exit. After the timed runs it runs the command once more under
// peakrss and reports that run's peak resident memory.
func benchProcess(b *testing.B, bin, peakrss string, env []string, before func(), argv ...string) {
	run := func(name string, args ...string) {
		cmd := exec.CommandContext(b.Context(), name, args...)
		cmd.Env = env

		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("talforge %v: %v\n%s", argv, err, out)
		}
	}

	b.ResetTimer()

	for range b.N {
		if before != nil {
			b.StopTimer()
			before()
			b.StartTimer()
		}

		run(bin, argv...)
	}

	b.StopTimer()

	if before != nil {
		before()
	}

	out := filepath.Join(b.TempDir(), "peak")
	run(peakrss, append([]string{out, bin}, argv...)...)

	kib, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}

	n, err := strconv.ParseFloat(string(kib), 64)
	if err != nil {
		b.Fatalf("peakrss wrote %q: %v", kib, err)
	}

	b.ReportMetric(n/1024, "peak-MiB")
}
