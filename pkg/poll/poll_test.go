package poll_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/talforge/talforge/pkg/poll"
)

// obs is one scripted check result.
type obs struct {
	status string
	done   bool
	err    error
}

var errBoom = errors.New("boom")

// script returns a Check that gives the results in order (the last one again once they run
// out) and counts its calls. at, when set, runs before call n (1-based) returns.
func script(calls *int, at map[int]func(), results ...obs) poll.Check {
	return func(context.Context) (bool, string, error) {
		*calls++
		if f := at[*calls]; f != nil {
			f()
		}
		r := results[min(*calls, len(results))-1]
		return r.done, r.status, r.err
	}
}

// run runs Until on a fake clock, stepping it by o.Interval whenever Until sleeps, so a
// check number k (0-based) sees the clock at start + k*Interval. No real time passes.
func run(t *testing.T, ctx context.Context, o poll.Options, check poll.Check) ([]poll.Progress, error) {
	t.Helper()
	fc := clocktesting.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	o.Clock = fc
	var got []poll.Progress
	o.Progress = func(p poll.Progress) { got = append(got, p) }
	errc := make(chan error, 1)
	go func() { errc <- poll.Until(ctx, o, check) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-errc:
			return got, err // the channel orders the appends before this read
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("Until did not return")
		}
		// Once ctx ended Until must return without more time passing (a check that cancels
		// does so before Until sleeps again, so this sees it).
		if fc.HasWaiters() && ctx.Err() == nil {
			fc.Step(o.Interval)
		} else {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// render is a compact, comparable form of the reports.
func render(ps []poll.Progress) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "%s %s %q", p.State, p.Elapsed, p.Status)
		if p.Changed {
			b.WriteString(" changed")
		}
		if p.Err != nil {
			fmt.Fprintf(&b, " err=%v", p.Err)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestUntil(t *testing.T) {
	const what = "volume pvc-1: backup backup-1"
	tests := []struct {
		name    string
		o       poll.Options
		results []obs
		// cancelAt cancels the context during that call.
		cancelAt int
		// wantErr is the exact error text ("" = nil); wantIs what it must wrap.
		wantErr   string
		wantIs    []error
		wantCalls int
		want      string
	}{
		{
			name:      "done at once says nothing",
			o:         poll.Options{Interval: 2 * time.Second},
			results:   []obs{{done: true}},
			wantCalls: 1,
		},
		{
			name:      "started and done",
			o:         poll.Options{Interval: 2 * time.Second},
			results:   []obs{{status: "not started"}, {status: "InProgress, 10%"}, {done: true}},
			wantCalls: 3,
			want:      "started 0s \"not started\" changed\ndone 4s \"InProgress, 10%\"\n",
		},
		{
			name:      "a report at least every 15s",
			o:         poll.Options{Interval: 5 * time.Second},
			results:   []obs{{status: "a"}, {status: "a"}, {status: "a"}, {status: "a"}, {status: "b"}, {status: "b"}, {status: "b"}, {status: "b"}, {done: true}},
			wantCalls: 9,
			want:      "started 0s \"a\" changed\nwaiting 15s \"a\"\nwaiting 30s \"b\"\ndone 40s \"b\"\n",
		},
		{
			name:      "a custom Every",
			o:         poll.Options{Interval: time.Second, Every: 2 * time.Second},
			results:   []obs{{status: "a"}, {status: "a"}, {status: "a"}, {status: "a"}, {status: "a"}, {done: true}},
			wantCalls: 6,
			want:      "started 0s \"a\" changed\nwaiting 2s \"a\"\nwaiting 4s \"a\"\ndone 5s \"a\"\n",
		},
		{
			name:      "changes reported as they happen",
			o:         poll.Options{Interval: time.Second, Changes: true},
			results:   []obs{{status: "a"}, {status: "a"}, {status: "b"}, {status: "b"}, {status: "c"}, {done: true}},
			wantCalls: 6,
			want:      "started 0s \"a\" changed\nwaiting 2s \"b\" changed\nwaiting 4s \"c\" changed\ndone 5s \"c\"\n",
		},
		{
			name:      "a change alone is not reported without Changes",
			o:         poll.Options{Interval: time.Second},
			results:   []obs{{status: "a"}, {status: "b"}, {done: true}},
			wantCalls: 3,
			want:      "started 0s \"a\" changed\ndone 2s \"b\"\n",
		},
		{
			name:      "timeout names the last status",
			o:         poll.Options{Interval: 10 * time.Second, Timeout: 30 * time.Second},
			results:   []obs{{status: "not started"}, {status: "InProgress, 40%"}},
			wantCalls: 4,
			wantErr:   what + ": not done after 30s: InProgress, 40%",
			wantIs:    []error{poll.ErrTimeout},
			want: "started 0s \"not started\" changed\nwaiting 20s \"InProgress, 40%\"\n" +
				"failed 30s \"InProgress, 40%\" err=" + what + ": not done after 30s: InProgress, 40%\n",
		},
		{
			name:      "timeout with no status",
			o:         poll.Options{Interval: time.Second, Timeout: time.Second},
			results:   []obs{{}},
			wantCalls: 2,
			wantErr:   what + ": not done after 1s",
			wantIs:    []error{poll.ErrTimeout},
			want:      "started 0s \"\"\nfailed 1s \"\" err=" + what + ": not done after 1s\n",
		},
		{
			name:      "check error",
			o:         poll.Options{Interval: time.Second, Timeout: time.Minute},
			results:   []obs{{status: "a"}, {err: errBoom}},
			wantCalls: 2,
			wantErr:   what + ": boom",
			wantIs:    []error{errBoom},
			want:      "started 0s \"a\" changed\nfailed 1s \"a\" err=" + what + ": boom\n",
		},
		{
			name:      "check error at once says nothing",
			o:         poll.Options{Interval: time.Second},
			results:   []obs{{err: errBoom}},
			wantCalls: 1,
			wantErr:   what + ": boom",
			wantIs:    []error{errBoom},
		},
		{
			name:      "context canceled",
			o:         poll.Options{Interval: time.Second},
			results:   []obs{{status: "a"}, {status: "a"}, {status: "attaching"}},
			cancelAt:  3,
			wantCalls: 3,
			wantErr:   what + ": context canceled (last seen: attaching)",
			wantIs:    []error{context.Canceled},
			want:      "started 0s \"a\" changed\nfailed 2s \"attaching\" err=" + what + ": context canceled (last seen: attaching)\n",
		},
		{
			name: "a check that fails because the context ended reports the context",
			o:    poll.Options{Interval: time.Second},
			// The call canceled under it returns an error; the status stays the previous one.
			results:   []obs{{status: "a"}, {status: "b"}, {err: errBoom}},
			cancelAt:  3,
			wantCalls: 3,
			wantErr:   what + ": context canceled (last seen: b)",
			wantIs:    []error{context.Canceled},
			want:      "started 0s \"a\" changed\nfailed 2s \"b\" err=" + what + ": context canceled (last seen: b)\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			tt.o.What = what
			calls := 0
			got, err := run(t, ctx, tt.o, script(&calls, map[int]func(){tt.cancelAt: cancel}, tt.results...))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("err = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			for _, target := range tt.wantIs {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(%v, %v) = false", err, target)
				}
			}
			if calls != tt.wantCalls {
				t.Errorf("%d checks, want %d", calls, tt.wantCalls)
			}
			if r := render(got); r != tt.want {
				t.Errorf("reports:\n%s\nwant:\n%s", r, tt.want)
			}
		})
	}
}

func TestUntilTimeoutError(t *testing.T) {
	_, err := run(t, t.Context(), poll.Options{What: "x", Interval: time.Second, Timeout: 2 * time.Second},
		func(context.Context) (bool, string, error) { return false, "s", nil })
	var te *poll.TimeoutError
	if !errors.As(err, &te) || te.What != "x" || te.Timeout != 2*time.Second || te.Status != "s" {
		t.Fatalf("err = %#v, want a *TimeoutError for x after 2s with status s", err)
	}
}

func TestUntilEndedContextChecksNever(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := 0
	err := poll.Until(ctx, poll.Options{What: "x"}, script(&calls, nil, obs{done: true}))
	if !errors.Is(err, context.Canceled) || err.Error() != "x: context canceled" || calls != 0 {
		t.Fatalf("err = %v after %d checks, want x: context canceled and no check", err, calls)
	}
}

// TestUntilRealClock runs on the default clock: what production uses.
func TestUntilRealClock(t *testing.T) {
	calls := 0
	start := time.Now()
	err := poll.Until(t.Context(), poll.Options{What: "x", Interval: 5 * time.Millisecond},
		script(&calls, nil, obs{status: "a"}, obs{status: "a"}, obs{done: true}))
	if err != nil || calls != 3 {
		t.Fatalf("err = %v after %d checks, want nil after 3", err, calls)
	}
	if took := time.Since(start); took < 10*time.Millisecond {
		t.Errorf("took %s, want at least two 5ms pauses", took)
	}
}

func TestLines(t *testing.T) {
	tests := []struct {
		p    poll.Progress
		want string
	}{
		{poll.Progress{What: "BackupTarget default available", State: poll.Started, Status: "it does not exist yet"},
			"waiting for BackupTarget default available: it does not exist yet\n"},
		{poll.Progress{What: "Longhorn CRDs established", State: poll.Started}, "waiting for Longhorn CRDs established\n"},
		{poll.Progress{What: "volume v: restore", State: poll.Waiting, Status: "restoring (volume attached)", Elapsed: 45*time.Second + 300*time.Millisecond},
			"still waiting for volume v: restore after 45s: restoring (volume attached)\n"},
		{poll.Progress{What: "volume v: restore", State: poll.Done, Status: "x", Elapsed: 63 * time.Second}, "waited 1m3s for volume v: restore\n"},
		{poll.Progress{What: "volume v: restore", State: poll.Done, Elapsed: 1234567 * time.Microsecond / 10}, "waited 123ms for volume v: restore\n"},
		{poll.Progress{What: "volume v: restore", State: poll.Failed, Status: "x", Elapsed: 5 * time.Minute, Err: errBoom},
			"gave up waiting for volume v: restore after 5m0s\n"},
		{poll.Progress{What: "x", State: 0}, ""},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		poll.Lines(&b)(tt.p)
		if b.String() != tt.want {
			t.Errorf("Lines(%+v) = %q, want %q", tt.p, b.String(), tt.want)
		}
	}
	if poll.Lines(nil) != nil {
		t.Error("Lines(nil) is not nil")
	}
}

// TestUntilLines is the promise end to end: a line when the wait starts, one at least
// every 15 s with the elapsed time, one at the end.
func TestUntilLines(t *testing.T) {
	var b bytes.Buffer
	o := poll.Options{What: "Longhorn healthy at 1.10.2", Interval: 2 * time.Second}
	calls := 0
	check := script(&calls, nil, obs{status: "not rolled out: daemonset/longhorn-manager"}, obs{status: "not rolled out: daemonset/longhorn-manager"},
		obs{status: "not rolled out: daemonset/longhorn-manager"}, obs{status: "not rolled out: daemonset/longhorn-manager"},
		obs{status: "not rolled out: daemonset/longhorn-manager"}, obs{status: "not rolled out: daemonset/longhorn-manager"},
		obs{status: "not rolled out: daemonset/longhorn-manager"}, obs{status: "not rolled out: daemonset/longhorn-manager"},
		obs{status: "replica rebuild running: pvc-1"}, obs{status: "replica rebuild running: pvc-1"},
		obs{status: "replica rebuild running: pvc-1"}, obs{status: "replica rebuild running: pvc-1"},
		obs{status: "replica rebuild running: pvc-1"}, obs{status: "replica rebuild running: pvc-1"},
		obs{status: "replica rebuild running: pvc-1"}, obs{status: "replica rebuild running: pvc-1"}, obs{done: true})
	got, err := run(t, t.Context(), o, check)
	if err != nil {
		t.Fatal(err)
	}
	lines := poll.Lines(&b)
	for _, p := range got {
		lines(p)
	}
	want := "waiting for Longhorn healthy at 1.10.2: not rolled out: daemonset/longhorn-manager\n" +
		"still waiting for Longhorn healthy at 1.10.2 after 16s: replica rebuild running: pvc-1\n" +
		"waited 32s for Longhorn healthy at 1.10.2\n"
	if b.String() != want {
		t.Errorf("lines:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestGrowingInterval: with Factor the pauses grow (1s, 2s, 4s, capped at 5s), measured on the
// fake clock by when each check ran.
func TestGrowingInterval(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	start := fc.Now()
	var at []time.Duration
	check := func(context.Context) (bool, string, error) {
		at = append(at, fc.Since(start))
		return len(at) == 6, "running", nil
	}
	errc := make(chan error, 1)
	go func() {
		errc <- poll.Until(t.Context(), poll.Options{What: "task", Interval: time.Second, Factor: 2, MaxInterval: 5 * time.Second, Clock: fc}, check)
	}()
	for {
		select {
		case err := <-errc:
			if err != nil {
				t.Fatal(err)
			}
			want := []time.Duration{0, 1 * time.Second, 3 * time.Second, 7 * time.Second, 12 * time.Second, 17 * time.Second}
			if fmt.Sprint(at) != fmt.Sprint(want) {
				t.Errorf("checks at %v, want %v", at, want)
			}
			return
		default:
		}
		if fc.HasWaiters() {
			fc.Step(time.Second)
		} else {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// TestHeartbeat: a blocking call is reported at once, every Every while it runs, then done or
// failed with its error.
func TestHeartbeat(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"done", nil, "started 0s\nwaiting 15s\nwaiting 30s\ndone 40s\n"},
		{"failed", errBoom, "started 0s\nwaiting 15s\nwaiting 30s\nfailed 40s err=boom\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc := clocktesting.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
			var b strings.Builder
			release := make(chan struct{})
			errc := make(chan error, 1)
			go func() {
				errc <- poll.Heartbeat(t.Context(), poll.Options{What: "helm install", Clock: fc, Progress: func(p poll.Progress) {
					fmt.Fprintf(&b, "%s %s", p.State, p.Elapsed)
					if p.Err != nil {
						fmt.Fprintf(&b, " err=%v", p.Err)
					}
					b.WriteString("\n")
				}}, func(context.Context) error { <-release; return tc.err })
			}()
			for _, step := range []time.Duration{15 * time.Second, 15 * time.Second, 10 * time.Second} {
				for !fc.HasWaiters() {
					time.Sleep(50 * time.Microsecond)
				}
				fc.Step(step)
			}
			// The last step did not reach a report: release the call at 40s.
			for !fc.HasWaiters() {
				time.Sleep(50 * time.Microsecond)
			}
			close(release)
			if err := <-errc; !errors.Is(err, tc.err) {
				t.Fatalf("Heartbeat returned %v, want %v", err, tc.err)
			}
			if b.String() != tc.want {
				t.Errorf("reports:\n%s\nwant:\n%s", b.String(), tc.want)
			}
		})
	}
}

// TestAfter: a wait is not reported before After, and a wait that ends before it is not
// reported at all.
func TestAfter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		doneAt int // check number that is done
		want   string
	}{
		{"short", 2, ""},
		{"long", 5, "started 2s \"running\" changed\ndone 4s \"running\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			results := make([]obs, tc.doneAt)
			for i := range results {
				results[i] = obs{status: "running", done: i == tc.doneAt-1}
			}
			got, err := run(t, t.Context(), poll.Options{What: "task", Interval: time.Second, After: 2 * time.Second}, script(&calls, nil, results...))
			if err != nil {
				t.Fatal(err)
			}
			if render(got) != tc.want {
				t.Errorf("reports:\n%s\nwant:\n%s", render(got), tc.want)
			}
		})
	}
}
