package poll

import (
	"fmt"
	"io"
	"time"
)

// Lines returns a Progress function that writes one plain line per report to w:
//
//	waiting for <what>: <status>
//	still waiting for <what> after 45s: <status>
//	waited 1m3s for <what>
//	gave up waiting for <what> after 5m0s
//
// The reason of a failure is not repeated: it is the error Until returns. A nil w gives nil
// (no reports).
func Lines(w io.Writer) func(Progress) {
	if w == nil {
		return nil
	}
	return func(p Progress) {
		var line string
		switch p.State {
		case Started:
			line = "waiting for " + p.What + withStatus(p.Status)
		case Waiting:
			line = fmt.Sprintf("still waiting for %s after %s%s", p.What, roundElapsed(p.Elapsed), withStatus(p.Status))
		case Done:
			line = fmt.Sprintf("waited %s for %s", roundElapsed(p.Elapsed), p.What)
		case Failed:
			line = fmt.Sprintf("gave up waiting for %s after %s", p.What, roundElapsed(p.Elapsed))
		default:
			return
		}
		// One write per line, so that lines from concurrent waits on one writer stay whole.
		_, _ = io.WriteString(w, line+"\n")
	}
}

func withStatus(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

// roundElapsed keeps lines readable: whole seconds, or milliseconds under a second (tests
// and fast clusters wait that little).
func roundElapsed(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}
