//go:build linux

// Command peakrss runs a command and writes its peak resident set size, in KiB, to a file:
//
//	peakrss OUT COMMAND [ARG...]
//
// A benchmark cannot read a child's peak from its own wait: Go starts children with
// CLONE_VM|CLONE_VFORK, and at exec Linux raises the child's recorded peak to the peak of the
// memory it left (exec_mmap's setmax_mm_hiwater_rss), which is the whole test process. peakrss is
// small, so the command it starts inherits next to nothing. It exits with the command's status.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: peakrss OUT COMMAND [ARG...]")
		os.Exit(2)
	}

	cmd := exec.Command(os.Args[2], os.Args[3:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr

	err := cmd.Run()

	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		fmt.Fprintln(os.Stderr, "peakrss:", err)
		os.Exit(1)
	}

	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		fmt.Fprintln(os.Stderr, "peakrss: no resource usage for the command")
		os.Exit(1)
	}

	if err := os.WriteFile(os.Args[1], []byte(strconv.FormatInt(ru.Maxrss, 10)), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "peakrss:", err)
		os.Exit(1)
	}

	os.Exit(cmd.ProcessState.ExitCode())
}
