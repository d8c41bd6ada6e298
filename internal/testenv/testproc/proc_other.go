//go:build !linux

package testproc

import "syscall"

// sysProcAttr: without Linux's parent-death signal only the process group remains;
// Stop still reaps the children, a killed test binary may leave them behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
