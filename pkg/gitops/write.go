package gitops

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/talforge/talforge/pkg/atomicfile"
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
}

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
	// Rule overrides the .sops.yaml lookup for secret files (nil: look up per file).
	Rule *sopsfile.Rule
	// Parallelism bounds concurrent encryption (default GOMAXPROCS).
	Parallelism int
}

// Prepare encrypts the secret files that changed and leaves the others as they are, then checks
// everything for leaks. Nothing is written. The returned files hold the bytes to write; files
// whose content is already on disk are marked unchanged.
func (w *Writer) Prepare(ctx context.Context, files []File) ([]Prepared, error) {
	out := make([]Prepared, len(files))
	errs := make([]error, len(files))

	sem := make(chan struct{}, max(1, cmpOr(w.Parallelism, runtime.GOMAXPROCS(0))))

	var wg sync.WaitGroup

	for i, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}

		sem <- struct{}{}

		wg.Go(func() {
			defer func() { <-sem }()

			out[i], errs[i] = w.prepare(f)
		})
	}

	wg.Wait()

	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	check := make([]File, 0, len(out))
	for _, p := range out {
		check = append(check, File{Path: p.Path, Data: p.Data, Secret: p.Secret})
	}

	if err := CheckLeaks(check); err != nil {
		return nil, err
	}

	return out, nil
}

// Prepared is a file ready to write.
type Prepared struct {
	File
	// Unchanged files are already on disk with this content (for secret files: the same
	// decrypted content and recipients).
	Unchanged bool
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}

	return b
}

func (w *Writer) prepare(f File) (Prepared, error) {
	path := filepath.Join(w.Dir, filepath.FromSlash(f.Path))

	if !f.Secret {
		old, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return Prepared{}, err
		}

		return Prepared{File: f, Unchanged: err == nil && string(old) == string(f.Data)}, nil
	}

	rule := w.Rule
	if rule == nil {
		var err error

		if rule, err = sopsfile.RuleFor(path); err != nil {
			return Prepared{}, err
		}
	}

	same, err := rule.UpToDate(path, f.Data)
	if err != nil {
		return Prepared{}, err
	}

	if same {
		old, err := os.ReadFile(path)
		if err != nil {
			return Prepared{}, err
		}

		return Prepared{File: File{Path: f.Path, Data: old, Secret: true}, Unchanged: true}, nil
	}

	enc, err := rule.Encrypt(path, f.Data)
	if err != nil {
		return Prepared{}, err
	}

	return Prepared{File: File{Path: f.Path, Data: enc, Secret: true}}, nil
}

// Write writes prepared files atomically, skipping unchanged ones, then removes files under
// the prune directories (relative, e.g. "nodes") that are not among them: those belong to
// nodes that left the profile.
func (w *Writer) Write(files []Prepared, prune ...string) (*Result, error) {
	res := &Result{}
	keep := map[string]bool{}

	for _, f := range files {
		keep[f.Path] = true

		if f.Unchanged {
			res.Unchanged = append(res.Unchanged, f.Path)

			continue
		}

		if err := atomicfile.Write(filepath.Join(w.Dir, filepath.FromSlash(f.Path)), f.Data, 0o644); err != nil {
			return res, fmt.Errorf("writing %s: %w", f.Path, err)
		}

		res.Written = append(res.Written, f.Path)
	}

	for _, dir := range prune {
		entries, err := os.ReadDir(filepath.Join(w.Dir, dir))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}

		if err != nil {
			return res, err
		}

		for _, e := range entries {
			rel := dir + "/" + e.Name()
			if e.IsDir() || keep[rel] || !strings.HasSuffix(e.Name(), ".yaml") {
				continue
			}

			if err := os.Remove(filepath.Join(w.Dir, dir, e.Name())); err != nil {
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
