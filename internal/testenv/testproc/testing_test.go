package testproc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// recorder is a testing.TB that records how a test ended. Like testing.T, Skipf and
// Fatalf end the goroutine; run calls the code under test on a goroutine of its own.
type recorder struct {
	testing.TB
	skipped, fatal, errored string
	cleanups                []func()
}

func (r *recorder) Helper()                   {}
func (r *recorder) Errorf(f string, a ...any) { r.errored = fmt.Sprintf(f, a...) }
func (r *recorder) Cleanup(f func())          { r.cleanups = append(r.cleanups, f) }

func (r *recorder) Skipf(f string, a ...any) {
	r.skipped = fmt.Sprintf(f, a...)
	runtime.Goexit()
}

func (r *recorder) Fatalf(f string, a ...any) {
	r.fatal = fmt.Sprintf(f, a...)
	runtime.Goexit()
}

// run calls f as a test body would run.
func (r *recorder) run(f func(tb testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
}

func (r *recorder) runCleanups() {
	for _, f := range r.cleanups {
		f()
	}
}

// wantEnd checks that the test was skipped (skip) or failed (!skip), not both.
func (r *recorder) wantEnd(t *testing.T, skip bool) {
	t.Helper()
	if (r.skipped != "") != skip || (r.fatal != "") == skip {
		t.Errorf("skip %q fatal %q; want skip %v", r.skipped, r.fatal, skip)
	}
}

var errGone = errors.New("server binary not found")

var req = Requirement{Prefix: "srv", Missing: errGone, RequireEnv: "TESTPROC_REQUIRE"}

func TestSkipOrFail(t *testing.T) {
	missing := fmt.Errorf("%w: build it with `make srv`", errGone)
	for _, tc := range []struct {
		name    string
		require string
		err     error
		skip    bool
		message string
	}{
		{"missing: skip with how to build", "", missing, true, "skipping: server binary not found: build it with `make srv` (set TESTPROC_REQUIRE=1 to make this a failure)"},
		{"missing but required", "1", missing, false, "srv: server binary not found: build it with `make srv`"},
		{"other error", "", errors.New("crashed"), false, "srv: crashed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(req.RequireEnv, tc.require)
			if req.Required() != (tc.require == "1") {
				t.Errorf("Required() = %v with %s=%q", req.Required(), req.RequireEnv, tc.require)
			}
			r := &recorder{}
			r.run(func(tb testing.TB) { req.SkipOrFail(tb, tc.err) })
			r.wantEnd(t, tc.skip)
			if got := r.skipped + r.fatal; got != tc.message {
				t.Errorf("message %q, want %q", got, tc.message)
			}
		})
	}
}

type server struct{ stops int }

func (s *server) stop() error {
	s.stops++
	if s.stops > 1 {
		return errors.New("stopped twice")
	}
	return nil
}

func TestPerTest(t *testing.T) {
	r := &recorder{}
	var srv *server
	r.run(func(tb testing.TB) {
		srv = PerTest(tb, req, func() (*server, error) { return &server{}, nil }, (*server).stop, "stop srv")
	})
	if srv == nil || srv.stops != 0 {
		t.Fatalf("PerTest = %+v", srv)
	}
	r.runCleanups()
	if srv.stops != 1 || r.errored != "" {
		t.Errorf("after the test: %d stops, error %q; want 1, none", srv.stops, r.errored)
	}
	r.runCleanups()
	if r.errored != "stop srv: stopped twice" {
		t.Errorf("failed stop reported as %q", r.errored)
	}

	t.Setenv(req.RequireEnv, "")
	r = &recorder{}
	r.run(func(tb testing.TB) {
		PerTest(tb, req, func() (*server, error) { return nil, errGone }, (*server).stop, "stop srv")
		t.Error("PerTest returned after a failed launch")
	})
	r.wantEnd(t, true)
	if len(r.cleanups) != 0 {
		t.Error("a failed launch registered a stop")
	}
}

// TestSharedLaunchesOnce: concurrent Gets share one launch; a failed launch ends every
// test that asks; StopAfter stops only what was launched and reports a failed stop.
func TestSharedLaunchesOnce(t *testing.T) {
	var s Shared[*server]
	launches := 0
	launch := func() (*server, error) { launches++; return &server{}, nil }
	var wg sync.WaitGroup
	got := make([]*server, 8)
	for i := range got {
		wg.Go(func() { got[i] = s.Get(&recorder{}, req, launch) })
	}
	wg.Wait()
	for _, g := range got {
		if g == nil || g != got[0] {
			t.Fatalf("Get returned %v, want one server for all", got)
		}
	}
	if launches != 1 {
		t.Errorf("%d launches, want 1", launches)
	}
	if code := s.StopAfter(0, "srv: stop", (*server).stop); code != 0 || got[0].stops != 1 {
		t.Errorf("StopAfter = %d with %d stops; want 0, 1", code, got[0].stops)
	}

	// stderr carries the failed stop: no test is left to report it.
	stderr := captureStderr(t, func() {
		if code := s.StopAfter(0, "srv: stop", (*server).stop); code != 1 {
			t.Errorf("failed stop after passing tests: code %d, want 1", code)
		}
		if code := s.StopAfter(2, "srv: stop", (*server).stop); code != 2 {
			t.Errorf("failed stop after failing tests: code %d, want 2", code)
		}
	})
	if want := "srv: stop: stopped twice\n"; stderr != want+want {
		t.Errorf("stderr %q, want %q twice", stderr, want)
	}

	t.Setenv(req.RequireEnv, "")
	var failed Shared[*server]
	for range 2 {
		r := &recorder{}
		r.run(func(tb testing.TB) {
			failed.Get(tb, req, func() (*server, error) { launches++; return nil, errGone })
			t.Error("Get returned after a failed launch")
		})
		r.wantEnd(t, true)
	}
	if launches != 2 {
		t.Errorf("failed launch retried: %d launches in all, want 2", launches)
	}
	if code := failed.StopAfter(0, "srv: stop", func(*server) error { t.Error("stop without a launch"); return nil }); code != 0 {
		t.Errorf("StopAfter without a server = %d", code)
	}
}

func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stderr")
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = file
	f()
	os.Stderr = old
	file.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
