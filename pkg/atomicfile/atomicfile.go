// Package atomicfile writes files so that a reader (or a crash) never sees half of one: the
// content goes to a temporary file in the same directory, is synced, and is renamed over the
// target.
package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Write writes data to path atomically with the given permissions, creating parent
// directories (0755) as needed.
func Write(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}

	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}

	defer os.Remove(tmp.Name()) // gone after a successful rename

	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()

		return err
	}

	if _, err := tmp.Write(data); err != nil {
		tmp.Close()

		return fmt.Errorf("writing %s: %w", path, err)
	}

	if err := tmp.Sync(); err != nil {
		tmp.Close()

		return fmt.Errorf("writing %s: %w", path, err)
	}

	if err := tmp.Close(); err != nil {
		return err
	}

	return os.Rename(tmp.Name(), path)
}

// WriteIfChanged writes data to path atomically unless the file already holds exactly data
// with the same permissions, so unchanged output keeps its mtime. It reports whether it wrote.
func WriteIfChanged(path string, data []byte, perm fs.FileMode) (bool, error) {
	old, err := os.ReadFile(path)

	switch {
	case err == nil && bytes.Equal(old, data):
		if st, err := os.Stat(path); err == nil && st.Mode().Perm() == perm {
			return false, nil
		}
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return false, err
	}

	return true, Write(path, data, perm)
}

// Batch writes many files atomically with a single flush: every file goes to a temporary file
// first, one syncfs(2) makes them all durable, then each is renamed into place. A crash leaves
// every target either old or new, at the cost of one flush instead of one per file.
type Batch struct {
	pending []pending
}

type pending struct{ tmp, path string }

// Add writes data to a temporary file beside path; the rename happens in Commit.
func (b *Batch) Add(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}

	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}

	err = tmp.Chmod(perm)
	if err == nil {
		_, err = tmp.Write(data)
	}

	if cerr := tmp.Close(); err == nil {
		err = cerr
	}

	if err != nil {
		os.Remove(tmp.Name())

		return fmt.Errorf("writing %s: %w", path, err)
	}

	b.pending = append(b.pending, pending{tmp: tmp.Name(), path: path})

	return nil
}

// Merge moves other's pending files into b.
func (b *Batch) Merge(other *Batch) {
	b.pending = append(b.pending, other.pending...)
	other.pending = nil
}

// Commit flushes the filesystem holding the files once and renames them into place.
func (b *Batch) Commit() error {
	defer b.Abort()

	if len(b.pending) == 0 {
		return nil
	}

	if err := syncFS(filepath.Dir(b.pending[0].tmp)); err != nil {
		return err
	}

	for i, p := range b.pending {
		if err := os.Rename(p.tmp, p.path); err != nil {
			b.pending = b.pending[i:]

			return err
		}
	}

	b.pending = nil

	return nil
}

// Abort removes temporary files not yet renamed.
func (b *Batch) Abort() {
	for _, p := range b.pending {
		os.Remove(p.tmp)
	}

	b.pending = nil
}
