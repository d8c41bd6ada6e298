package s3server

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
)

// Required reports whether TALFORGE_REQUIRE_S3 asks for a missing weed to fail tests.
func Required() bool { return os.Getenv(EnvRequire) == "1" }

// Start launches a server for one test and stops it when the test ends. When weed is
// absent the test is skipped with the command that builds it, or failed when
// TALFORGE_REQUIRE_S3=1.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Launch(context.Background(), opts)
	if err != nil {
		skipOrFail(t, err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop S3 server: %v", err)
		}
	})
	return s
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

	once sync.Once
	srv  *Server
	err  error
}

// Get returns the package's server, starting it on first use. It skips or fails t like
// [Start] when weed is absent, and fails t when the start failed.
func (s *Shared) Get(t testing.TB) *Server {
	t.Helper()
	s.once.Do(func() { s.srv, s.err = Launch(context.Background(), s.Options) })
	if s.err != nil {
		skipOrFail(t, s.err)
	}
	return s.srv
}

// Run runs the tests and then stops the server if one was started. It returns m.Run's
// exit code (1 if stopping failed and the tests passed).
func (s *Shared) Run(m *testing.M) int {
	code := m.Run()
	if s.srv != nil {
		if err := s.srv.Stop(); err != nil {
			os.Stderr.WriteString("s3server: stop: " + err.Error() + "\n")
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

func skipOrFail(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrWeedMissing) && !Required() {
		t.Skipf("skipping: %v (set %s=1 to make this a failure)", err, EnvRequire)
	}
	t.Fatalf("s3server: %v", err)
}
