package gitops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// StagingPrefix starts the name of a run's staging directory inside the output directory.
// Recover removes (or completes) such directories and nothing else.
const StagingPrefix = ".talforge-staging-"

// journalName is the journal inside a staging directory: once it is durable, the staged files
// are the output's next generation.
const journalName = ".talforge-commit.json"

const journalVersion = 1

// journal says how to move a staging directory's files into place.
type journal struct {
	Version int `json:"version"`
	// Files are moved first, in order (relative to the output directory, slash-separated).
	Files []string `json:"files"`
	// Remove are deleted next.
	Remove []string `json:"remove"`
	// Last, the lockfile, is moved last: the output is whole once it is in place.
	Last string `json:"last"`
	// Complete is the last field, so a journal cut short does not parse as a whole one.
	Complete bool `json:"complete"`
}

// write writes the journal into stage and flushes the filesystem once: that makes the staged
// files and the journal durable together, before any file in place is touched.
func (j *journal) write(root *os.Root, stage string) error {
	j.Complete = true

	data, err := json.Marshal(j)
	if err != nil {
		return err
	}

	if err := writeNew(root, new(madeDirs), filepath.Join(stage, journalName), data); err != nil {
		return err
	}

	return syncFS(filepath.Join(root.Name(), stage))
}

// readJournal returns stage's journal, or nil when there is none or it is incomplete: the run
// that staged it died before its files were durable, and nothing in place was touched.
func readJournal(root *os.Root, stage string) *journal {
	data, err := root.ReadFile(filepath.Join(stage, journalName))
	if err != nil {
		return nil
	}

	var j journal
	if json.Unmarshal(data, &j) != nil || !j.Complete || j.Version != journalVersion {
		return nil
	}

	return &j
}

// apply moves stage's files into place, deletes j.Remove, then moves j.Last and removes stage.
// It is idempotent: a file no longer in stage was moved before, a file to remove that is gone
// was removed before, so a second apply after a crash completes the first.
func (j *journal) apply(root *os.Root, stage string) error {
	var dirs madeDirs

	for _, rel := range j.Files {
		if err := moveIn(root, &dirs, stage, rel); err != nil {
			return err
		}
	}

	for _, rel := range j.Remove {
		if checkPath(rel) != nil {
			continue
		}

		if err := root.Remove(filepath.FromSlash(rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", rel, err)
		}
	}

	// Everything before the lockfile must be on disk before it: a lockfile that is durable
	// while a file it lists is not would vouch for content that is not there.
	if err := syncFS(root.Name()); err != nil {
		return err
	}

	if j.Last != "" {
		if err := moveIn(root, &dirs, stage, j.Last); err != nil {
			return err
		}

		if err := syncDir(filepath.Join(root.Name(), filepath.Dir(filepath.FromSlash(j.Last)))); err != nil {
			return err
		}
	}

	return root.RemoveAll(stage)
}

// moveIn renames stage/rel over rel, unless it was moved already. A source that is not there
// was moved by the interrupted run a Recover completes: that is found by the rename, not by a
// look before it, which would walk both paths once more for every file.
func moveIn(root *os.Root, dirs *madeDirs, stage, rel string) error {
	if err := checkPath(rel); err != nil {
		return err
	}

	to := filepath.FromSlash(rel)
	if err := dirs.ensure(root, filepath.Dir(to)); err != nil {
		return err
	}

	if err := root.Rename(filepath.Join(stage, to), to); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("moving %s into place: %w", rel, err)
	}

	return nil
}

// madeDirs remembers the directories made (or found) under a root during one write, so that a
// thousand files in one directory make it once, not once each.
type madeDirs map[string]bool

func (d *madeDirs) ensure(root *os.Root, dir string) error {
	if dir == "." || (*d)[dir] {
		return nil
	}

	if err := root.MkdirAll(dir, 0o755); err != nil {
		return err
	}

	if *d == nil {
		*d = madeDirs{}
	}

	(*d)[dir] = true

	return nil
}

// Recovered says what Recover found.
type Recovered struct {
	// Completed counts interrupted commits Recover finished.
	Completed int
	// Discarded counts staging directories of runs that died before committing.
	Discarded int
}

// Recover deals with what interrupted runs left in the output directory: a staging directory
// with a durable journal is moved into place (the run had committed), any other staging
// directory is removed (the run died before touching anything in place). It touches nothing
// but staging directories and what their journals name. Callers must hold the directory's run
// lock: another live run's staging directory looks just like a dead one's.
func (w *Writer) Recover(ctx context.Context) (*Recovered, error) {
	entries, err := os.ReadDir(w.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return &Recovered{}, nil
	}

	if err != nil {
		return nil, err
	}

	root, err := os.OpenRoot(w.Dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()

	rec := &Recovered{}

	for _, e := range entries {
		// A symlink named like a staging directory is not one of ours: leave it.
		if !e.IsDir() || !strings.HasPrefix(e.Name(), StagingPrefix) {
			continue
		}

		if err := ctx.Err(); err != nil {
			return rec, err
		}

		if j := readJournal(root, e.Name()); j != nil {
			if err := j.apply(root, e.Name()); err != nil {
				return rec, fmt.Errorf("completing the interrupted write of %s: %w", w.Dir, err)
			}

			rec.Completed++

			continue
		}

		if err := root.RemoveAll(e.Name()); err != nil {
			return rec, fmt.Errorf("removing %s: %w", filepath.Join(w.Dir, e.Name()), err)
		}

		rec.Discarded++
	}

	return rec, nil
}

// checkPath refuses output paths that leave the output directory or fall into a staging
// directory, whoever wrote them (a lockfile is an input read from Git).
func checkPath(rel string) error {
	if rel == "" || !filepath.IsLocal(filepath.FromSlash(rel)) || path.Clean(rel) != rel {
		return fmt.Errorf("output path %q is not a clean path inside the output directory", rel)
	}

	if strings.HasPrefix(rel, StagingPrefix) {
		return fmt.Errorf("output path %q is inside a staging directory", rel)
	}

	return nil
}

// writeNew creates name under root (its directory made through dirs) holding data, mode 0644
// whatever the umask, as before.
func writeNew(root *os.Root, dirs *madeDirs, name string, data []byte) error {
	if err := dirs.ensure(root, filepath.Dir(name)); err != nil {
		return err
	}

	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}

	err = f.Chmod(0o644)
	if err == nil {
		_, err = f.Write(data)
	}

	if cerr := f.Close(); err == nil {
		err = cerr
	}

	return err
}

// syncDir makes a directory's entries (a rename into it) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()

	if err := d.Sync(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}

	return nil
}
