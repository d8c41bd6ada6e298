//go:build !linux

package atomicfile

import "syscall"

func syncFS(string) error {
	syscall.Sync()

	return nil
}
