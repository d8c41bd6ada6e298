package testproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Spec is one child process to start.
type Spec struct {
	// Name is what errors call the process ("etcd", "weed").
	Name string
	// Path is the executable.
	Path string
	// Args are the arguments after the program name.
	Args []string
	// Env is the child's whole environment; nil inherits the test's (as exec.Cmd.Env).
	// See [Environ].
	Env []string
	// Dir is the working directory; empty is the test's.
	Dir string
	// LogPath receives stdout and stderr; it is created or truncated.
	LogPath string
}

// Process is a started child, the leader of its own process group.
type Process struct {
	name    string
	logPath string
	pid     int
	done    chan struct{} // closed when the child has exited and been reaped
	waitErr error         // cmd.Wait's result; read only after done is closed
}

// Start starts spec.Path in a new process group with its output in spec.LogPath.
//
// ctx bounds the start only: once the child runs, cancelling ctx does not stop it (as a
// connection outlives net.Dialer.DialContext's ctx); [Process.Stop] does. Launchers take
// a ctx for their readiness wait, and the server must outlive it.
//
// The child is started from a goroutine locked to its OS thread that stays alive (in
// cmd.Wait) for the child's whole life. On Linux the child gets PR_SET_PDEATHSIG=SIGKILL,
// which the kernel delivers when the *thread* that forked it exits, not the process
// (prctl(2)); so the thread must outlive the child. With that, a test binary that dies in
// any way (panic, -timeout, SIGKILL, Ctrl-C) takes its servers with it.
func Start(ctx context.Context, spec Spec) (*Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	logf, err := os.OpenFile(spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", spec.Name, err)
	}
	p := &Process{name: spec.Name, logPath: spec.LogPath, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Deliberately never unlocked: the runtime then ends this thread when the goroutine
		// returns, which is after the child is gone.
		defer close(p.done)
		defer logf.Close()
		cmd := exec.Command(spec.Path, spec.Args...)
		cmd.Dir = spec.Dir
		cmd.Env = spec.Env
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
		return nil, fmt.Errorf("%s: start %s: %w", spec.Name, spec.Path, err)
	}
	return p, nil
}

// Environ is the test's environment without the variables drop selects (by name), plus
// extra ("NAME=value"). Servers read some variables as configuration (etcd every ETCD_*
// as a flag, weed every WEED_* through viper), which the test's environment must not
// change.
func Environ(drop func(name string) bool, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !drop(name) {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// Name is the process's name from its [Spec].
func (p *Process) Name() string { return p.name }

// Pid is the child's pid, which is also its process group id.
func (p *Process) Pid() int { return p.pid }

// Exited reports whether the child has exited and been reaped.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM to the process group, then SIGKILL after grace (at once when grace
// is 0 or less), and waits for the child to be reaped. A nil or exited Process is
// stopped already.
func (p *Process) Stop(grace time.Duration) error {
	if p == nil || p.Exited() {
		return nil
	}
	if grace > 0 {
		signalGroup(p.pid, syscall.SIGTERM)
		select {
		case <-p.done:
			return nil
		case <-time.After(grace):
		}
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

// Alive reports whether pid exists and is not a zombie. A killed server that was not our
// child (a grandchild, or the child of a crashed test binary) is reaped by pid 1 in its
// own time, and kill(pid, 0) finds it until then; tests that prove a server gone ask
// this instead. Without /proc (not Linux) existence is all it can tell.
func Alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return runtime.GOOS != "linux"
	}
	// The state is the field after the ")" that closes the command name (proc(5)).
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// LogTail returns the last n lines of the process log, for error messages.
func (p *Process) LogTail(n int) string {
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

// ErrPortRace is returned (wrapped) when a child died because a port chosen by
// [FreePorts] was taken before it could bind it; [RetryPortRace] retries on it.
var ErrPortRace = errors.New("port taken between choosing and binding")

// StartupErr is nil while the child runs. Once it has exited it is an error with the
// last tailLines lines of its log, wrapping ErrPortRace when portRace matches them.
func (p *Process) StartupErr(tailLines int, portRace *regexp.Regexp) error {
	if !p.Exited() {
		return nil
	}
	tail := p.LogTail(tailLines)
	if portRace.MatchString(tail) {
		return fmt.Errorf("%s: %w", p.name, ErrPortRace)
	}
	return fmt.Errorf("%s exited during start-up (%v); last log lines:\n%s", p.name, p.waitErr, tail)
}
