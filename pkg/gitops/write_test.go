package gitops

import (
	"context"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// stageCommit writes files (and keep) like a run of generate would: a lockfile listing them as
// the commit point, and every file the previous lockfile listed but this run does not write
// removed.
func stageCommit(t *testing.T, dir string, files []File, keep ...string) *Result {
	t.Helper()

	old, _ := os.ReadFile(filepath.Join(dir, "lock.txt"))
	listed := slices.Collect(func(yield func(string) bool) {
		for _, f := range files {
			if !yield(f.Path) {
				return
			}
		}
	})
	listed = append(listed, keep...)
	slices.Sort(listed)

	var remove []string

	for _, p := range strings.Fields(string(old)) {
		if !slices.Contains(listed, p) {
			remove = append(remove, p)
		}
	}

	s, err := (&Writer{Dir: dir}).Stage(context.Background(), files, keep)
	if err != nil {
		t.Fatal(err)
	}

	defer s.Abort()

	res, err := s.Commit(File{Path: "lock.txt", Data: []byte(strings.Join(listed, "\n") + "\n")}, remove)
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
	if len(res.Written) != 4 {
		t.Fatalf("first write: %+v", res)
	}

	past := time.Now().Add(-time.Hour)
	for _, f := range files {
		os.Chtimes(filepath.Join(dir, f.Path), past, past)
	}

	res = stageCommit(t, dir, files)
	if res.Changed() || len(res.Unchanged) != 4 {
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

	filepath.WalkDir(dir, func(p string, d os.DirEntry, _ error) error {
		if !d.IsDir() {
			found = append(found, p)
		}

		return nil
	})

	if len(found) != 0 {
		t.Errorf("files left on disk after a refused write: %v", found)
	}
}

// TestCommitOnlyListedFiles: the commit holds the files talforge lists (written, unchanged or
// removed) and nothing else under the directory (a stray temporary file of a killed run, a
// user's notes, a staging directory) nor what else was staged in the repository. Before
// Commit took a list it ran `git add --all` on the directory and committed all of them.
func TestCommitOnlyListedFiles(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}

	ctx := context.Background()
	t.Setenv("GIT_AUTHOR_NAME", "t")
	t.Setenv("GIT_AUTHOR_EMAIL", "t@example.com")
	t.Setenv("GIT_COMMITTER_NAME", "t")
	t.Setenv("GIT_COMMITTER_EMAIL", "t@example.com")

	outside := t.TempDir()
	if _, err := Commit(ctx, outside, "msg", []string{"a.yaml"}); err == nil || !strings.Contains(err.Error(), "not inside a Git repository") {
		t.Fatalf("outside a repository: %v", err)
	}

	repo := t.TempDir()
	if out, err := exec.Command("git", "-C", repo, "init", "-q").CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}

	out := filepath.Join(repo, "clusters", "c")
	stageCommit(t, out, []File{{Path: "a.yaml", Data: []byte("a: 1\n")}, {Path: "nodes/n1.yaml.enc", Data: []byte("x")}})

	// Something else staged in the repository must not end up in talforge's commit, nor
	// files under the directory that talforge does not list.
	mustWrite(t, filepath.Join(repo, "other.txt"), "x")
	exec.Command("git", "-C", repo, "add", "other.txt").Run()

	for _, stray := range []string{".a.yaml.tmp-123", "notes.md", "nodes/mine.yaml", StagingPrefix + "1/nodes/n1.yaml.enc"} {
		mustWrite(t, filepath.Join(out, stray), "stray")
	}

	done, err := Commit(ctx, out, "talforge: generate c", []string{"a.yaml", "lock.txt", "nodes/n1.yaml.enc"})
	if err != nil || !done {
		t.Fatalf("commit: %v %v", done, err)
	}

	if got := gitLines(t, repo, "show", "--name-only", "--format=", "HEAD"); !slices.Equal(got, []string{"clusters/c/a.yaml", "clusters/c/lock.txt", "clusters/c/nodes/n1.yaml.enc"}) {
		t.Errorf("commit holds %q", got)
	}

	if done, err := Commit(ctx, out, "again", []string{"a.yaml", "lock.txt", "nodes/n1.yaml.enc"}); err != nil || done {
		t.Errorf("a commit with nothing changed: %v %v", done, err)
	}

	// n1 leaves; a file that never was committed and is gone is no change either.
	stageCommit(t, out, []File{{Path: "a.yaml", Data: []byte("a: 2\n")}})

	done, err = Commit(ctx, out, "remove n1", []string{"a.yaml", "lock.txt", "nodes/n1.yaml.enc", "nodes/never.yaml.enc"})
	if err != nil || !done {
		t.Fatalf("commit: %v %v", done, err)
	}

	if got := gitLines(t, repo, "show", "--name-status", "--format=", "HEAD"); !slices.Equal(got, []string{"M\tclusters/c/a.yaml", "M\tclusters/c/lock.txt", "D\tclusters/c/nodes/n1.yaml.enc"}) {
		t.Errorf("commit holds %q", got)
	}

	if got := gitLines(t, repo, "ls-files"); !slices.Equal(got, []string{"clusters/c/a.yaml", "clusters/c/lock.txt", "other.txt"}) {
		t.Errorf("tracked files: %q", got)
	}
}

func gitLines(t *testing.T, repo string, args ...string) []string {
	t.Helper()

	out, err := exec.Command("git", append([]string{"-C", repo}, args...)...).Output()
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}

	return strings.FieldsFunc(string(out), func(r rune) bool { return r == '\n' })
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()

	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Staged files keep only the SHA-256 of what they put on disk (the lockfile records it): it
// must be the digest of the bytes that end up in the output, unchanged or written.
func TestStagedSumIsWhatIsOnDisk(t *testing.T) {
	dir := t.TempDir()
	files := []File{
		{Path: "a.yaml", Data: []byte("a: 1\n")},
		{Path: "nodes/n1.yaml.enc", Data: []byte("enc1")},
	}

	stageCommit(t, dir, files[:1]) // a.yaml is then unchanged, n1 new

	s, err := (&Writer{Dir: dir}).Stage(context.Background(), files, nil)
	if err != nil {
		t.Fatal(err)
	}

	defer s.Abort()

	if _, err := s.Commit(File{Path: "lock.txt", Data: []byte("a.yaml\nnodes/n1.yaml.enc\n")}, nil); err != nil {
		t.Fatal(err)
	}

	staged := s.Files()
	if len(staged) != 3 || !staged[0].Unchanged || staged[1].Unchanged {
		t.Fatalf("staged = %+v, want a.yaml unchanged, n1 and lock.txt written", staged)
	}

	for _, f := range staged {
		data, err := os.ReadFile(filepath.Join(dir, f.Path))
		if err != nil {
			t.Fatal(err)
		}

		if f.Sum != sha256.Sum256(data) {
			t.Errorf("%s: staged sum %x is not that of the file on disk", f.Path, f.Sum)
		}
	}
}

// TestPreparedFile: a file prepared before its stage exists is leak-checked before anything
// touches the disk, is staged and committed like one given to Stage, and is left alone when
// the directory already holds it.
func TestPreparedFile(t *testing.T) {
	dir := t.TempDir()
	w := &Writer{Dir: dir}

	if _, err := w.Prepare(File{Path: "view.yaml", Data: []byte(pemKey), Redacted: true}); err == nil {
		t.Fatal("a PEM key was prepared")
	}

	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("preparing a refused file wrote %v", entries)
	}

	view := File{Path: "view.yaml", Data: []byte("a: 1\n"), Redacted: true}

	write := func() *Result {
		t.Helper()

		p, err := w.Prepare(view)
		if err != nil {
			t.Fatal(err)
		}

		s, err := w.Stage(context.Background(), []File{{Path: "a.yaml", Data: []byte("b: 2\n")}}, nil)
		if err != nil {
			t.Fatal(err)
		}

		defer s.Abort()

		if err := (&Staged{w: &Writer{Dir: dir}}).AddPrepared(p); err == nil {
			t.Fatal("a file prepared by one writer was staged by another")
		}

		if err := s.AddPrepared(p); err != nil {
			t.Fatal(err)
		}

		if got := s.Files()[1]; got.Path != view.Path || got.Sum != sha256.Sum256(view.Data) {
			t.Fatalf("staged %+v, want %s with the sum of its bytes", got, view.Path)
		}

		res, err := s.Commit(File{Path: "lock.txt", Data: []byte("a.yaml\nview.yaml\n")}, nil)
		if err != nil {
			t.Fatal(err)
		}

		return res
	}

	if res := write(); !slices.Contains(res.Written, view.Path) {
		t.Fatalf("first write: %+v, want %s written", res, view.Path)
	}

	if data, _ := os.ReadFile(filepath.Join(dir, view.Path)); string(data) != string(view.Data) {
		t.Fatalf("%s holds %q", view.Path, data)
	}

	if res := write(); !slices.Contains(res.Unchanged, view.Path) {
		t.Fatalf("second write: %+v, want %s unchanged", res, view.Path)
	}
}
