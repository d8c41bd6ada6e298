package runlock

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// FileName is the lock file inside the locked directory.
const FileName = ".talforge-run.lock"

// HeldError says another run holds the lock.
type HeldError struct {
	// Dir is the locked directory as the caller named it (relative to the working directory
	// when it lies below it).
	Dir string
	// PID and Since are what the holder recorded (0 and zero time when it had not yet).
	PID   int
	Since time.Time
}

func (e *HeldError) Error() string {
	who := "pid unknown"
	if e.PID > 0 {
		who = "pid " + strconv.Itoa(e.PID)
		if !e.Since.IsZero() {
			who += ", since " + e.Since.Local().Format(time.RFC3339)
		}
	}

	return fmt.Sprintf("another talforge run holds the lock on %s (%s); wait for it to finish, or stop it", e.Dir, who)
}

// Lock is a held run lock.
type Lock struct {
	f    *os.File
	path string
	// madeDirs are the directories Acquire created for the lock file, deepest first, removed
	// on release when still empty: locking a cluster that has no output yet, or a run that
	// fails before writing, leaves nothing behind.
	madeDirs []string
}

type ctxKey struct{}

// Acquire takes the run lock of dir, creating dir when needed, and fails at once with a
// *HeldError when another run (another process, or another Acquire in this one) holds it.
// When ctx already carries the lock of dir (Acquire was called with it before), it returns
// ctx and a Lock whose Release does nothing. Release the lock when the run ends; a process
// that dies releases it too.
func Acquire(ctx context.Context, dir string) (context.Context, *Lock, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ctx, nil, fmt.Errorf("run lock on %s: %w", dir, err)
	}

	if held, _ := ctx.Value(ctxKey{}).([]string); containsDir(held, abs) {
		return ctx, &Lock{}, nil
	}

	l := &Lock{path: filepath.Join(abs, FileName)}

	for d := abs; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); !errors.Is(err, fs.ErrNotExist) || filepath.Dir(d) == d {
			break
		}

		l.madeDirs = append(l.madeDirs, d)
	}

	if err := os.MkdirAll(abs, 0o755); err != nil {
		return ctx, nil, fmt.Errorf("run lock on %s: %w", dir, err)
	}

	if err := l.take(ctx, dir); err != nil {
		l.removeMadeDir()

		return ctx, nil, err
	}

	held, _ := ctx.Value(ctxKey{}).([]string)

	return context.WithValue(ctx, ctxKey{}, append(held[:len(held):len(held)], abs)), l, nil
}

func containsDir(list []string, dir string) bool {
	for _, d := range list {
		if d == dir {
			return true
		}
	}

	return false
}

// take locks the file at l.path, retrying when the file it locked was removed or replaced by
// its previous holder meanwhile (see the package documentation).
func (l *Lock) take(ctx context.Context, dir string) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}

		f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE, 0o644)
		if errors.Is(err, fs.ErrNotExist) {
			// The directory went away: a previous holder that had created it removed it.
			if err = os.MkdirAll(filepath.Dir(l.path), 0o755); err == nil {
				continue
			}
		}

		if err != nil {
			return fmt.Errorf("run lock on %s: %w", dir, err)
		}

		locked, err := tryLock(f)
		if err != nil {
			f.Close()

			return fmt.Errorf("run lock on %s: %w", dir, err)
		}

		if !locked {
			held := holder(f, shown(dir))
			f.Close()

			return held
		}

		if !samePath(f, l.path) {
			f.Close()

			continue
		}

		l.f = f

		// Only for the message another run prints; the lock itself is the flock.
		record := fmt.Sprintf("pid: %d\nsince: %s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339))
		if err := f.Truncate(0); err == nil {
			f.WriteAt([]byte(record), 0) // the message is a courtesy
		}

		return nil
	}
}

// samePath reports whether f is still the file at path.
func samePath(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}

	b, err := os.Stat(path)

	return err == nil && os.SameFile(a, b)
}

// holder reads what the holding run recorded.
func holder(f *os.File, dir string) *HeldError {
	e := &HeldError{Dir: dir}

	buf := make([]byte, 256)
	n, _ := f.ReadAt(buf, 0)

	for _, line := range strings.Split(string(buf[:n]), "\n") {
		k, v, _ := strings.Cut(line, ": ")

		switch k {
		case "pid":
			e.PID, _ = strconv.Atoi(v)
		case "since":
			e.Since, _ = time.Parse(time.RFC3339, v)
		}
	}

	return e
}

// shown names dir relative to the working directory when it lies below it.
func shown(dir string) string {
	if !filepath.IsAbs(dir) {
		return filepath.Clean(dir)
	}

	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, dir); err == nil && filepath.IsLocal(rel) {
			return rel
		}
	}

	return dir
}

// Release removes the lock file and releases the lock. The file goes first: a run waiting on
// it then finds it gone and starts over on a new one, instead of two runs holding two files.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}

	// A file left behind (Windows refuses to remove an open file) is harmless: the next run
	// locks it.
	os.Remove(l.path)

	err := l.f.Close()
	l.f = nil
	l.removeMadeDir()

	return err
}

func (l *Lock) removeMadeDir() {
	for _, d := range l.madeDirs {
		if os.Remove(d) != nil {
			return // not empty: something was written there, and so in its parents
		}
	}
}
