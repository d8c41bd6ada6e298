package gcpolicy

import (
	"math"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"
)

// afterEachGC calls its function after every collection until the function says to stop.
func TestAfterEachGC(t *testing.T) {
	var calls atomic.Int32

	afterEachGC(func() bool { return calls.Add(1) < 3 })

	for i := 0; i < 50 && calls.Load() < 3; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}

	if got := calls.Load(); got != 3 {
		t.Fatalf("called after %d collections, want 3", got)
	}

	for range 3 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}

	if got := calls.Load(); got != 3 {
		t.Fatalf("called %d times: it went on after returning false", got)
	}
}

// The soft limit holds while the live heap is small and is lifted for good once a collection
// finds more than half of it live; GOGC or GOMEMLIMIT in the environment leave it alone.
func TestLimitSmallRuns(t *testing.T) {
	limit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetMemoryLimit(limit) })

	for _, env := range []string{"GOGC", "GOMEMLIMIT"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, "400")
			LimitSmallRuns()

			if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
				t.Fatalf("with %s set: limit %d; want the runtime's own", env, l)
			}
		})
	}

	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	LimitSmallRuns()

	if l := debug.SetMemoryLimit(-1); l != SmallRunLimit {
		t.Fatalf("limit %d, want %d", l, SmallRunLimit)
	}

	live := make([]byte, LiftLimitAbove+(8<<20))
	for i := 0; i < 100 && debug.SetMemoryLimit(-1) == SmallRunLimit; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}

	runtime.KeepAlive(live)

	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		t.Fatalf("limit %d with %d bytes live, want it lifted", l, len(live))
	}
}

// The package's init sets talforge's pace unless the environment chose one.
func TestInitSetsThePace(t *testing.T) {
	if environmentDecides() {
		t.Skip("GOGC or GOMEMLIMIT is set for this test process")
	}

	if p := debug.SetGCPercent(Percent); p != Percent {
		t.Fatalf("GOGC %d after init, want %d", p, Percent)
	}
}
