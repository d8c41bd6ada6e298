package lifecycle

import (
	"strings"
	"testing"
	"time"

	"github.com/talforge/talforge/pkg/poll"
)

// TestWaitLines: a wait shows on the progress stream as plain lines in logs, and as one status
// line rewritten in place on a terminal, cleared before the next ordinary line.
func TestWaitLines(t *testing.T) {
	now := func() time.Time { return time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC) }
	reports := []poll.Progress{
		{What: "Longhorn settings applied", Status: "replica-count is 3, want 2", State: poll.Started},
		{What: "Longhorn settings applied", Status: "replica-count is 3, want 2", State: poll.Waiting, Elapsed: 15 * time.Second},
		{What: "Longhorn settings applied", State: poll.Done, Elapsed: 17 * time.Second},
	}
	for _, tc := range []struct {
		name string
		live bool
		want string
	}{
		{"log", false, "longhorn   cluster  waiting for Longhorn settings applied: replica-count is 3, want 2  (0.0s)\n" +
			"longhorn   cluster  still waiting for Longhorn settings applied: replica-count is 3, want 2  (15.0s)\n" +
			"longhorn   cluster  1.10.2 unchanged  (0.0s)\n"},
		{"terminal", true, clearLine + "longhorn   cluster  waiting for Longhorn settings applied: replica-count is 3, want 2  (0.0s)" +
			clearLine + "longhorn   cluster  still waiting for Longhorn settings applied: replica-count is 3, want 2  (15.0s)" +
			clearLine + "longhorn   cluster  1.10.2 unchanged  (0.0s)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			rep := newReporter(&b, now, nil)
			rep.live = tc.live
			p := rep.phase(PhaseLonghorn)
			for _, r := range reports {
				rep.wait(rep.current(), "cluster", r)
			}
			p.done("1.10.2 unchanged")
			if b.String() != tc.want {
				t.Errorf("got\n%q\nwant\n%q", b.String(), tc.want)
			}
		})
	}
}
