// Package parallel runs independent pieces of work on a bounded number of goroutines.
package parallel

import (
	"context"
	"runtime"
	"sync"
)

// ForEach calls fn(i) for every i in [0, n) on at most workers goroutines (GOMAXPROCS when
// workers ≤ 0), and returns when all started calls have returned. Once ctx is done no new call
// starts and ForEach returns ctx's error.
func ForEach(ctx context.Context, n, workers int, fn func(i int)) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}

	work := make(chan int)

	var wg sync.WaitGroup

	for range min(workers, max(1, n)) {
		wg.Go(func() {
			for i := range work {
				fn(i)
			}
		})
	}

feed:
	for i := range n {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}

	close(work)
	wg.Wait()

	return ctx.Err()
}
