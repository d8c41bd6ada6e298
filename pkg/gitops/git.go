package gitops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrNotARepository means --commit was asked for outside a Git work tree.
var ErrNotARepository = errors.New("not inside a Git repository")

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir

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

// Commit commits everything under dir (added, changed and deleted files) with message, using
// the git CLI and the user's own Git configuration. It commits only dir's paths, whatever
// else is staged. It reports false when there was nothing to commit.
func Commit(ctx context.Context, dir, message string) (bool, error) {
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

	if _, err := git(ctx, top, "add", "--all", "--", abs); err != nil {
		return false, err
	}

	status, err := git(ctx, top, "status", "--porcelain", "--", abs)
	if err != nil {
		return false, err
	}

	if !hasStaged(status) {
		return false, nil
	}

	if _, err := git(ctx, top, "commit", "--quiet", "-m", message, "--", abs); err != nil {
		return false, err
	}

	return true, nil
}

// hasStaged reports whether porcelain status lists a staged change.
func hasStaged(status string) bool {
	for _, line := range strings.Split(status, "\n") {
		if len(line) > 1 && line[0] != ' ' && line[0] != '?' {
			return true
		}
	}

	return false
}
