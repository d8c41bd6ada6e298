package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteIfChanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "f.yaml")

	if wrote, err := WriteIfChanged(path, []byte("x"), 0o600); err != nil || !wrote {
		t.Fatalf("first write: %v %v", wrote, err)
	}

	past := time.Now().Add(-time.Hour)
	os.Chtimes(path, past, past)

	if wrote, err := WriteIfChanged(path, []byte("x"), 0o600); err != nil || wrote {
		t.Fatalf("unchanged write: %v %v", wrote, err)
	}

	if st, _ := os.Stat(path); !st.ModTime().Equal(past) || st.Mode().Perm() != 0o600 {
		t.Errorf("unchanged file touched: %v %v", st.ModTime(), st.Mode())
	}

	if wrote, _ := WriteIfChanged(path, []byte("x"), 0o644); !wrote {
		t.Error("a permission change was not written")
	}
}

func TestBatch(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "old"), []byte("old"), 0o644)

	var b Batch
	for _, name := range []string{"old", "new", "sub/deep"} {
		if err := b.Add(filepath.Join(dir, name), []byte(name+"!"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Nothing is visible before Commit.
	if got, _ := os.ReadFile(filepath.Join(dir, "old")); string(got) != "old" {
		t.Fatalf("old = %q before commit", got)
	}

	if _, err := os.Stat(filepath.Join(dir, "new")); err == nil {
		t.Fatal("new exists before commit")
	}

	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{"old", "new", "sub/deep"} {
		if got, _ := os.ReadFile(filepath.Join(dir, name)); string(got) != name+"!" {
			t.Errorf("%s = %q", name, got)
		}
	}

	var aborted Batch
	aborted.Add(filepath.Join(dir, "never"), []byte("x"), 0o644)
	aborted.Abort()

	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("after abort the directory holds %d entries, want 3", len(entries))
	}
}
