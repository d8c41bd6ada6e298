package poll

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"
)

// Check observes once. done ends the wait; status says what it saw while not done ("state
// attaching", "InProgress, 40%") and ends up in progress lines and in the timeout error; err
// ends the wait at once (the situation cannot resolve by itself).
type Check func(ctx context.Context) (done bool, status string, err error)

// Options describe one wait.
type Options struct {
	// What is what the wait is for, as progress lines and errors name it
	// ("volume pvc-1: restore", "Longhorn healthy at 1.10.2").
	What string
	// Interval is the pause between the end of one check and the start of the next
	// (default 2s).
	Interval time.Duration
	// Factor, above 1, grows the pause after each check up to MaxInterval (Proxmox tasks:
	// most end in a fraction of a second, some take minutes).
	Factor      float64
	MaxInterval time.Duration
	// Timeout bounds the wait; 0 waits until ctx ends. It is read after each check: a check
	// in progress is never interrupted by it.
	Timeout time.Duration
	// Clock measures the interval, the elapsed time and the timeout (default the real clock).
	Clock clock.Clock
	// Progress receives the wait's progress (nil: none). It is called on the goroutine that
	// called Until, between checks.
	Progress func(Progress)
	// Every is the longest time without a progress report while the wait goes on
	// (default 15s). Reports come after checks, so an Interval longer than Every spaces
	// them by Interval.
	Every time.Duration
	// After delays the first report until the wait has lasted this long (0: at the first check
	// that is not done), so that short waits that are common (a PVE task of 50 ms) say nothing.
	After time.Duration
	// Changes also reports each change of the status as it is seen (State Waiting with
	// Changed), not only every Every.
	Changes bool
	// Soon, when set and above 0, is the pause after a check for which Quick reports true
	// instead of Interval: an observation that is cheap to repeat and whose outcome can change
	// any moment (a connection refused: the server answers the moment it is up).
	Soon time.Duration
	// Quick is asked after each check that was not done whether the next one comes after Soon.
	Quick func() bool
	// Wake, when set, ends a pause early: a value on it means the thing waited for changed (a
	// watch event), so the next check runs at once instead of up to Interval later.
	Wake <-chan struct{}
}

// State is the kind of a progress report.
type State int

// States of a wait. A wait whose first check is done reports nothing at all: there was no
// waiting to speak of.
const (
	// Started: the first check was not done, the wait begins.
	Started State = iota + 1
	// Waiting: Every passed since the last report, or (with Options.Changes) the status changed.
	Waiting
	// Done: the check reported done after the wait had started.
	Done
	// Failed: the wait started and ended without the check being done (timeout, end of the
	// context, or the check's error).
	Failed
)

func (s State) String() string {
	switch s {
	case Started:
		return "started"
	case Waiting:
		return "waiting"
	case Done:
		return "done"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Progress is one report of a wait.
type Progress struct {
	What string
	// Status is the check's latest status.
	Status string
	// Elapsed is the time since the first check started.
	Elapsed time.Duration
	State   State
	// Changed reports that Status differs from the previous check's status (for Started:
	// that it is not empty).
	Changed bool
	// Err is why a wait Failed; the same error Until returns.
	Err error
}

// ErrTimeout is wrapped by the error Until returns when Options.Timeout passed.
var ErrTimeout = errors.New("timed out")

// TimeoutError is the error Until returns when Options.Timeout passed before the check was
// done. errors.Is(err, ErrTimeout) holds for it.
type TimeoutError struct {
	What    string
	Timeout time.Duration
	// Status is the check's last status.
	Status string
}

func (e *TimeoutError) Error() string {
	if e.Status == "" {
		return fmt.Sprintf("%s: not done after %s", e.What, e.Timeout)
	}
	return fmt.Sprintf("%s: not done after %s: %s", e.What, e.Timeout, e.Status)
}

// Is makes errors.Is(err, ErrTimeout) hold.
func (e *TimeoutError) Is(target error) bool { return target == ErrTimeout }

func (o Options) withDefaults() Options {
	if o.Interval <= 0 {
		o.Interval = 2 * time.Second
	}
	if o.Every <= 0 {
		o.Every = 15 * time.Second
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return o
}

// Until calls check until it reports done (nil), returns an error (that error, wrapped with
// What), Options.Timeout passes (a *TimeoutError with the last status) or ctx ends (ctx.Err()
// wrapped, with the last status). The first check runs at once unless ctx has already ended.
func Until(ctx context.Context, o Options, check Check) error {
	o = o.withDefaults()
	w := &waiter{o: o, check: check, start: o.Clock.Now()}
	w.lastReport = w.start

	loopCtx, stop := context.WithCancel(ctx)
	defer stop()
	// Sliding: the pause starts when a check returns, so a slow check (a Talos API call that
	// runs into its own timeout) is never followed by another one at once.
	wait.BackoffUntilWithContext(loopCtx, func(ctx context.Context) {
		if w.step(ctx) {
			stop()
		}
	}, &pause{clock: o.Clock, d: o.Interval, factor: o.Factor, max: o.MaxInterval, soon: o.Soon, quick: o.Quick, wake: o.Wake, done: loopCtx.Done()}, true)

	if w.done || w.err != nil {
		return w.err
	}
	// The loop ended because ctx did.
	w.err = fmt.Errorf("%s: %w", o.What, ctx.Err())
	if w.status != "" {
		w.err = fmt.Errorf("%s: %w (last seen: %s)", o.What, ctx.Err(), w.status)
	}
	w.report(o.Clock.Now(), Failed, false)
	return w.err
}

// waiter is the state of one Until.
type waiter struct {
	o     Options
	check Check
	start time.Time

	started    bool
	status     string
	lastReport time.Time
	done       bool
	err        error
}

// step runs the check once and reports whether the wait is over.
func (w *waiter) step(ctx context.Context) bool {
	done, status, err := w.check(ctx)
	now := w.o.Clock.Now()
	switch {
	case err != nil && ctx.Err() != nil:
		// The context ended under the check: that, not the check's error, is why it failed.
		return true
	case err != nil:
		w.err = fmt.Errorf("%s: %w", w.o.What, err)
		w.report(now, Failed, false)
		return true
	case done:
		w.done = true
		w.report(now, Done, false)
		return true
	}

	changed := status != w.status
	w.status = status
	switch {
	case !w.started && now.Sub(w.start) < w.o.After:
	case !w.started:
		w.started = true
		w.report(now, Started, status != "")
	case changed && w.o.Changes:
		w.report(now, Waiting, true)
	case now.Sub(w.lastReport) >= w.o.Every:
		w.report(now, Waiting, changed)
	}

	if w.o.Timeout > 0 && now.Sub(w.start) >= w.o.Timeout {
		w.err = &TimeoutError{What: w.o.What, Timeout: w.o.Timeout, Status: status}
		w.report(now, Failed, false)
		return true
	}
	return false
}

// report sends one progress report. The end of a wait that never started is not reported:
// the caller says what happened, and an instant success is no news.
func (w *waiter) report(now time.Time, s State, changed bool) {
	if (s == Done || s == Failed) && !w.started {
		return
	}
	w.lastReport = now
	if w.o.Progress == nil {
		return
	}
	p := Progress{What: w.o.What, Status: w.status, Elapsed: now.Sub(w.start), State: s, Changed: changed}
	if s == Failed {
		p.Err = w.err
	}
	w.o.Progress(p)
}

// pause is a wait.BackoffManager whose timer comes from the injected clock: the managers wait
// offers with a clock are deprecated (NewJitteredBackoffManager), and the DelayFunc.Timer(clock)
// meant to replace them only feeds wait's unexported loop. This is
// jitteredBackoffManagerImpl.Backoff (apimachinery pkg/util/wait/backoff.go) without the jitter.
type pause struct {
	clock  clock.Clock
	d      time.Duration
	factor float64
	max    time.Duration
	t      clock.Timer
	grown  bool
	// soon replaces d for one pause when quick says so (Options.Soon, Options.Quick).
	soon  time.Duration
	quick func() bool
	// wake ends a pause early (Options.Wake); done ends the goroutine that listens to it.
	wake <-chan struct{}
	done <-chan struct{}
}

// Backoff implements wait.BackoffManager. BackoffUntilWithContext drains the timer before it
// asks for the next one, so Reset is safe.
func (p *pause) Backoff() clock.Timer {
	if p.grown && p.factor > 1 {
		p.d = min(time.Duration(float64(p.d)*p.factor), max(p.max, p.d))
	}
	p.grown = true
	d := p.d
	if p.soon > 0 && p.quick != nil && p.quick() {
		d = min(p.soon, d)
	}
	if p.t == nil {
		p.t = p.clock.NewTimer(d)
	} else {
		p.t.Reset(d)
	}
	if p.wake == nil {
		return p.t
	}
	return newWakeTimer(p.t, p.wake, p.done)
}

// wakeTimer fires when its timer does or when wake delivers, whichever comes first.
type wakeTimer struct {
	clock.Timer
	c chan time.Time
}

func newWakeTimer(t clock.Timer, wake, done <-chan struct{}) *wakeTimer {
	w := &wakeTimer{Timer: t, c: make(chan time.Time, 1)}
	go func() {
		select {
		case now := <-t.C():
			w.c <- now
		case <-wake:
			w.c <- time.Now()
		case <-done:
		}
	}()
	return w
}

// C implements clock.Timer.
func (w *wakeTimer) C() <-chan time.Time { return w.c }

// Heartbeat runs fn, a call that blocks for as long as it takes (a Helm install with its hooks),
// and reports it like a wait: Started at once, Waiting at least every Options.Every, then Done or
// Failed. Interval, Timeout and Changes are not used: fn bounds itself. It returns fn's error.
func Heartbeat(ctx context.Context, o Options, fn func(ctx context.Context) error) error {
	o = o.withDefaults()
	start := o.Clock.Now()
	report := func(s State, err error) {
		if o.Progress != nil {
			o.Progress(Progress{What: o.What, Elapsed: o.Clock.Since(start), State: s, Err: err})
		}
	}
	report(Started, nil)
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	tick := o.Clock.NewTimer(o.Every)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				report(Failed, err)
				return err
			}
			report(Done, nil)
			return nil
		case <-tick.C():
			report(Waiting, nil)
			tick.Reset(o.Every)
		}
	}
}
