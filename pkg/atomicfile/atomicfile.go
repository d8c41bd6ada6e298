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

	defer os.Remove(tmp.Name()) //nolint:errcheck // gone after a successful rename

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
