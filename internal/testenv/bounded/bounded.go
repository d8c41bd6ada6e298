package bounded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Limits bound one child run.
type Limits struct {
	// Wall is the most time the child may take, process start-up included.
	Wall time.Duration
	// Heap is the most heap the child may have in use at any moment (sampled every few
	// milliseconds), TotalAlloc the most it may allocate in all.
	Heap, TotalAlloc uint64
}

// Result is what a child run measured.
type Result struct {
	// Output is what the child's function returned.
	Output string
	// Wall is the function's run time; PeakHeap and TotalAlloc its memory.
	Wall                 time.Duration
	PeakHeap, TotalAlloc uint64
}

const (
	envArg    = "TALFORGE_BOUNDED_ARG"
	envHeap   = "TALFORGE_BOUNDED_HEAP"
	resultTag = "TALFORGE-BOUNDED-RESULT "
)

// Run runs the test named child (which must call [Child]) in a new process of this test
// binary with arg, and fails t when the child exceeds lim, crashes or reports nothing.
func Run(t testing.TB, child, arg string, lim Limits) Result {
	t.Helper()

	ctx, cancel := context.WithTimeout(t.Context(), lim.Wall)
	defer cancel()

	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+child+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), envArg+"="+arg, envHeap+"="+strconv.FormatUint(lim.Heap, 10))

	var stderr strings.Builder

	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	wall := time.Since(start)

	if ctx.Err() != nil {
		t.Fatalf("%s: still running after %v: killed (time bound exceeded)", arg, lim.Wall)
	}

	var res Result

	for _, line := range strings.Split(string(out), "\n") {
		if body, ok := strings.CutPrefix(line, resultTag); ok {
			if jerr := json.Unmarshal([]byte(body), &res); jerr != nil {
				t.Fatalf("%s: unreadable child result %q: %v", arg, body, jerr)
			}
		}
	}

	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == heapExceeded {
		t.Fatalf("%s: heap in use passed %d MiB after %v: stopped (memory bound exceeded)", arg, lim.Heap>>20, wall)
	}

	if err != nil || res.Wall == 0 {
		t.Fatalf("%s: child failed (%v):\n%s\n%s", arg, err, tail(string(out)), tail(stderr.String()))
	}

	if res.TotalAlloc > lim.TotalAlloc {
		t.Errorf("%s: allocated %d MiB, bound %d MiB", arg, res.TotalAlloc>>20, lim.TotalAlloc>>20)
	}

	return res
}

// heapExceeded is the exit code of a child that passed its heap bound.
const heapExceeded = 86

// Child runs fn in the child process [Run] started and reports its result; in any other
// process (a plain `go test`) it skips t.
func Child(t *testing.T, fn func(arg string) string) {
	arg, ok := os.LookupEnv(envArg)
	if !ok {
		t.Skip("runs only as the child of bounded.Run")
	}

	heapLimit, err := strconv.ParseUint(os.Getenv(envHeap), 10, 64)
	if err != nil {
		t.Fatal(err)
	}

	var before runtime.MemStats

	runtime.GC()
	runtime.ReadMemStats(&before)

	peak := make(chan uint64, 1)
	done := make(chan struct{})

	go watch(before.HeapInuse, heapLimit, done, peak)

	start := time.Now()
	out := fn(arg)
	wall := time.Since(start)

	close(done)

	var after runtime.MemStats

	runtime.ReadMemStats(&after)

	data, err := json.Marshal(Result{Output: out, Wall: wall, PeakHeap: <-peak, TotalAlloc: after.TotalAlloc - before.TotalAlloc})
	if err != nil {
		t.Fatal(err)
	}

	fmt.Println(resultTag + string(data))
}

// watch samples the heap in use until done, exiting the process once it passes limit.
func watch(base, limit uint64, done <-chan struct{}, peak chan<- uint64) {
	var (
		m       runtime.MemStats
		highest uint64
	)

	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()

	for {
		runtime.ReadMemStats(&m)

		if m.HeapInuse > base && m.HeapInuse-base > highest {
			highest = m.HeapInuse - base
		}

		if highest > limit {
			fmt.Fprintf(os.Stderr, "heap in use %d MiB passed the bound of %d MiB\n", highest>>20, limit>>20)
			os.Exit(heapExceeded)
		}

		select {
		case <-done:
			peak <- highest
			return
		case <-tick.C:
		}
	}
}

func tail(s string) string {
	if len(s) > 2000 {
		return "..." + s[len(s)-2000:]
	}

	return s
}
