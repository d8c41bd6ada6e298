package s3server

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

// process is the weed child in its own process group. It follows
// internal/testenv/kubeenv/process.go (unexported there, so repeated here).
type process struct {
	logPath string
	pid     int
	done    chan struct{} // closed when the child has exited and been reaped
	waitErr error
}

// startProcess starts path in dir, in a new process group, with its output in logPath.
//
// The child is started from a goroutine locked to its OS thread that stays alive (in
// cmd.Wait) for the child's whole life: on Linux PR_SET_PDEATHSIG fires when the thread
// that forked the child exits, so a test binary that dies in any way (panic, -timeout,
// SIGKILL) takes weed with it.
func startProcess(path string, args []string, dir, logPath string, env []string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("weed log file: %w", err)
	}
	p := &process{logPath: logPath, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Deliberately never unlocked: the runtime then ends this thread when the goroutine
		// returns, which is after the child is gone.
		defer close(p.done)
		defer logf.Close()
		cmd := exec.Command(path, args...)
		cmd.Dir = dir
		cmd.Env = env
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
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	return p, nil
}

// childEnv is the test's environment without the variables weed reads as configuration,
// plus extra. Dropped: WEED_* (viper binds every one to a setting), AWS_ACCESS_KEY_ID /
// AWS_SECRET_ACCESS_KEY (weed/s3api/auth_credentials.go loadEnvironmentVariableCredentials
// turns them into an extra Admin identity), S3_* (S3_BUCKET, S3_EXTERNAL_URL are flag
// fallbacks) and HOME (weed reads ~/.seaweedfs/*.toml; extra points it at the run dir).
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "WEED_") || strings.HasPrefix(name, "AWS_") ||
			strings.HasPrefix(name, "S3_") || name == "HOME" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL to the process group and waits for the child to be reaped.
func (p *process) kill() error {
	if p == nil || p.exited() {
		return nil
	}
	signalGroup(p.pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("weed (pid %d) did not exit after SIGKILL", p.pid)
	}
}

func signalGroup(pid int, sig syscall.Signal) {
	// The child is its own group leader (Setpgid), so -pid addresses it and anything it forked.
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		_ = syscall.Kill(pid, sig)
	}
}

// logTail returns the last n lines of the weed log, for error messages.
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
