package kubeenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// process is one child (etcd or kube-apiserver) in its own process group.
type process struct {
	name    string
	logPath string
	pid     int
	done    chan struct{} // closed when the child has exited and been reaped
	waitErr error
}

// startProcess starts path in a new process group with its output in logPath.
//
// The child is started from a goroutine locked to its OS thread that stays alive (in
// cmd.Wait) for the child's whole life. On Linux the child gets PR_SET_PDEATHSIG=SIGKILL,
// which the kernel delivers when the *thread* that forked it exits, not the process; so
// the thread must outlive the child. With that, a test binary that dies in any way (panic,
// -timeout, SIGKILL, Ctrl-C) takes etcd and kube-apiserver with it: no leaked processes.
func startProcess(name, path string, args []string, logPath string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Deliberately never unlocked: the runtime then ends this thread when the goroutine
		// returns, which is after the child is gone.
		defer close(p.done)
		defer logf.Close()
		cmd := exec.Command(path, args...)
		cmd.Env = childEnv()
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = sysProcAttr()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		p.pid = cmd.Process.Pid
		started <- nil
		p.waitErr = cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", name, path, err)
	}
	return p, nil
}

// childEnv is the test's environment without ETCD_* variables: etcd reads every one of
// them as a flag and refuses to start on one it does not know.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			env = append(env, kv)
		}
	}
	return env
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after grace, and waits for the
// child to be reaped.
func (p *process) stop(grace time.Duration) error {
	if p == nil || p.exited() {
		return nil
	}
	signalGroup(p.pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	signalGroup(p.pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, p.pid)
	}
}

func signalGroup(pid int, sig syscall.Signal) {
	// The child is its own group leader (Setpgid), so -pid addresses it and anything it forked.
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		_ = syscall.Kill(pid, sig)
	}
}

// logTail returns the last n lines of the process log, for error messages.
func (p *process) logTail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
