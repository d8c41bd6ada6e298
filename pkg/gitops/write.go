package gitops

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/talforge/talforge/pkg/atomicfile"
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

// GitIgnore is written to every output directory: decrypted copies never belong in Git.
const GitIgnore = `# Written by talforge. Decrypted material never belongs in Git.
*.dec.yaml
*.decrypted
*.plain
/kubeconfig
/talosconfig
`

// Result says what a write did.
type Result struct {
	Written, Unchanged, Removed []string
}

// Changed reports whether anything on disk changed.
func (r *Result) Changed() bool { return len(r.Written)+len(r.Removed) > 0 }

// Writer writes output files into a directory.
type Writer struct {
	// Dir is the output directory (clusters/<name>).
	Dir string
	// Parallelism bounds concurrent encryption (default GOMAXPROCS).
	Parallelism int
}

// Staged holds files encrypted, leak-checked and written to hidden temporary files, not yet
// renamed into place.
type Staged struct {
	w     *Writer
	files []Staged1
	keep  []string
	batch atomicfile.Batch
	mu    sync.Mutex
}

// Staged1 is one staged file: the bytes that are (or will be) on disk.
type Staged1 struct {
	Path      string
	Data      []byte
	Unchanged bool
}

// Stage prepares files concurrently: a secret file is encrypted unless it already holds the
// same content for the same recipients; every file is checked for leaks before anything of it
// touches the disk; changed files go to hidden temporary files. keep lists files known to be
// current without reading them. On any error nothing stays on disk.
//
// Encryption runs on every core; temporary files are created by one goroutine, because
// parallel creates in one directory contend on its lock in the kernel.
func (w *Writer) Stage(ctx context.Context, files []File, keep []string) (*Staged, error) {
	s := &Staged{w: w, files: make([]Staged1, len(files)), keep: keep}
	errs := make([]error, len(files))

	type pendingWrite struct {
		i    int
		path string
		data []byte
	}

	writes := make(chan pendingWrite, 64)
	writerDone := make(chan struct{})

	go func() {
		defer close(writerDone)

		for p := range writes {
			if err := s.add(p.path, p.data); err != nil {
				errs[p.i] = err
			}
		}
	}()

	err := parallel.ForEach(ctx, len(files), w.Parallelism, func(i int) {
		st, path, err := s.prepare(files[i])
		if err != nil {
			errs[i] = err

			return
		}

		s.files[i] = st
		if !st.Unchanged {
			writes <- pendingWrite{i: i, path: path, data: st.Data}
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

// prepare encodes a file and checks it for leaks; it returns where it belongs on disk.
func (s *Staged) prepare(f File) (Staged1, string, error) {
	path := filepath.Join(s.w.Dir, filepath.FromSlash(f.Path))

	data, unchanged, err := s.encode(path, f)
	if err != nil {
		return Staged1{}, "", err
	}

	if !unchanged {
		if err := CheckLeaks([]File{{Path: f.Path, Data: data, Secret: f.Secret, Redacted: f.Redacted}}); err != nil {
			return Staged1{}, "", err
		}
	}

	return Staged1{Path: f.Path, Data: data, Unchanged: unchanged}, path, nil
}

// encode returns the bytes that belong on disk and whether the file already holds them.
func (s *Staged) encode(path string, f File) ([]byte, bool, error) {
	if !f.Secret {
		old, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, false, err
		}

		return f.Data, err == nil && string(old) == string(f.Data), nil
	}

	rule, err := sopsfile.RuleFor(path)
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

func (s *Staged) add(path string, data []byte) error {
	var b atomicfile.Batch

	if err := b.Add(path, data, 0o644); err != nil {
		return err
	}

	s.mu.Lock()
	s.batch.Merge(&b)
	s.mu.Unlock()

	return nil
}

// Files returns the staged files in the order given to Stage.
func (s *Staged) Files() []Staged1 { return s.files }

// Add stages one more file (after leak-checking it), e.g. a lockfile that records the others.
func (s *Staged) Add(f File) error {
	st, path, err := s.prepare(f)
	if err != nil {
		return err
	}

	if !st.Unchanged {
		if err := s.add(path, st.Data); err != nil {
			return err
		}
	}

	s.files = append(s.files, st)

	return nil
}

// Abort removes every temporary file.
func (s *Staged) Abort() {
	s.mu.Lock()
	defer s.mu.Unlock()

	s.batch.Abort()
}

// Commit makes the staged files durable with one flush and renames them into place, then
// removes *.yaml and *.enc files under the prune directories (relative, e.g. "nodes") that are
// neither staged nor kept: those belong to nodes that left the profile.
func (s *Staged) Commit(prune ...string) (*Result, error) {
	res := &Result{Unchanged: slices.Clone(s.keep)}
	kept := map[string]bool{}

	for _, k := range s.keep {
		kept[k] = true
	}

	for _, f := range s.files {
		kept[f.Path] = true

		if f.Unchanged {
			res.Unchanged = append(res.Unchanged, f.Path)
		} else {
			res.Written = append(res.Written, f.Path)
		}
	}

	s.mu.Lock()
	err := s.batch.Commit()
	s.mu.Unlock()

	if err != nil {
		return &Result{}, fmt.Errorf("writing %s: %w", s.w.Dir, err)
	}

	for _, dir := range prune {
		entries, err := os.ReadDir(filepath.Join(s.w.Dir, dir))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}

		if err != nil {
			return res, err
		}

		for _, e := range entries {
			rel := dir + "/" + e.Name()
			if e.IsDir() || kept[rel] || strings.HasPrefix(e.Name(), ".") || !(strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".enc")) {
				continue
			}

			if err := os.Remove(filepath.Join(s.w.Dir, dir, e.Name())); err != nil {
				return res, err
			}

			res.Removed = append(res.Removed, rel)
		}
	}

	slices.Sort(res.Written)
	slices.Sort(res.Unchanged)
	slices.Sort(res.Removed)

	return res, nil
}
