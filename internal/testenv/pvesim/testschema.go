package pvesim

import (
	"errors"
	"os"
	"sync"
	"testing"
)

// EnvRequireSchema names the variable under which a missing PVE API schema fixture fails a
// test instead of letting the emulator run without parameter checks (CI sets it, like
// TALFORGE_REQUIRE_KUBE for the control plane).
const EnvRequireSchema = "TALFORGE_REQUIRE_PVE_SCHEMA"

var testSchemas struct {
	sync.Mutex
	s   map[int]*Schema
	err map[int]error
}

// SchemaForTest is the PVE API schema of a major version for tests, loaded once per process:
// the one place every test package gets it from. Without the fixture it returns nil (the
// emulator then checks no parameters) and says so, unless $TALFORGE_REQUIRE_PVE_SCHEMA=1, which
// fails the test; a fixture that does not load always fails it.
func SchemaForTest(t testing.TB, major int) *Schema {
	t.Helper()
	testSchemas.Lock()
	defer testSchemas.Unlock()
	if testSchemas.s == nil {
		testSchemas.s, testSchemas.err = map[int]*Schema{}, map[int]error{}
	}
	s, ok := testSchemas.s[major]
	err := testSchemas.err[major]
	if !ok && err == nil {
		var p string
		if p, err = FindSchema(major); err == nil {
			s, err = LoadSchema(p)
		}
		testSchemas.s[major], testSchemas.err[major] = s, err
	}
	switch {
	case err == nil:
		return s
	case errors.Is(err, ErrSchemaNotFound) && os.Getenv(EnvRequireSchema) != "1":
		t.Logf("PVE API schema fixture not found (%v): the emulator checks no parameters (set %s=1 to fail instead)", err, EnvRequireSchema)
		return nil
	default:
		t.Fatalf("PVE API schema: %v", err)
		return nil
	}
}
