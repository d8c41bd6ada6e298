package gitops

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func stageCommit(t *testing.T, dir string, files []File, keep ...string) *Result {
	t.Helper()

	s, err := (&Writer{Dir: dir}).Stage(context.Background(), files, keep)
	if err != nil {
		t.Fatal(err)
	}

	res, err := s.Commit("nodes")
	if err != nil {
		t.Fatal(err)
	}

	return res
}

func TestStageCommitIsIdempotentAndPrunes(t *testing.T) {
	dir := t.TempDir()
	files := []File{
		{Path: "a.yaml", Data: []byte("a: 1\n")},
		{Path: "nodes/n1.yaml.enc", Data: []byte("enc1")},
		{Path: "nodes/n2.yaml.enc", Data: []byte("enc2")},
	}

	res := stageCommit(t, dir, files)
	if len(res.Written) != 3 {
		t.Fatalf("first write: %+v", res)
	}

	past := time.Now().Add(-time.Hour)
	for _, f := range files {
		os.Chtimes(filepath.Join(dir, f.Path), past, past) //nolint:errcheck
	}

	res = stageCommit(t, dir, files)
	if res.Changed() || len(res.Unchanged) != 3 {
		t.Fatalf("second write changed something: %+v", res)
	}

	for _, f := range files {
		st, _ := os.Stat(filepath.Join(dir, f.Path))
		if !st.ModTime().Equal(past) {
			t.Errorf("%s was rewritten (mtime changed)", f.Path)
		}
	}

	// n2 left the profile; n1 is known current (kept unread).
	res = stageCommit(t, dir, files[:1], "nodes/n1.yaml.enc")
	if !slices.Equal(res.Removed, []string{"nodes/n2.yaml.enc"}) {
		t.Errorf("removed = %v, want nodes/n2.yaml.enc", res.Removed)
	}

	if _, err := os.Stat(filepath.Join(dir, "nodes/n1.yaml.enc")); err != nil {
		t.Error("a kept file was pruned")
	}

	if entries, _ := os.ReadDir(filepath.Join(dir, "nodes")); len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestLeakWritesNothing(t *testing.T) {
	dir := t.TempDir()

	_, err := (&Writer{Dir: dir}).Stage(context.Background(), []File{
		{Path: "ok.yaml", Data: []byte("a: 1\n")},
		{Path: "nodes/bad.yaml", Data: []byte(pemKey)},
	}, nil)
	if err == nil {
		t.Fatal("a PEM key was staged")
	}

	var found []string

	filepath.WalkDir(dir, func(p string, d os.DirEntry, _ error) error { //nolint:errcheck
		if !d.IsDir() {
			found = append(found, p)
		}

		return nil
	})

	if len(found) != 0 {
		t.Errorf("files left on disk after a refused write: %v", found)
	}
}

func TestCommit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}

	ctx := context.Background()
	t.Setenv("GIT_AUTHOR_NAME", "t")
	t.Setenv("GIT_AUTHOR_EMAIL", "t@example.com")
	t.Setenv("GIT_COMMITTER_NAME", "t")
	t.Setenv("GIT_COMMITTER_EMAIL", "t@example.com")

	outside := t.TempDir()
	if _, err := Commit(ctx, outside, "msg"); err == nil || !strings.Contains(err.Error(), "not inside a Git repository") {
		t.Fatalf("outside a repository: %v", err)
	}

	repo := t.TempDir()
	if out, err := exec.Command("git", "-C", repo, "init", "-q").CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}

	out := filepath.Join(repo, "clusters", "c")
	stageCommit(t, out, []File{{Path: "a.yaml", Data: []byte("a: 1\n")}})

	// Something else staged in the repository must not end up in talforge's commit.
	os.WriteFile(filepath.Join(repo, "other.txt"), []byte("x"), 0o644) //nolint:errcheck
	exec.Command("git", "-C", repo, "add", "other.txt").Run()          //nolint:errcheck

	done, err := Commit(ctx, out, "talforge: generate c")
	if err != nil || !done {
		t.Fatalf("commit: %v %v", done, err)
	}

	files, _ := exec.Command("git", "-C", repo, "show", "--name-only", "--format=%s", "HEAD").Output()
	if got := strings.Fields(string(files)); !slices.Equal(got, []string{"talforge:", "generate", "c", "clusters/c/a.yaml"}) {
		t.Errorf("commit = %q", files)
	}

	if done, err := Commit(ctx, out, "again"); err != nil || done {
		t.Errorf("a commit with nothing changed: %v %v", done, err)
	}
}
