package lifecycle

import (
	"fmt"
	"io"

	"github.com/talforge/talforge/pkg/poll"
	"github.com/talforge/talforge/pkg/restore"
)

// clearLine returns a terminal's cursor to the start of the line and clears it.
const clearLine = "\r\033[K"

// wait reports a stage's wait on the progress stream: a line when it starts and at least every
// 15 s while it goes on, with what it waits for and for how long. In live mode (a terminal) the
// line is a status line rewritten in place and cleared when the wait ends; in logs each report
// is a plain line. How the wait ended is the phase's and the node's lines to say.
func (r *reporter) wait(phase, subject string, p poll.Progress) {
	var msg string
	switch p.State {
	case poll.Started:
		msg = "waiting for " + p.What
	case poll.Waiting:
		msg = "still waiting for " + p.What
	default:
		if r.live {
			r.mu.Lock()
			r.clearStatus()
			r.mu.Unlock()
		}
		return
	}
	if p.Status != "" {
		msg += ": " + p.Status
	}
	if !r.live {
		r.line(phase, subject, p.Elapsed, "%s", msg)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.w, "%s%-9s  %-*s  %s  (%s)", clearLine, phase, r.width, subject, msg, formatDuration(p.Elapsed))
	r.status = true
}

// clearStatus removes a live status line before a line is written; r.mu is held.
func (r *reporter) clearStatus() {
	if r.status {
		_, _ = io.WriteString(r.w, clearLine)
		r.status = false
	}
}

// waits returns the progress function for the waits of the phase running now, on subject
// ("cluster" for the cluster as a whole).
func (r *run) waits(subject string) func(poll.Progress) {
	return func(p poll.Progress) {
		r.rep.wait(r.rep.current(), subject, p)
	}
}

// talosWaits is waits for the Talos runner, which names the node a wait is for.
func (r *run) talosWaits(subject string, p poll.Progress) {
	if subject == "" {
		subject = "cluster"
	}
	r.rep.wait(r.rep.current(), subject, p)
}

// restoreClient connects to the cluster's Longhorn for backups and restores: details on the
// detail stream, waits on the progress stream.
func (r *run) restoreClient(kubeconfig []byte) (*restore.Client, error) {
	o := r.opts.Restore
	o.Log = prefixWriter{r.opts.Detail, "  "}
	o.Progress = r.waits("cluster")
	return restore.New(kubeconfig, o)
}
