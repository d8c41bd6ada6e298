package runlock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMain lets the test binary act as another talforge process holding a lock: with
// RUNLOCK_HOLD=dir it takes the lock, says so, and waits to be killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("RUNLOCK_HOLD"); dir != "" {
		if _, _, err := Acquire(context.Background(), dir); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}

		fmt.Println("locked")
		time.Sleep(time.Minute)
		os.Exit(0)
	}

	os.Exit(m.Run())
}

func TestLockExcludesAndSaysWho(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "clusters", "lab")

	_, lk, err := Acquire(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}

	_, _, err = Acquire(ctx, dir)

	var held *HeldError
	if !errors.As(err, &held) {
		t.Fatalf("second acquire: %v, want a HeldError", err)
	}

	if held.PID != os.Getpid() || time.Since(held.Since) > time.Minute {
		t.Errorf("holder = pid %d since %v, want pid %d just now", held.PID, held.Since, os.Getpid())
	}

	want := fmt.Sprintf("another talforge run holds the lock on %s (pid %d, since ", dir, os.Getpid())
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("message %q\ndoes not start with %q", err, want)
	}

	if err := lk.Release(); err != nil {
		t.Fatal(err)
	}

	if _, err := os.Stat(filepath.Join(dir, FileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the lock file stays after release: %v", err)
	}

	_, lk, err = Acquire(ctx, dir)
	if err != nil {
		t.Fatalf("acquire after release: %v", err)
	}

	lk.Release()
}

func TestLockNamesDirectoryRelativeToWorkingDirectory(t *testing.T) {
	root := t.TempDir()
	t.Chdir(root)

	_, lk, err := Acquire(context.Background(), filepath.Join(root, "clusters", "lab"))
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Release()

	_, _, err = Acquire(context.Background(), filepath.Join(root, "clusters", "lab"))
	if err == nil || !strings.Contains(err.Error(), "holds the lock on "+filepath.Join("clusters", "lab")+" (pid ") {
		t.Errorf("message %v does not name clusters/lab", err)
	}
}

// TestLockNested: an operation holding the lock (up) calls one that takes it (generate) with
// its context and is not locked out; the inner release leaves the lock held.
func TestLockNested(t *testing.T) {
	dir := t.TempDir()

	ctx, outer, err := Acquire(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer outer.Release()

	_, inner, err := Acquire(ctx, dir+string(filepath.Separator)+".")
	if err != nil {
		t.Fatalf("nested acquire: %v", err)
	}

	inner.Release()

	if _, _, err := Acquire(context.Background(), dir); err == nil {
		t.Error("the inner release released the outer lock")
	}
}

// TestLockOfKilledProcessIsTakenOver: a run killed with SIGKILL holds nothing: the next run
// takes the lock at once. While it lived, the message named its pid.
func TestLockOfKilledProcessIsTakenOver(t *testing.T) {
	dir := t.TempDir()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "RUNLOCK_HOLD="+dir)

	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}

	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "locked\n" {
		t.Fatalf("holder said %q", line)
	}

	var held *HeldError
	if _, _, err := Acquire(context.Background(), dir); !errors.As(err, &held) || held.PID != cmd.Process.Pid {
		t.Fatalf("while the holder lives: %v, want pid %d", err, cmd.Process.Pid)
	}

	cmd.Process.Kill()
	cmd.Wait()

	// Its lock file is still there, naming a dead pid: only the message used it.
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		t.Fatalf("the killed holder's lock file: %v", err)
	}

	_, lk, err := Acquire(context.Background(), dir)
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}

	lk.Release()
}

// TestLockRace: many runs acquiring and releasing at once (the release removes the file)
// never hold the lock together.
func TestLockRace(t *testing.T) {
	dir := t.TempDir()

	var (
		holders, acquired atomic.Int32
		wg                sync.WaitGroup
	)

	deadline := time.Now().Add(500 * time.Millisecond)

	for range 8 {
		wg.Add(1)

		go func() {
			defer wg.Done()

			for time.Now().Before(deadline) {
				_, lk, err := Acquire(context.Background(), dir)

				var held *HeldError
				if errors.As(err, &held) {
					continue
				}

				if err != nil {
					t.Error(err)

					return
				}

				if n := holders.Add(1); n != 1 {
					t.Errorf("%d runs hold the lock at once", n)
				}

				acquired.Add(1)
				time.Sleep(50 * time.Microsecond)
				holders.Add(-1)

				if err := lk.Release(); err != nil {
					t.Error(err)
				}
			}
		}()
	}

	wg.Wait()

	if acquired.Load() < 10 {
		t.Errorf("only %d acquisitions in 500ms", acquired.Load())
	}
}

// TestLockLeavesNoDirectories: locking a cluster that has no directory yet (destroy before
// any generate, a generate that fails) leaves no empty directories behind.
func TestLockLeavesNoDirectories(t *testing.T) {
	root := t.TempDir()

	_, lk, err := Acquire(context.Background(), filepath.Join(root, "clusters", "lab"))
	if err != nil {
		t.Fatal(err)
	}

	lk.Release()

	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("left %v", entries)
	}

	// A directory that got content stays.
	_, lk, err = Acquire(context.Background(), filepath.Join(root, "clusters", "lab"))
	if err != nil {
		t.Fatal(err)
	}

	os.WriteFile(filepath.Join(root, "clusters", "lab", "x"), nil, 0o644)
	lk.Release()

	if _, err := os.Stat(filepath.Join(root, "clusters", "lab", "x")); err != nil {
		t.Error(err)
	}
}
