package profile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// OutsideRootError says that a file the profile names resolves outside every directory
// talforge may read referenced files from: the project root and profile.externalDirs.
type OutsideRootError struct {
	// Path is the path as resolved against the project root; Resolved is where it leads with
	// symlinks followed (equal to Path when no symlink is involved).
	Path, Resolved string
	// Root is the project root; External lists profile.externalDirs as resolved.
	Root     string
	External []string
}

func (e *OutsideRootError) Error() string {
	where := "outside the project root " + e.Root
	if len(e.External) > 0 {
		where += " and externalDirs (" + strings.Join(e.External, ", ") + ")"
	}

	if e.Resolved != e.Path {
		return fmt.Sprintf("%s resolves through a symlink to %s, %s", e.Path, e.Resolved, where)
	}

	return fmt.Sprintf("%s is %s", e.Path, where)
}

func (e *OutsideRootError) Is(target error) bool { return target == ErrOutsideRoot }

// outsideRootHint says how to fix an OutsideRootError.
const outsideRootHint = "keep patches and secret files under the project root, or list their directory in externalDirs"

// ReadFile reads a file the profile names (a patch, proxmox.tokenFile, proxmox.caFile,
// longhorn.backup.credentialsFile) the only way talforge reads them: path resolved against
// the project root, confined to the project root and profile.externalDirs with symlinks
// followed (an *OutsideRootError otherwise), a regular file (ErrNotRegular: a FIFO would block,
// /dev/zero never ends) of at most MaxFileBytes (a *LimitError). The file is opened through
// os.Root, which refuses a path that escapes its directory even if a symlink is swapped in
// after the check.
func (c *Cluster) ReadFile(path string) ([]byte, error) {
	full := c.Resolve(path)

	dir, rel, err := c.confine(full)
	if err != nil {
		return nil, err
	}

	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: full, Err: unwrapPathError(err)}
	}
	defer root.Close()

	fi, err := root.Stat(rel)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: full, Err: unwrapPathError(err)}
	}

	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: full, Err: fmt.Errorf("%w (%s)", ErrNotRegular, fi.Mode().Type())}
	}

	if fi.Size() > MaxFileBytes {
		return nil, tooBig(full)
	}

	f, err := root.Open(rel)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: full, Err: unwrapPathError(err)}
	}
	defer f.Close()

	// Stat said regular, but the file may have been swapped since: the open descriptor decides.
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: full, Err: ErrNotRegular}
	}

	return readBounded(full, f)
}

// unwrapPathError drops os.Root's relative-path wrapper so messages name the full path once.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}

	return err
}

// confine returns the allowed directory full lies in and full relative to it, following
// symlinks: a path inside the project root that is a symlink to /etc/passwd is outside.
func (c *Cluster) confine(full string) (dir, rel string, err error) {
	abs := absPath(full)

	resolved := abs
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		resolved = r
	}

	// A missing file keeps its lexical path; os.Root then refuses any symlink on the way out.
	dirs := c.readableDirs()
	for _, d := range dirs {
		if rel, ok := within(d, resolved); ok {
			return d, rel, nil
		}
	}

	e := &OutsideRootError{Path: abs, Resolved: resolved, Root: dirs[0]}
	for _, d := range c.ExternalDirs {
		e.External = append(e.External, c.absolute(d))
	}

	return "", "", e
}

// readableDirs lists the project root and profile.externalDirs, each as an absolute path and,
// when it differs, with symlinks resolved (a project under a symlinked /tmp still matches).
func (c *Cluster) readableDirs() []string {
	var dirs []string

	for i, d := range append([]string{c.Root()}, c.ExternalDirs...) {
		abs := c.absolute(d)
		if i == 0 {
			abs = absPath(d) // the root itself, not resolved against itself
		}

		dirs = append(dirs, abs)

		if r, err := filepath.EvalSymlinks(abs); err == nil && r != abs {
			dirs = append(dirs, r)
		}
	}

	return dirs
}

// absolute resolves a profile path against the project root and makes it absolute.
func (c *Cluster) absolute(path string) string { return absPath(c.Resolve(path)) }

func absPath(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return filepath.Clean(path)
	}

	return abs
}

// within reports whether path lies in dir, and path relative to dir.
func within(dir, path string) (string, bool) {
	rel, err := filepath.Rel(dir, path)
	if err != nil || !filepath.IsLocal(rel) {
		return "", false
	}

	return rel, true
}
