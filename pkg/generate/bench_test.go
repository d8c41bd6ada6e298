package generate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/talforge/talforge/internal/testenv/bigprofile"
)

// writeBigProfile writes a project whose profile has n nodes (bigprofile.WriteProject): static
// IPs, VIP, 3 extensions, a user volume, one cluster-wide patch.
func writeBigProfile(tb testing.TB, dir string, n int) string {
	tb.Helper()

	path, err := bigprofile.WriteProject(dir, n)
	if err != nil {
		tb.Fatal(err)
	}

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
				if err := bigprofile.ChangeEveryNode(path, i); err != nil {
					b.Fatal(err)
				}

				if _, err := Run(context.Background(), Options{Profile: path}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
