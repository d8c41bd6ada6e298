// Package gcpolicy paces talforge's garbage collector.
//
// talforge is a short-lived batch process: trading memory for fewer collections makes large
// generates about 30% faster (GOGC=400). The pace is set in this package's init, not in main,
// because start-up is paid by every command: initialising the packages talforge links (Helm,
// SOPS, client-go, machinery) allocates about 12 MB before main runs, which at the runtime's
// default pace is three collections and about a quarter of `talforge version`. This is the
// one init in talforge that does something, and it only paces the collector. The package
// imports only the runtime's own packages, so the runtime initialises it as soon as
// runtime/debug is ready (at each step it initialises the first package by import path whose
// imports are done): after about 350 of the 880 packages, which allocate 2.6 MB, under the
// first collection's 4 MB. TestStartupBudget holds both.
//
// At GOGC=400 the heap grows to five times its live data: a 1,000-node generate keeps about
// 20 MiB live. LimitSmallRuns holds such runs near 80 MiB with a soft memory limit, at almost
// no cost in time. A run whose live data outgrows half the limit would collect without pause
// under it (the runtime spends up to half the CPU keeping a limit), so from the first
// collection that finds that much live data the limit is lifted for good and GOGC alone paces
// the rest.
//
// GOGC or GOMEMLIMIT in the environment leave the runtime's own settings alone.
package gcpolicy

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

const (
	// Percent is the GOGC talforge runs with.
	Percent = 400
	// SmallRunLimit is the soft memory limit of runs whose live heap stays under LiftLimitAbove.
	SmallRunLimit = 80 << 20
	// LiftLimitAbove is the live heap above which the limit is lifted.
	LiftLimitAbove = SmallRunLimit / 2
)

func init() {
	if !environmentDecides() {
		debug.SetGCPercent(Percent)
	}
}

func environmentDecides() bool { return os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" }

// LimitSmallRuns sets the soft memory limit until the live heap outgrows it.
func LimitSmallRuns() {
	if environmentDecides() {
		return
	}

	debug.SetMemoryLimit(SmallRunLimit)

	afterEachGC(func() bool {
		if liveHeap() <= LiftLimitAbove {
			return true
		}

		debug.SetMemoryLimit(math.MaxInt64)

		return false
	})
}

// liveHeap is the heap the last collection marked live.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)

	if s[0].Value.Kind() != metrics.KindUint64 {
		return math.MaxUint64 // unknown to this runtime: lift the limit rather than risk it
	}

	return s[0].Value.Uint64()
}

// afterEachGC calls f after each garbage collection for as long as f returns true. It runs on
// the runtime's cleanup goroutine: an object that nothing references is collected by the next
// cycle, and its cleanup arms the next one.
func afterEachGC(f func() bool) {
	sentinel := &struct{ _ *byte }{} // holds a pointer: never batched by the tiny allocator

	runtime.AddCleanup(sentinel, func(struct{}) {
		if f() {
			afterEachGC(f)
		}
	}, struct{}{})
}
