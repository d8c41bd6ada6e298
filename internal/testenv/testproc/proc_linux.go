package testproc

import "syscall"

// sysProcAttr puts the child in its own process group (so Stop reaches anything it
// forks) and has the kernel SIGKILL it when the starting thread dies (see Start).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
