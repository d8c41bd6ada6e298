package parallel

import (
	"context"
	"sync/atomic"
	"testing"
)

func TestForEachRunsEveryIndexOnce(t *testing.T) {
	seen := make([]int32, 1000)

	var running, peak int32

	err := ForEach(context.Background(), len(seen), 3, func(i int) {
		n := atomic.AddInt32(&running, 1)
		for {
			p := atomic.LoadInt32(&peak)
			if n <= p || atomic.CompareAndSwapInt32(&peak, p, n) {
				break
			}
		}

		atomic.AddInt32(&seen[i], 1)
		atomic.AddInt32(&running, -1)
	})
	if err != nil {
		t.Fatal(err)
	}

	for i, s := range seen {
		if s != 1 {
			t.Fatalf("index %d ran %d times", i, s)
		}
	}

	if peak > 3 {
		t.Errorf("%d calls ran at once, want at most 3", peak)
	}
}

func TestForEachStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())

	var calls int32

	err := ForEach(ctx, 1000, 1, func(i int) {
		if atomic.AddInt32(&calls, 1) == 10 {
			cancel()
		}
	})
	if err == nil || calls >= 1000 {
		t.Fatalf("err %v after %d calls", err, calls)
	}
}
