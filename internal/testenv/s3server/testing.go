package s3server

import (
	"context"
	"testing"

	"github.com/talforge/talforge/internal/testenv/testproc"
)

// requirement: a missing weed skips, or fails with TALFORGE_REQUIRE_S3=1.
var requirement = testproc.Requirement{Prefix: "s3server", Missing: ErrWeedMissing, RequireEnv: EnvRequire}

// Required reports whether TALFORGE_REQUIRE_S3 asks for a missing weed to fail tests.
func Required() bool { return requirement.Required() }

// Start launches a server for one test and stops it when the test ends. When weed is
// absent the test is skipped with the command that builds it, or failed when
// TALFORGE_REQUIRE_S3=1.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	return testproc.PerTest(t, requirement, launcher(opts), (*Server).Stop, "stop S3 server")
}

// Shared is one server per test package, started with Options by the first test that
// asks for it and stopped by [Shared.Run] after all tests ran:
//
//	var s3srv = s3server.Shared{Options: s3server.Options{Buckets: []string{"backups"}}}
//
//	func TestMain(m *testing.M) { os.Exit(s3srv.Run(m)) }
//
//	func TestX(t *testing.T) { srv := s3srv.Get(t); ... }
//
// A package whose tests are all filtered out by -run never starts one.
type Shared struct {
	Options Options

	shared testproc.Shared[*Server]
}

// Get returns the package's server, starting it on first use. It skips or fails t like
// [Start] when weed is absent, and fails t when the start failed.
func (s *Shared) Get(t testing.TB) *Server {
	t.Helper()
	return s.shared.Get(t, requirement, launcher(s.Options))
}

// Run runs the tests and then stops the server if one was started. It returns m.Run's
// exit code (1 if stopping failed and the tests passed).
func (s *Shared) Run(m *testing.M) int {
	return s.shared.Run(m, "s3server: stop", (*Server).Stop)
}

func launcher(opts Options) func() (*Server, error) {
	return func() (*Server, error) { return Launch(context.Background(), opts) }
}
