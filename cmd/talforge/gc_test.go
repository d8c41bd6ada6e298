package main

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
// finds more than half of it live; GOGC or GOMEMLIMIT in the environment leave both alone.
func TestTuneGC(t *testing.T) {
	percent, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	})

	t.Setenv("GOMEMLIMIT", "")
	t.Setenv("GOGC", "50")
	tuneGC()

	if p, l := debug.SetGCPercent(-1), debug.SetMemoryLimit(-1); p != 100 || l != math.MaxInt64 {
		t.Fatalf("with GOGC set: GOGC %d, limit %d; want the runtime's own", p, l)
	}

	debug.SetGCPercent(100)
	t.Setenv("GOGC", "")
	tuneGC()

	if p, l := debug.SetGCPercent(-1), debug.SetMemoryLimit(-1); p != gcPercent || l != smallRunLimit {
		t.Fatalf("GOGC %d, limit %d; want %d and %d", p, l, gcPercent, smallRunLimit)
	}

	debug.SetGCPercent(gcPercent)

	live := make([]byte, liftLimitAbove+(8<<20))
	for i := 0; i < 100 && debug.SetMemoryLimit(-1) == smallRunLimit; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}

	runtime.KeepAlive(live)

	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		t.Fatalf("limit %d with %d bytes live, want it lifted", l, len(live))
	}
}
