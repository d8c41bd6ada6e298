package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/talforge/talforge/pkg/poll"
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
	// soon: look again after PollInterval/soonDivisor (see there).
	soon bool
}

// soonDivisor: while a node refuses connections (booting, installing, rebooting), etcd is
// starting after an accepted Bootstrap or its other members are joining, kube-apiserver is
// not up yet or nodes are still registering, wait looks again after PollInterval/soonDivisor.
// A refused connect costs nothing, and the etcd check (three short calls per control plane)
// and the node list go over connections that are already open; each of these waits ends the
// moment the thing is up: with the 2 s default it is seen 0.125 s after it happened on average
// instead of 1 s, on the critical path of `up` (issue 16).
const soonDivisor = 8

// wait polls step until it is done, fails, or the timeout passes. It prints a line whenever the observation
// changes and a "still waiting" line every Options.ProgressEvery; a step that printed its observation itself
// (reported) gets no line for it. The loop and its timing are poll.Until's.
func (r *Runner) wait(ctx context.Context, who string, what string, timeout time.Duration, timeoutErr func(lastSeen string) *Error,
	step func(ctx context.Context) stepResult,
) error {
	var (
		lastSeen string
		reported bool
		soon     bool
		stepErr  error
	)

	err := poll.Until(ctx, poll.Options{
		What:     what,
		Interval: r.opts.PollInterval,
		Timeout:  timeout,
		Every:    r.opts.ProgressEvery,
		Changes:  true,
		Soon:     r.opts.PollInterval / soonDivisor,
		Quick:    func() bool { return soon },
		Progress: func(p poll.Progress) {
			if r.opts.Waits != nil {
				r.opts.Waits(who, p)
			}
			switch {
			case reported, p.State != poll.Started && p.State != poll.Waiting:
				// The step printed this observation itself; the end of a wait is the caller's to tell.
			case p.Changed:
				r.progress.printf(who, "%s: %s", what, p.Status)
			case p.State == poll.Waiting:
				r.progress.printf(who, "%s: still %s after %s", what, p.Status, p.Elapsed.Round(time.Second))
			}
		},
	}, func(ctx context.Context) (bool, string, error) {
		res := step(ctx)
		if res.err != nil {
			stepErr = res.err

			return false, "", res.err
		}

		if !res.done {
			lastSeen, reported, soon = res.seen, res.reported, res.soon
		}

		return res.done, res.seen, nil
	})

	switch {
	case err == nil:
		return nil
	case stepErr != nil:
		return stepErr
	case errors.Is(err, poll.ErrTimeout):
		e := timeoutErr(lastSeen)
		e.Err = fmt.Errorf("%w after %s", ErrTimeout, timeout)

		return e
	default:
		// ctx ended (poll.Until returns nothing else).
		e := timeoutErr(lastSeen)
		e.Err = ctx.Err()

		return e
	}
}
