package gitops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrNotARepository means --commit was asked for outside a Git work tree.
var ErrNotARepository = errors.New("not inside a Git repository")

func git(ctx context.Context, dir string, args ...string) (string, error) {
	return runGit(ctx, dir, nil, args...)
}

// runGit runs git in dir with stdin (nil for none) and returns its standard output; an error
// carries git's own message.
func runGit(ctx context.Context, dir string, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	// Paths are file names, never globs: a directory named with * or [ means itself.
	cmd.Env = append(os.Environ(), "GIT_LITERAL_PATHSPECS=1")
	cmd.Stdin = stdin

	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr

	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}

		return "", fmt.Errorf("git %s: %s", strings.Join(args, " "), msg)
	}

	return stdout.String(), nil
}

// CheckRepository fails unless dir (or, if it does not exist yet, its nearest existing parent)
// is inside a Git work tree, so that --commit can refuse before anything is written.
func CheckRepository(ctx context.Context, dir string) error {
	if _, err := exec.LookPath("git"); err != nil {
		return fmt.Errorf("--commit needs the git CLI: %w", err)
	}

	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}

	for d := abs; ; d = filepath.Dir(d) {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			if _, err := git(ctx, d, "rev-parse", "--show-toplevel"); err != nil {
				return fmt.Errorf("%w: %s (run `git init` there, or drop --commit)", ErrNotARepository, d)
			}

			return nil
		}

		if filepath.Dir(d) == d {
			return fmt.Errorf("%w: %s", ErrNotARepository, abs)
		}
	}
}

// Commit commits the given files of dir (relative, slash-separated: written, changed or
// removed) with message, using the git CLI and the user's own Git configuration. Nothing else
// goes into the commit: not other files under dir (a user's notes, a crashed run's leftovers),
// not what else is staged in the repository. It reports false when there was nothing to
// commit.
func Commit(ctx context.Context, dir, message string, files []string) (bool, error) {
	if _, err := exec.LookPath("git"); err != nil {
		return false, fmt.Errorf("--commit needs the git CLI: %w", err)
	}

	abs, err := filepath.Abs(dir)
	if err != nil {
		return false, err
	}

	top, err := git(ctx, abs, "rev-parse", "--show-toplevel")
	if err != nil {
		return false, fmt.Errorf("%w: %s (run `git init` there, or drop --commit)", ErrNotARepository, abs)
	}

	top = strings.TrimSpace(top)

	// Paths relative to the top of the work tree, as git prints them. The top git prints has
	// symlinks resolved, so dir is resolved too.
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return false, err
	}

	var present, gone []string

	want := map[string]bool{}

	for _, f := range files {
		if checkPath(f) != nil {
			return false, fmt.Errorf("commit: output path %q is outside %s", f, dir)
		}

		rel, err := filepath.Rel(top, filepath.Join(real, filepath.FromSlash(f)))
		if err != nil || !filepath.IsLocal(rel) {
			return false, fmt.Errorf("commit: %s is outside the work tree %s", f, top)
		}

		rel = filepath.ToSlash(rel)
		want[rel] = true

		if _, err := os.Lstat(filepath.Join(abs, filepath.FromSlash(f))); err == nil {
			present = append(present, rel)
		} else {
			gone = append(gone, rel)
		}
	}

	if len(present) > 0 {
		if _, err := gitPaths(ctx, top, present, "add"); err != nil {
			return false, err
		}
	}

	if len(gone) > 0 {
		// --ignore-unmatch: a file removed before it was ever committed is no change.
		if _, err := gitPaths(ctx, top, gone, "rm", "--cached", "--quiet", "--ignore-unmatch"); err != nil {
			return false, err
		}
	}

	status, err := git(ctx, top, "status", "--porcelain=v1", "-z", "--no-renames", "--untracked-files=no", "--", real)
	if err != nil {
		return false, err
	}

	var commit []string

	for _, entry := range strings.Split(status, "\x00") {
		// "XY path": X is the index's side; a listed path with a staged change goes in.
		if len(entry) > 3 && entry[0] != ' ' && entry[0] != '?' && want[entry[3:]] {
			commit = append(commit, entry[3:])
		}
	}

	if len(commit) == 0 {
		return false, nil
	}

	// With paths, git commit takes only those (--only), whatever else is staged.
	if _, err := gitPaths(ctx, top, commit, "commit", "--quiet", "-m", message); err != nil {
		return false, err
	}

	return true, nil
}

// gitPaths runs git with paths passed on standard input (a generate of hundreds of nodes would
// not fit a command line), each taken literally, not as a glob.
func gitPaths(ctx context.Context, dir string, paths []string, args ...string) (string, error) {
	stdin := strings.NewReader(strings.Join(paths, "\x00") + "\x00")
	return runGit(ctx, dir, stdin, append(args, "--pathspec-from-file=-", "--pathspec-file-nul")...)
}

// ReadCommitted returns the content file (relative to dir, slash-separated) has in the
// commit HEAD points to, or nil when there is no such commit or file: what the last commit
// recorded, e.g. its lockfile, whose files a commit must also delete when they are gone.
func ReadCommitted(ctx context.Context, dir, file string) ([]byte, error) {
	if checkPath(file) != nil {
		return nil, fmt.Errorf("read committed: %q is not a path inside %s", file, dir)
	}

	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}

	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, err
	}

	top, err := git(ctx, real, "rev-parse", "--show-toplevel")
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrNotARepository, abs)
	}

	rel, err := filepath.Rel(strings.TrimSpace(top), filepath.Join(real, filepath.FromSlash(file)))
	if err != nil || !filepath.IsLocal(rel) {
		return nil, fmt.Errorf("read committed: %s is outside the work tree", file)
	}

	// No commit yet, or no such file in it: nothing was recorded.
	if _, err := git(ctx, real, "cat-file", "-e", "HEAD:"+filepath.ToSlash(rel)); err != nil {
		return nil, nil
	}

	out, err := git(ctx, real, "cat-file", "blob", "HEAD:"+filepath.ToSlash(rel))
	if err != nil {
		return nil, err
	}

	return []byte(out), nil
}
