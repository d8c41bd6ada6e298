package gitops

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFS flushes the whole filesystem holding dir with one syncfs(2): one flush for a run's
// files instead of one fsync each (as pkg/atomicfile's Batch does).
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()

	return unix.Syncfs(int(f.Fd()))
}
