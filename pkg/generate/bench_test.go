package generate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/talforge/talforge/internal/testenv/bigprofile"
)

// writeBigProfile writes a profile with n nodes (bigprofile.Text) and one cluster-wide patch:
// static IPs, VIP, 3 extensions, a user volume.
func writeBigProfile(tb testing.TB, dir string, n int) string {
	tb.Helper()

	mustWrite(tb, filepath.Join(dir, "patches", "common.yaml"), "apiVersion: v1alpha1\nkind: TimeSyncConfig\nntp:\n  servers: [time.cloudflare.com]\n")

	path := filepath.Join(dir, "profiles", fmt.Sprintf("bench%d.yaml", n))
	mustWrite(tb, path, bigprofile.Text(n, "patches/common.yaml"))

	return path
}

func mustWrite(tb testing.TB, path, content string) {
	tb.Helper()

	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}

	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
}

var nameserverRE = regexp.MustCompile(`nameservers: \[[0-9.]+\]`)

// BenchmarkGenerate measures a whole generate (load, render, validate, encrypt, write) of an
// existing cluster after a profile change, and a no-change re-run (which proves the output
// current from the record of the previous run, without rendering: see reuse.go).
func BenchmarkGenerate(b *testing.B) {
	for _, n := range []int{3, 100, 1000} {
		dir := b.TempDir()
		b.Setenv("SOPS_AGE_KEY_FILE", filepath.Join(dir, "age.txt"))
		b.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache")) // the records of reuse.go
		path := writeBigProfile(b, dir, n)

		if _, err := Run(context.Background(), Options{Profile: path}); err != nil {
			b.Fatal(err)
		}

		b.Run(fmt.Sprintf("nodes=%d/no-change", n), func(b *testing.B) {
			b.ReportAllocs()

			for b.Loop() {
				res, err := Run(context.Background(), Options{Profile: path})
				if err != nil {
					b.Fatal(err)
				}

				if res.Files.Changed() {
					b.Fatal("a no-change run wrote files")
				}
			}
		})

		b.Run(fmt.Sprintf("nodes=%d/all-changed", n), func(b *testing.B) {
			b.ReportAllocs()

			i := 0
			for b.Loop() {
				i++
				// A new nameserver changes every node's config.
				data, _ := os.ReadFile(path)
				mustWrite(b, path, nameserverRE.ReplaceAllString(string(data), fmt.Sprintf("nameservers: [10.0.0.%d]", 100+i%100)))

				if _, err := Run(context.Background(), Options{Profile: path}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
