package gitops

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// files lists every file under dir (slash-separated, relative), directories left out.
func files(t *testing.T, dir string) []string {
	t.Helper()

	var out []string

	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}

		rel, _ := filepath.Rel(dir, p)
		out = append(out, filepath.ToSlash(rel))

		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	slices.Sort(out)

	return out
}

func readString(t *testing.T, path string) string {
	t.Helper()

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	return string(data)
}

// TestPruneKeepsUserFiles: a file in nodes/ that talforge never wrote survives when a node
// leaves the profile; only what the previous lockfile listed goes. Before, every *.yaml and
// *.enc in nodes/ that the run did not write was deleted.
func TestPruneKeepsUserFiles(t *testing.T) {
	dir := t.TempDir()

	stageCommit(t, dir, []File{
		{Path: "nodes/n1.yaml.enc", Data: []byte("enc1")},
		{Path: "nodes/n2.yaml.enc", Data: []byte("enc2")},
	})

	user := []string{"nodes/notes.yaml", "nodes/extra.yaml.enc", "nodes/README.md", "mine.yaml"}
	for _, u := range user {
		mustWrite(t, filepath.Join(dir, u), "mine")
	}

	res := stageCommit(t, dir, []File{{Path: "nodes/n1.yaml.enc", Data: []byte("enc1")}})

	if !slices.Equal(res.Removed, []string{"nodes/n2.yaml.enc"}) {
		t.Errorf("removed %v, want only nodes/n2.yaml.enc", res.Removed)
	}

	want := append([]string{"lock.txt", "nodes/n1.yaml.enc"}, user...)
	slices.Sort(want)

	if got := files(t, dir); !slices.Equal(got, want) {
		t.Errorf("files after prune:\n got %v\nwant %v", got, want)
	}
}

// TestStagingInOnePlace: a run's files are staged in one directory, and nothing of it stays:
// not after a commit, not after a refused or aborted run, not beside the targets.
func TestStagingInOnePlace(t *testing.T) {
	dir := t.TempDir()
	w := &Writer{Dir: dir}

	s, err := w.Stage(context.Background(), []File{
		{Path: "a.yaml", Data: []byte("a: 1\n")},
		{Path: "nodes/n1.yaml.enc", Data: []byte("enc1")},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}

	got := files(t, dir)
	if len(got) != 2 || !strings.HasPrefix(got[0], StagingPrefix) || filepath.Dir(got[0]) != filepath.Dir(filepath.Dir(got[1])) {
		t.Errorf("staged files are not in one staging directory: %v", got)
	}

	s.Abort()

	if got := files(t, dir); len(got) != 0 {
		t.Errorf("an aborted run left %v", got)
	}

	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("an aborted run left %v", entries)
	}

	stageCommit(t, dir, []File{{Path: "a.yaml", Data: []byte("a: 1\n")}})

	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("a committed run left more than a.yaml and lock.txt: %v", entries)
	}
}

// TestRecover: a staging directory whose journal is durable is moved into place — also when
// the run died halfway through the moves — and any other staging directory is removed.
// Nothing that is not a staging directory is touched.
func TestRecover(t *testing.T) {
	ctx := context.Background()

	// The previous generation, and a user's files.
	setup := func(t *testing.T) string {
		dir := t.TempDir()
		stageCommit(t, dir, []File{
			{Path: "a.yaml", Data: []byte("old a\n")},
			{Path: "nodes/n1.yaml.enc", Data: []byte("old n1")},
			{Path: "nodes/n2.yaml.enc", Data: []byte("old n2")},
		})
		mustWrite(t, filepath.Join(dir, "nodes", "mine.yaml"), "mine")
		// Named like a staging directory, but a file and a symlink: not ours.
		mustWrite(t, filepath.Join(dir, StagingPrefix+"file"), "mine")
		os.Symlink(filepath.Join(dir, "nodes"), filepath.Join(dir, StagingPrefix+"link"))

		return dir
	}

	// stage writes a staging directory as a run that died at some point leaves it: the new
	// generation (n2 left, n3 came), with or without its journal, some files already moved.
	stage := func(t *testing.T, dir, name string, withJournal bool, moved ...string) {
		t.Helper()

		next := map[string]string{"a.yaml": "new a\n", "nodes/n3.yaml.enc": "new n3", "lock.txt": "a.yaml\nnodes/n1.yaml.enc\nnodes/n3.yaml.enc\n"}
		for p, data := range next {
			target := filepath.Join(dir, name, p)
			if slices.Contains(moved, p) {
				target = filepath.Join(dir, p)
			}

			mustWrite(t, target, data)
		}

		if withJournal {
			root, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()

			j := journal{Version: journalVersion, Files: []string{"a.yaml", "nodes/n3.yaml.enc"}, Remove: []string{"nodes/n2.yaml.enc", "../outside", "/etc/passwd"}, Last: "lock.txt"}
			if err := j.write(root, name); err != nil {
				t.Fatal(err)
			}
		}
	}

	newGen := []string{"a.yaml", "lock.txt", "nodes/mine.yaml", "nodes/n1.yaml.enc", "nodes/n3.yaml.enc", StagingPrefix + "file", StagingPrefix + "link"}
	oldGen := []string{"a.yaml", "lock.txt", "nodes/mine.yaml", "nodes/n1.yaml.enc", "nodes/n2.yaml.enc", StagingPrefix + "file", StagingPrefix + "link"}
	slices.Sort(newGen)
	slices.Sort(oldGen)

	for _, tc := range []struct {
		name            string
		journal         bool
		moved           []string
		want            []string
		wantA           string
		done, dropped   int
		truncateJournal bool
	}{
		{name: "died before the journal", want: oldGen, wantA: "old a\n", dropped: 1},
		{name: "journal cut short", journal: true, truncateJournal: true, want: oldGen, wantA: "old a\n", dropped: 1},
		{name: "died after the journal", journal: true, want: newGen, wantA: "new a\n", done: 1},
		{name: "died amid the moves", journal: true, moved: []string{"a.yaml"}, want: newGen, wantA: "new a\n", done: 1},
		{name: "died before removing the staging directory", journal: true, moved: []string{"a.yaml", "nodes/n3.yaml.enc", "lock.txt"}, want: newGen, wantA: "new a\n", done: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := setup(t)
			outside := filepath.Join(filepath.Dir(dir), "outside")
			mustWrite(t, outside, "outside")

			name := StagingPrefix + "123"
			stage(t, dir, name, tc.journal, tc.moved...)

			if tc.truncateJournal {
				j := filepath.Join(dir, name, journalName)
				data, _ := os.ReadFile(j)
				os.WriteFile(j, data[:len(data)-5], 0o644)
			}

			rec, err := (&Writer{Dir: dir}).Recover(ctx)
			if err != nil {
				t.Fatal(err)
			}

			if rec.Completed != tc.done || rec.Discarded != tc.dropped {
				t.Errorf("recovered %+v, want %d completed, %d discarded", rec, tc.done, tc.dropped)
			}

			if got := files(t, dir); !slices.Equal(got, tc.want) {
				t.Errorf("files:\n got %v\nwant %v", got, tc.want)
			}

			if got := readString(t, filepath.Join(dir, "a.yaml")); got != tc.wantA {
				t.Errorf("a.yaml = %q, want %q", got, tc.wantA)
			}

			if _, err := os.Stat(outside); err != nil {
				t.Errorf("a journal removed a file outside the output directory: %v", err)
			}

			// Recovering twice changes nothing.
			if rec, err := (&Writer{Dir: dir}).Recover(ctx); err != nil || rec.Completed+rec.Discarded != 0 {
				t.Errorf("second recover: %+v %v", rec, err)
			}
		})
	}
}

// TestHostilePaths: paths that leave the output directory are refused when writing and
// ignored when removing, whatever a lockfile read from Git says.
func TestHostilePaths(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(filepath.Dir(dir), "victim")
	mustWrite(t, outside, "victim")

	for _, p := range []string{"../victim", "/etc/x", "nodes/../../victim", StagingPrefix + "x/a", ""} {
		if _, err := (&Writer{Dir: dir}).Stage(context.Background(), []File{{Path: p, Data: []byte("x")}}, nil); err == nil {
			t.Errorf("staged %q", p)
		}
	}

	// A symlink in the output directory does not take a removal outside it either.
	if err := os.Symlink(filepath.Dir(dir), filepath.Join(dir, "up")); err != nil {
		t.Fatal(err)
	}

	s, err := (&Writer{Dir: dir}).Stage(context.Background(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := s.Commit(File{Path: "lock.txt", Data: []byte("x")}, []string{"../victim", "up/victim"}); err == nil {
		t.Log("commit with hostile removals succeeded (they were skipped)")
	}

	if _, err := os.Stat(outside); err != nil {
		t.Errorf("a removal left the output directory: %v", err)
	}
}
