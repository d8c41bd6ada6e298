package bootstrap

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// progress serialises lines from concurrent node workers so each line stays whole.
type progress struct {
	mu  sync.Mutex
	out io.Writer
}

func (p *progress) printf(who, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()

	if who == "" {
		who = "cluster"
	}

	fmt.Fprintf(p.out, "%s: %s\n", who, fmt.Sprintf(format, args...))
}

// stepResult is one observation of a wait loop.
type stepResult struct {
	done bool
	// seen describes what was observed ("connection refused", "stage maintenance").
	seen string
	// err stops the wait at once (the situation cannot resolve by itself).
	err error
	// reported: the step already printed this observation.
	reported bool
}

// wait polls step until it is done, fails, or the timeout passes. It prints a line whenever the observation
// changes and a "still waiting" line every Options.ProgressEvery.
func (r *Runner) wait(ctx context.Context, who string, what string, timeout time.Duration, timeoutErr func(lastSeen string) *Error,
	step func(ctx context.Context) stepResult,
) error {
	start := time.Now()
	deadline := start.Add(timeout)

	var (
		lastSeen    string
		lastPrinted = start
	)

	for {
		res := step(ctx)
		if res.err != nil {
			return res.err
		}

		if res.done {
			return nil
		}

		now := time.Now()

		switch {
		case res.reported:
			lastPrinted = now
		case res.seen != lastSeen:
			r.progress.printf(who, "%s: %s", what, res.seen)

			lastPrinted = now
		case now.Sub(lastPrinted) >= r.opts.ProgressEvery:
			r.progress.printf(who, "%s: still %s after %s", what, res.seen, now.Sub(start).Round(time.Second))

			lastPrinted = now
		}

		lastSeen = res.seen

		if now.After(deadline) {
			e := timeoutErr(lastSeen)
			e.Err = fmt.Errorf("%w after %s", ErrTimeout, timeout)

			return e
		}

		select {
		case <-ctx.Done():
			e := timeoutErr(lastSeen)
			e.Err = ctx.Err()

			return e
		case <-time.After(r.opts.PollInterval):
		}
	}
}
