//go:build !linux

package gitops

import "syscall"

// syncFS: without syncfs(2), sync(2) flushes every filesystem (as pkg/atomicfile does).
func syncFS(string) error {
	syscall.Sync()

	return nil
}
