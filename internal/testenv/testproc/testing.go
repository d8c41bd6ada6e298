package testproc

import (
	"errors"
	"os"
	"sync"
	"testing"
)

// Requirement says how tests react when a launcher's binaries are absent.
type Requirement struct {
	// Prefix starts the failure message ("kubeenv" gives "kubeenv: <err>").
	Prefix string
	// Missing is the error launch errors wrap when the binaries are absent; its message
	// is expected to say how to build them.
	Missing error
	// RequireEnv names the variable that, set to 1, turns the skip into a failure.
	RequireEnv string
}

// Required reports whether RequireEnv=1 asks for missing binaries to fail tests.
func (r Requirement) Required() bool { return os.Getenv(r.RequireEnv) == "1" }

// SkipOrFail ends t because a launch failed with err: a skip when err wraps Missing and
// the binaries are not required, else a failure.
func (r Requirement) SkipOrFail(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, r.Missing) && !r.Required() {
		t.Skipf("skipping: %v (set %s=1 to make this a failure)", err, r.RequireEnv)
	}
	t.Fatalf("%s: %v", r.Prefix, err)
}

// PerTest launches a server for one test and stops it when the test ends; stopWhat
// names the stop in the error a failed stop reports ("stop control plane"). A failed
// launch ends t through r.SkipOrFail.
func PerTest[T any](t testing.TB, r Requirement, launch func() (T, error), stop func(T) error, stopWhat string) T {
	t.Helper()
	v, err := launch()
	if err != nil {
		r.SkipOrFail(t, err)
	}
	t.Cleanup(func() {
		if err := stop(v); err != nil {
			t.Errorf("%s: %v", stopWhat, err)
		}
	})
	return v
}

// Shared is one server per test package, launched by the first test that asks for it and
// stopped after all tests ran (see [Shared.Run]). The zero value is ready to use. A
// package whose tests are all filtered out by -run never launches one.
type Shared[T any] struct {
	once    sync.Once
	v       T
	err     error
	started bool
}

// Get returns the server, calling launch on first use (concurrent callers wait for it).
// A failed launch ends t through r.SkipOrFail, in every test that asks.
func (s *Shared[T]) Get(t testing.TB, r Requirement, launch func() (T, error)) T {
	t.Helper()
	s.once.Do(func() {
		s.v, s.err = launch()
		s.started = s.err == nil
	})
	if s.err != nil {
		r.SkipOrFail(t, s.err)
	}
	return s.v
}

// Run runs the tests, then stops the server if one was launched: it returns
// s.StopAfter(m.Run(), stopWhat, stop).
func (s *Shared[T]) Run(m *testing.M, stopWhat string, stop func(T) error) int {
	return s.StopAfter(m.Run(), stopWhat, stop)
}

// StopAfter stops the server if one was launched, for a TestMain whose tests already
// ran with exit code code. It returns code, or 1 when the stop failed and code was 0;
// the failure is written to stderr as "<stopWhat>: <err>" (no test is left to report
// it).
func (s *Shared[T]) StopAfter(code int, stopWhat string, stop func(T) error) int {
	if !s.started {
		return code
	}
	if err := stop(s.v); err != nil {
		os.Stderr.WriteString(stopWhat + ": " + err.Error() + "\n")
		if code == 0 {
			code = 1
		}
	}
	return code
}
