//go:build windows

package runlock

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// tryLock takes an exclusive lock without waiting on one byte far beyond the content, so that
// other runs can still read who holds it. Windows releases it when the process dies.
func tryLock(f *os.File) (bool, error) {
	ol := &windows.Overlapped{Offset: 0xffffffff, OffsetHigh: 0x7fffffff}

	err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)

	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, windows.ERROR_LOCK_VIOLATION):
		return false, nil
	default:
		return false, err
	}
}
