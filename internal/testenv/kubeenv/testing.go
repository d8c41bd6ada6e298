package kubeenv

import (
	"context"
	"testing"

	"github.com/talforge/talforge/internal/testenv/testproc"
)

// requirement: a missing build skips, or fails with TALFORGE_REQUIRE_KUBE=1.
var requirement = testproc.Requirement{Prefix: "kubeenv", Missing: ErrAssetsMissing, RequireEnv: EnvRequire}

// Required reports whether TALFORGE_REQUIRE_KUBE asks for missing binaries to fail tests.
func Required() bool { return requirement.Required() }

// Start launches a control plane for one test and stops it when the test ends. When the
// binaries are absent the test is skipped with instructions, or failed when
// TALFORGE_REQUIRE_KUBE=1.
func Start(t testing.TB) *ControlPlane {
	t.Helper()
	return testproc.PerTest(t, requirement, launchDefault, (*ControlPlane).Stop, "stop control plane")
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
	shared testproc.Shared[*ControlPlane]
}

// Get returns the package's control plane, starting it on first use. It skips or fails
// t like [Start] when the binaries are absent, and fails t when the start failed.
func (s *Shared) Get(t testing.TB) *ControlPlane {
	t.Helper()
	return s.shared.Get(t, requirement, launchDefault)
}

// Run runs the tests and then stops the control plane if one was started. It returns
// m.Run's exit code (1 if stopping failed and the tests passed).
func (s *Shared) Run(m *testing.M) int {
	return s.shared.Run(m, "kubeenv: stop control plane", (*ControlPlane).Stop)
}

func launchDefault() (*ControlPlane, error) { return Launch(context.Background(), Options{}) }

func skipOrFail(t testing.TB, err error) {
	t.Helper()
	requirement.SkipOrFail(t, err)
}
