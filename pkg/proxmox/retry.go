// Retrying: the backoff schedule, retried calls, and waiting for PVE tasks and config locks.

package proxmox

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/talforge/talforge/pkg/poll"
)

// Backoff is an exponential retry/poll schedule.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
	Factor  float64
}

func (b Backoff) next(d time.Duration) time.Duration {
	if d == 0 {
		return b.Initial
	}

	n := time.Duration(float64(d) * b.Factor)
	if n > b.Max {
		n = b.Max
	}

	return n
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()

	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retry runs fn until it succeeds, fails permanently, or attempts run out. attempt is
// 0-based so that fn can re-observe state before trying again.
func (e *Executor) retry(ctx context.Context, vm, step string, fn func(attempt int) error) error {
	var (
		err   error
		delay time.Duration
	)

	for attempt := 0; attempt < e.opts.Attempts; attempt++ {
		if err = fn(attempt); err == nil || !Retryable(err) || ctx.Err() != nil {
			return err
		}

		delay = e.opts.Retry.next(delay)
		jittered := delay/2 + time.Duration(rand.Int64N(int64(delay/2)+1)) // jitter only

		e.emit(vm, step, "transient error, retrying in %s: %v", jittered.Round(time.Millisecond), err)

		if serr := sleepCtx(ctx, jittered); serr != nil {
			return fmt.Errorf("%w (last error: %v)", serr, err)
		}
	}

	return fmt.Errorf("giving up after %d attempts: %w", e.opts.Attempts, err)
}

// Wait polls a task until it stops. A task that fails returns a *TaskError carrying the tail of
// its log. Transient polling errors are tolerated. A task that runs for a while is reported
// (Options.Progress, or an Event per report) on start and at least every 15 s.
func (e *Executor) Wait(ctx context.Context, upid string) error {
	if upid == "" {
		return nil // a synchronous answer
	}

	what := "Proxmox task " + taskType(upid)
	progress := e.opts.Progress
	if progress == nil {
		progress = func(p poll.Progress) {
			if p.State == poll.Started || p.State == poll.Waiting {
				e.emit(what, "waiting", "%s", roundSeconds(p.Elapsed))
			}
		}
	}

	var (
		failure int
		failed  *TaskError
	)

	err := poll.Until(ctx, poll.Options{
		What: what, After: 2 * time.Second, Interval: e.opts.Poll.Initial, Factor: e.opts.Poll.Factor, MaxInterval: e.opts.Poll.Max, Progress: progress,
	}, func(ctx context.Context) (bool, string, error) {
		st, err := e.api.TaskStatus(ctx, upid)
		switch {
		case err != nil && ctx.Err() != nil:
			return false, "", err
		case err != nil:
			if !Retryable(err) || failure >= e.opts.Attempts {
				return false, "", fmt.Errorf("polling task %s: %w", upid, err)
			}
			failure++
			return false, "polling: " + err.Error(), nil
		case st.Running:
			failure = 0
			return false, "running", nil
		case st.Succeeded():
			return true, "", nil
		}
		failed = &TaskError{UPID: upid, ExitStatus: st.ExitStatus}
		if lines, lerr := e.api.TaskLog(ctx, upid, 10); lerr == nil {
			failed.LogTail = lines
		}
		return false, "", failed
	})

	switch {
	case err == nil:
		return nil
	case failed != nil:
		return failed
	case ctx.Err() != nil:
		return fmt.Errorf("waiting for task %s: %w", upid, ctx.Err())
	}
	return errors.Unwrap(err) // the check's own error, without poll's "what:" prefix
}

func roundSeconds(d time.Duration) time.Duration { return d.Round(time.Second) }

// afterLock waits until a VM's config lock (e.g. "create") is released and returns the VM as it
// is then: whose it is must be checked again, a lock hides a VM's name and tags.
func (e *Executor) afterLock(ctx context.Context, vmid int) (*VMResource, error) {
	var delay time.Duration

	for {
		vm, err := e.findVM(ctx, vmid)
		if err != nil {
			return nil, err
		}

		if vm == nil {
			return nil, fmt.Errorf("%w: VM %d disappeared while being created (its create task failed); retrying", ErrConnection, vmid)
		}

		if !vm.Locked {
			return vm, nil
		}

		delay = e.opts.Poll.next(delay)
		if err := sleepCtx(ctx, delay); err != nil {
			return nil, err
		}
	}
}
