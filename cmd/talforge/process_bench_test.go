//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/talforge/talforge/internal/testenv/bigprofile"
)

// BenchmarkProcess measures what a user waits for: the release binary (`make build`) run as a
// whole process, start-up and exit included, where BenchmarkGenerate measures generate.Run in a
// warm test process. It reports the peak resident memory of one more run (peak-MiB) beside ns/op,
// for issue 16's whole-process targets: `talforge version`, and `generate` with no change at 3
// and 1,000 nodes and with every node's config changed at 1,000 nodes.
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
		benchProcess(b, bin, peakrss, nil, "version")
	})

	for _, n := range []int{3, 1000} {
		dir := b.TempDir()
		env := append(os.Environ(),
			"SOPS_AGE_KEY_FILE="+filepath.Join(dir, "age.txt"),
			"XDG_CACHE_HOME="+filepath.Join(dir, "cache"), // generate's records of the last run
			"GOGC=", "GOMEMLIMIT=", "GODEBUG=")
		profile := writeBenchProject(b, dir, n)

		// The first run makes the age key, the .sops.yaml and the secrets bundle.
		first := exec.CommandContext(b.Context(), bin, "generate", "-p", profile)
		first.Env = env
		if out, err := first.CombinedOutput(); err != nil {
			b.Fatalf("first generate: %v\n%s", err, out)
		}

		b.Run(fmt.Sprintf("generate/nodes=%d/no-change", n), func(b *testing.B) {
			benchProcess(b, bin, peakrss, env, "generate", "-p", profile)
		})

		if n < 1000 {
			continue
		}

		b.Run(fmt.Sprintf("generate/nodes=%d/all-changed", n), func(b *testing.B) {
			i := 0
			change := func() {
				i++
				// A new nameserver changes every node's config.
				data, err := os.ReadFile(profile)
				if err != nil {
					b.Fatal(err)
				}

				data = benchNameservers.ReplaceAll(data, fmt.Appendf(nil, "nameservers: [10.0.0.%d]", 100+i%100))
				if err := os.WriteFile(profile, data, 0o644); err != nil {
					b.Fatal(err)
				}
			}

			benchProcess(b, bin, peakrss, env, "generate", "-p", profile, change)
		})
	}
}

var benchNameservers = regexp.MustCompile(`nameservers: \[[0-9.]+\]`)

// benchProcess runs bin with args once per iteration, after before (untimed) when the last
// argument is a func(), and fails on a non-zero exit. After the timed runs it runs the command
// once more under peakrss and reports that run's peak resident memory.
func benchProcess(b *testing.B, bin, peakrss string, env []string, args ...any) {
	var (
		argv   []string
		before func()
	)

	for _, a := range args {
		switch a := a.(type) {
		case string:
			argv = append(argv, a)
		case func():
			before = a
		}
	}

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

// writeBenchProject writes a project with a profile of n nodes (bigprofile.Text) and one
// cluster-wide patch, as BenchmarkGenerate does, and returns the profile's path.
func writeBenchProject(b *testing.B, dir string, n int) string {
	b.Helper()

	patch := filepath.Join(dir, "patches", "common.yaml")
	profile := filepath.Join(dir, "profiles", fmt.Sprintf("bench%d.yaml", n))

	for path, content := range map[string]string{
		patch:   "apiVersion: v1alpha1\nkind: TimeSyncConfig\nntp:\n  servers: [time.cloudflare.com]\n",
		profile: bigprofile.Text(n, "patches/common.yaml"),
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			b.Fatal(err)
		}

		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}

	return profile
}
