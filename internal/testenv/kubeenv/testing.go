package kubeenv

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
)

// Required reports whether TALFORGE_REQUIRE_KUBE asks for missing binaries to fail tests.
func Required() bool { return os.Getenv(EnvRequire) == "1" }

// Start launches a control plane for one test and stops it when the test ends. When the
// binaries are absent the test is skipped with instructions, or failed when
// TALFORGE_REQUIRE_KUBE=1.
func Start(t testing.TB) *ControlPlane {
	t.Helper()
	cp, err := Launch(context.Background(), Options{})
	if err != nil {
		skipOrFail(t, err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	return cp
}

// Shared is one control plane per test package, started by the first test that asks for
// it and stopped by [Shared.Run] after all tests ran:
//
//	var kube kubeenv.Shared
//
//	func TestMain(m *testing.M) { os.Exit(kube.Run(m)) }
//
//	func TestX(t *testing.T) { cp := kube.Get(t); ... }
//
// A package whose tests are all filtered out by -run never starts one.
type Shared struct {
	once sync.Once
	cp   *ControlPlane
	err  error
}

// Get returns the package's control plane, starting it on first use. It skips or fails
// t like [Start] when the binaries are absent, and fails t when the start failed.
func (s *Shared) Get(t testing.TB) *ControlPlane {
	t.Helper()
	s.once.Do(func() { s.cp, s.err = Launch(context.Background(), Options{}) })
	if s.err != nil {
		skipOrFail(t, s.err)
	}
	return s.cp
}

// Run runs the tests and then stops the control plane if one was started. It returns
// m.Run's exit code (1 if stopping failed and the tests passed).
func (s *Shared) Run(m *testing.M) int {
	code := m.Run()
	if s.cp != nil {
		if err := s.cp.Stop(); err != nil {
			os.Stderr.WriteString("kubeenv: stop control plane: " + err.Error() + "\n")
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

func skipOrFail(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrAssetsMissing) && !Required() {
		t.Skipf("skipping: %v (set %s=1 to make this a failure)", err, EnvRequire)
	}
	t.Fatalf("kubeenv: %v", err)
}
