package gitops

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/talforge/talforge/pkg/parallel"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// File is one output file.
type File struct {
	// Path is relative to the output directory, slash-separated.
	Path string
	// Data is the plaintext content.
	Data []byte
	// Secret files are SOPS-encrypted with the creation rule that covers them.
	Secret bool
	// Redacted files are plaintext views of secret files: every secret field must hold
	// RedactedMarker.
	Redacted bool
	// Changed says the caller knows the content differs from the file on disk, so a secret file
	// is encrypted without first decrypting the old one to compare.
	Changed bool
}

// RedactedMarker replaces secrets in redacted views.
const RedactedMarker = "******"

// GitIgnore is written to every output directory: decrypted copies never belong in Git, and
// neither do a run's lock and staging area or the temporary files of older talforge versions.
const GitIgnore = `# Written by talforge. Decrypted material never belongs in Git.
*.dec.yaml
*.decrypted
*.plain
/kubeconfig
/talosconfig
# A run's lock and staging area.
/.talforge-run.lock
/.talforge-staging-*/
.*.tmp-*
.secrets-*.tmp
`

// Result says what a write did.
type Result struct {
	Written   []string `json:"written"`
	Unchanged []string `json:"unchanged"`
	Removed   []string `json:"removed"`
}

// Changed reports whether anything on disk changed.
func (r *Result) Changed() bool { return len(r.Written)+len(r.Removed) > 0 }

// Writer writes output files into a directory. See the package documentation for how a run's
// files reach the directory; callers hold the directory's run lock (pkg/runlock) from Recover
// to Commit.
type Writer struct {
	// Dir is the output directory (clusters/<name>).
	Dir string
	// Parallelism bounds concurrent encryption (default GOMAXPROCS).
	Parallelism int
	// SOPS holds the creation rules secret files are encrypted with: the project's, chosen by
	// the caller, never a .sops.yaml found above Dir. Required when a file is Secret.
	SOPS *sopsfile.Config
}

// Staged holds files encrypted, leak-checked and written to the run's staging directory, not
// yet moved into place.
type Staged struct {
	w     *Writer
	root  *os.Root
	files []Staged1
	keep  []string

	mu sync.Mutex
	// stage is the staging directory (relative to Dir), made on the first changed file.
	stage string
	// moves are the staged files (relative to Dir) in the order they were staged.
	moves []string
	// dirs are the staging directory's subdirectories made so far.
	dirs madeDirs
	// committing is set once the journal is durable: from then on the staged files belong to
	// the output, and an interrupted commit is completed by the next Recover, never discarded.
	committing bool
}

// Staged1 is one staged file: the SHA-256 of the bytes that are (or will be) on disk. The bytes
// themselves are not kept once written: at thousands of nodes the encrypted files would be
// most of a run's live memory.
type Staged1 struct {
	Path      string
	Sum       [sha256.Size]byte
	Unchanged bool
}

// Stage prepares files concurrently: a secret file is encrypted unless it already holds the
// same content for the same recipients; every file is checked for leaks before anything of it
// touches the disk; changed files go to the run's staging directory. keep lists files known to
// be current without reading them. On any error nothing stays on disk.
//
// Encryption runs on every core; staged files are created by one goroutine, because parallel
// creates in one directory contend on its lock in the kernel.
func (w *Writer) Stage(ctx context.Context, files []File, keep []string) (*Staged, error) {
	if err := os.MkdirAll(w.Dir, 0o755); err != nil {
		return nil, err
	}

	root, err := os.OpenRoot(w.Dir)
	if err != nil {
		return nil, err
	}

	s := &Staged{w: w, root: root, files: make([]Staged1, len(files)), keep: keep}
	errs := make([]error, len(files))

	type pendingWrite struct {
		i    int
		rel  string
		data []byte
	}

	writes := make(chan pendingWrite, 64)
	writerDone := make(chan struct{})

	go func() {
		defer close(writerDone)

		for p := range writes {
			if err := s.add(p.rel, p.data); err != nil {
				errs[p.i] = err
			}
		}
	}()

	err = parallel.ForEach(ctx, len(files), w.Parallelism, func(i int) {
		st, data, err := w.prepare(files[i])
		if err != nil {
			errs[i] = err

			return
		}

		s.files[i] = st
		if !st.Unchanged {
			writes <- pendingWrite{i: i, rel: st.Path, data: data}
		}
	})

	close(writes)
	<-writerDone

	if err == nil {
		err = joinLeaks(errs)
	}

	if err != nil {
		s.Abort()

		return nil, err
	}

	return s, nil
}

// joinLeaks merges every file's leaks into one LeakError, other errors as they are.
func joinLeaks(errs []error) error {
	var (
		leaks LeakError
		other []error
	)

	for _, err := range errs {
		var le LeakError
		if errors.As(err, &le) {
			leaks = append(leaks, le...)
		} else if err != nil {
			other = append(other, err)
		}
	}

	if len(leaks) > 0 {
		other = append(other, leaks)
	}

	return errors.Join(other...)
}

// prepare encodes a file and checks it for leaks; it returns the bytes that belong on disk.
func (w *Writer) prepare(f File) (Staged1, []byte, error) {
	if err := checkPath(f.Path); err != nil {
		return Staged1{}, nil, err
	}

	data, unchanged, err := w.encode(filepath.Join(w.Dir, filepath.FromSlash(f.Path)), f)
	if err != nil {
		return Staged1{}, nil, err
	}

	if !unchanged {
		if err := CheckLeaks([]File{{Path: f.Path, Data: data, Secret: f.Secret, Redacted: f.Redacted}}); err != nil {
			return Staged1{}, nil, err
		}
	}

	return Staged1{Path: f.Path, Sum: sha256.Sum256(data), Unchanged: unchanged}, data, nil
}

// encode returns the bytes that belong on disk and whether the file already holds them.
func (w *Writer) encode(path string, f File) ([]byte, bool, error) {
	if !f.Secret {
		old, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, false, err
		}

		return f.Data, err == nil && string(old) == string(f.Data), nil
	}

	if w.SOPS == nil {
		return nil, false, fmt.Errorf("%s: no SOPS configuration to encrypt it with", f.Path)
	}

	rule, err := w.SOPS.RuleFor(path)
	if err != nil {
		return nil, false, err
	}

	if !f.Changed {
		same, err := rule.UpToDate(path, f.Data)
		if err != nil {
			return nil, false, err
		}

		if same {
			old, err := os.ReadFile(path)

			return old, true, err
		}
	}

	enc, err := rule.Encrypt(path, f.Data)

	return enc, false, err
}

// add writes one changed file into the staging directory, making the directory first.
func (s *Staged) add(rel string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.stage == "" {
		dir, err := os.MkdirTemp(s.w.Dir, StagingPrefix+"*")
		if err != nil {
			return fmt.Errorf("staging %s: %w", s.w.Dir, err)
		}

		s.stage = filepath.Base(dir)
	}

	if err := writeNew(s.root, &s.dirs, filepath.Join(s.stage, filepath.FromSlash(rel)), data); err != nil {
		return fmt.Errorf("staging %s: %w", rel, err)
	}

	s.moves = append(s.moves, rel)

	return nil
}

// Files returns the staged files in the order given to Stage.
func (s *Staged) Files() []Staged1 { return s.files }

// Add stages one more file (after leak-checking it).
func (s *Staged) Add(f File) error {
	p, err := s.w.Prepare(f)
	if err != nil {
		return err
	}

	return s.AddPrepared(p)
}

// Prepared is a file that Writer.Prepare encoded and leak-checked, ready to stage.
type Prepared struct {
	w    *Writer
	st   Staged1
	data []byte
}

// Prepare encodes f and checks it for leaks as Stage does, without staging it: a large file's
// costly part runs before the stage exists, for Staged.AddPrepared to stage it.
func (w *Writer) Prepare(f File) (*Prepared, error) {
	st, data, err := w.prepare(f)
	if err != nil {
		return nil, err
	}

	return &Prepared{w: w, st: st, data: data}, nil
}

// AddPrepared stages a file that Prepare of the same Writer made.
func (s *Staged) AddPrepared(p *Prepared) error {
	if p.w != s.w {
		return fmt.Errorf("%s: prepared for another writer", p.st.Path)
	}

	st, data := p.st, p.data

	if !st.Unchanged {
		if err := s.add(st.Path, data); err != nil {
			return err
		}
	}

	s.files = append(s.files, st)

	return nil
}

// Abort removes the staging directory, unless Commit got as far as making its journal durable:
// then the files belong to the output and the next Recover moves the rest into place.
func (s *Staged) Abort() {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.stage != "" && !s.committing {
		s.root.RemoveAll(s.stage) // a leftover is removed by the next Recover
		s.stage = ""
	}

	if s.root != nil {
		s.root.Close()
		s.root = nil
	}
}

// Commit stages point, the file that records all others (the lockfile), and moves the run's
// files into place as one step that a crash cannot tear: it writes a journal naming the staged
// files, the files to remove and point; one flush makes everything staged durable; then every
// file but point is renamed into place, the files of remove (relative paths, e.g. those the
// previous lockfile lists and this run no longer writes) are deleted, a second flush makes
// that durable, and point is renamed last. A run killed before the first flush leaves the
// previous output untouched; one killed after it is completed by the next Recover.
//
// remove must only name files talforge wrote: never a directory listing.
func (s *Staged) Commit(point File, remove []string) (*Result, error) {
	if err := s.Add(point); err != nil {
		return nil, err
	}

	res := &Result{Unchanged: slices.Clone(s.keep)}
	written := map[string]bool{}

	for _, k := range s.keep {
		written[k] = true
	}

	for _, f := range s.files {
		written[f.Path] = true

		if f.Unchanged {
			res.Unchanged = append(res.Unchanged, f.Path)
		} else {
			res.Written = append(res.Written, f.Path)
		}
	}

	j := journal{Version: journalVersion}

	for _, rel := range remove {
		if written[rel] || checkPath(rel) != nil {
			continue
		}

		if _, err := s.root.Lstat(filepath.FromSlash(rel)); err == nil {
			j.Remove = append(j.Remove, rel)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	for _, m := range s.moves {
		if m == point.Path {
			j.Last = m
		} else {
			j.Files = append(j.Files, m)
		}
	}

	if s.stage == "" && len(j.Remove) == 0 {
		return sorted(res), nil
	}

	if s.stage == "" {
		dir, err := os.MkdirTemp(s.w.Dir, StagingPrefix+"*")
		if err != nil {
			return nil, fmt.Errorf("staging %s: %w", s.w.Dir, err)
		}

		s.stage = filepath.Base(dir)
	}

	if err := j.write(s.root, s.stage); err != nil {
		return nil, fmt.Errorf("writing %s: %w", s.w.Dir, err)
	}

	s.committing = true

	if err := j.apply(s.root, s.stage); err != nil {
		return nil, fmt.Errorf("writing %s (the next run completes it): %w", s.w.Dir, err)
	}

	s.stage = ""
	res.Removed = j.Remove

	return sorted(res), nil
}

func sorted(r *Result) *Result {
	slices.Sort(r.Written)
	slices.Sort(r.Unchanged)
	slices.Sort(r.Removed)

	return r
}
