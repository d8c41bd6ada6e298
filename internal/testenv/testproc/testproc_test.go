package testproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sh starts /bin/sh -c script with its log in a temporary directory.
func sh(t *testing.T, script string, env ...string) *Process {
	t.Helper()
	p, err := Start(context.Background(), Spec{
		Name: "sh", Path: "/bin/sh", Args: []string{"-c", script}, Env: env,
		Dir: t.TempDir(), LogPath: filepath.Join(t.TempDir(), "sh.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(0) })
	return p
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStopEndsTheGroup: Stop reaches a grandchild through the process group, with and
// without a grace period, and a second Stop is a no-op.
func TestStopEndsTheGroup(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		grace  time.Duration
		max    time.Duration // how long Stop may take
	}{
		// The shell exits on SIGTERM; sleep, in the same group, too.
		{"SIGTERM within grace", "sleep 60 & echo $!; wait", 5 * time.Second, 4 * time.Second},
		// A child that ignores SIGTERM is killed once grace is over.
		{"SIGKILL after grace", "trap '' TERM; sleep 60 & echo $!; wait", 300 * time.Millisecond, 4 * time.Second},
		{"SIGKILL at once", "trap '' TERM; sleep 60 & echo $!; wait", 0, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := sh(t, tc.script)
			var grandchild int
			waitFor(t, "the script to start", func() bool {
				grandchild, _ = strconv.Atoi(p.LogTail(1))
				return grandchild > 0
			})
			t.Cleanup(func() { _ = syscall.Kill(grandchild, syscall.SIGKILL) })
			if p.Exited() || !Alive(grandchild) {
				t.Fatal("process gone before Stop")
			}
			start := time.Now()
			if err := p.Stop(tc.grace); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > tc.max {
				t.Errorf("Stop took %s, want at most %s", took, tc.max)
			}
			if !p.Exited() {
				t.Error("Exited() = false after Stop")
			}
			// sleep is not our child: its death follows the signal, not Stop's return.
			waitFor(t, "the grandchild to die", func() bool { return !Alive(grandchild) })
			if err := p.Stop(tc.grace); err != nil {
				t.Errorf("second Stop: %v", err)
			}
		})
	}
	var nilProc *Process
	if err := nilProc.Stop(0); err != nil {
		t.Errorf("Stop on nil: %v", err)
	}
}

func TestStartEnvDirAndLog(t *testing.T) {
	p := sh(t, `echo "A=$A B=$B"; pwd; exit 0`, "A=1", "B=two")
	waitFor(t, "exit", p.Exited)
	lines := strings.Split(p.LogTail(10), "\n")
	if len(lines) != 2 || lines[0] != "A=1 B=two" {
		t.Fatalf("log = %q, want the environment given and the directory", lines)
	}
	if filepath.Base(lines[1]) == "" || !strings.HasPrefix(lines[1], os.TempDir()) {
		t.Errorf("working directory %q is not the Spec's temporary directory", lines[1])
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := Start(context.Background(), Spec{Name: "ghost", Path: filepath.Join(dir, "nope"), LogPath: filepath.Join(dir, "log")})
	if err == nil || !strings.HasPrefix(err.Error(), "ghost: start ") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing executable: err = %v, want ghost: start ...: ErrNotExist", err)
	}
	_, err = Start(context.Background(), Spec{Name: "sh", Path: "/bin/sh", LogPath: filepath.Join(dir, "no", "log")})
	if err == nil || !strings.HasPrefix(err.Error(), "sh: log file: ") {
		t.Errorf("log in a missing directory: err = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Start(ctx, Spec{Name: "sh", Path: "/bin/sh", LogPath: filepath.Join(dir, "log")})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: err = %v, want context.Canceled", err)
	}
}

func TestLogTail(t *testing.T) {
	p := sh(t, `for i in 1 2 3 4 5; do echo line$i; done`)
	waitFor(t, "exit", p.Exited)
	for _, tc := range []struct {
		n    int
		want string
	}{
		{1, "line5"},
		{3, "line3\nline4\nline5"},
		{99, "line1\nline2\nline3\nline4\nline5"},
	} {
		if got := p.LogTail(tc.n); got != tc.want {
			t.Errorf("LogTail(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestStartupErr(t *testing.T) {
	race := regexp.MustCompile(`address already in use`)
	for _, tc := range []struct {
		name, script string
		portRace     bool
		want         string // in the message
	}{
		{"bind race", "echo listen tcp 127.0.0.1:1: bind: address already in use; exit 1", true, "sh: port taken"},
		{"other failure", "echo no such flag; exit 2", false, "sh exited during start-up (exit status 2); last log lines:\nno such flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := sh(t, tc.script)
			waitFor(t, "exit", p.Exited)
			err := p.StartupErr(5, race)
			if err == nil || errors.Is(err, ErrPortRace) != tc.portRace || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("StartupErr = %v; want ErrPortRace %v and %q", err, tc.portRace, tc.want)
			}
		})
	}
	if err := sh(t, "sleep 60").StartupErr(5, race); err != nil {
		t.Errorf("running process: StartupErr = %v, want nil", err)
	}
}

func TestEnviron(t *testing.T) {
	t.Setenv("TESTPROC_DROP_ME", "x")
	t.Setenv("TESTPROC_KEEP", "y")
	env := Environ(func(name string) bool { return strings.HasPrefix(name, "TESTPROC_DROP") }, "EXTRA=z")
	joined := "\n" + strings.Join(env, "\n") + "\n"
	for want, in := range map[string]bool{"TESTPROC_DROP_ME=x": false, "TESTPROC_KEEP=y": true, "EXTRA=z": true} {
		if strings.Contains(joined, "\n"+want+"\n") != in {
			t.Errorf("%s in environment = %v, want %v", want, !in, in)
		}
	}
	if env[len(env)-1] != "EXTRA=z" {
		t.Errorf("extra is not last: %q", env[len(env)-1])
	}
}

func TestFreePorts(t *testing.T) {
	ports, err := FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Errorf("port %d twice in %v", p, ports)
		}
		seen[p] = true
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Errorf("port %d not free: %v", p, err)
			continue
		}
		l.Close()
	}
}

func TestRetryPortRace(t *testing.T) {
	race := fmt.Errorf("etcd: %w", ErrPortRace)
	other := errors.New("boom")
	for _, tc := range []struct {
		name    string
		results []error // per attempt; past the end: success
		calls   int
		wantErr error
	}{
		{"first try", nil, 1, nil},
		{"race then success", []error{race}, 2, nil},
		{"other error is final", []error{other}, 1, other},
		{"three races", []error{race, race, race, race}, 3, ErrPortRace},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			v, err := RetryPortRace(context.Background(), func(context.Context) (*int, error) {
				calls++
				if calls <= len(tc.results) {
					n := -1
					return &n, tc.results[calls-1] // a failed attempt's value must not leak out
				}
				return &calls, nil
			})
			if calls != tc.calls || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("calls %d, err %v; want %d, %v", calls, err, tc.calls, tc.wantErr)
			}
			if (err == nil) != (v != nil) {
				t.Errorf("value %v with error %v", v, err)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	_, err := RetryPortRace(ctx, func(context.Context) (int, error) { calls++; cancel(); return 0, race })
	if calls != 1 || !errors.Is(err, ErrPortRace) {
		t.Errorf("cancelled ctx: %d calls, err %v; want 1 call", calls, err)
	}
}

func TestAlive(t *testing.T) {
	p := sh(t, "sleep 60")
	if !Alive(p.Pid()) {
		t.Errorf("Alive(%d) = false for a running process", p.Pid())
	}
	if err := p.Stop(0); err != nil {
		t.Fatal(err)
	}
	if Alive(p.Pid()) {
		t.Errorf("Alive(%d) = true after Stop", p.Pid())
	}
	if runtime.GOOS != "linux" {
		return
	}
	// A zombie: a child nobody waits for yet.
	z := sh(t, "sleep 0 & echo $!; exec sleep 60")
	var pid int
	waitFor(t, "the zombie's pid", func() bool { pid, _ = strconv.Atoi(z.LogTail(1)); return pid > 0 })
	waitFor(t, "the zombie", func() bool {
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return strings.Contains(string(stat), ") Z ")
	})
	if Alive(pid) {
		t.Errorf("Alive(%d) = true for a zombie", pid)
	}
}
