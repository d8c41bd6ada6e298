package lifecycle

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// reporter prints one line per phase and per node: "<phase>  <subject>  <message>  (<elapsed>)".
// Lines come from several goroutines; each is written whole.
type reporter struct {
	mu    sync.Mutex
	w     io.Writer
	now   func() time.Time
	width int
	// live: w is a terminal, waits show as one status line rewritten in place.
	live bool
	// status: a live status line is on the screen.
	status bool
	// phaseName is the phase running now, to which waits are attributed.
	phaseName string
}

func newReporter(w io.Writer, now func() time.Time, names []string) *reporter {
	width := len("cluster")
	for _, n := range names {
		width = max(width, len(n))
	}
	return &reporter{w: w, now: now, width: width}
}

func (r *reporter) line(phase, subject string, took time.Duration, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clearStatus()
	fmt.Fprintf(r.w, "%-9s  %-*s  %s  (%s)\n", phase, r.width, subject, fmt.Sprintf(format, args...), formatDuration(took))
}

func (r *reporter) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clearStatus()
	fmt.Fprintf(r.w, format+"\n", args...)
}

// formatDuration rounds for people: 0.4s, 12.3s, 2m05s.
func formatDuration(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	d = d.Round(time.Second)
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

// formatAge is how old something is, for people: 40s, 5m, 3h, 2d.
func formatAge(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// formatBytes is a size in binary units, for people: 512 B, 1.0 GiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// phase times one phase and remembers, per subject, when the stage last reported on it.
type phase struct {
	r     *reporter
	name  string
	start time.Time

	mu   sync.Mutex
	last map[string]time.Time
}

func (r *reporter) phase(name string) *phase {
	r.mu.Lock()
	r.phaseName = name
	r.mu.Unlock()
	return &phase{r: r, name: name, start: r.now(), last: map[string]time.Time{}}
}

// current is the name of the phase running now.
func (r *reporter) current() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.phaseName
}

// seen records that the stage reported on subject now.
func (p *phase) seen(subject string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last[subject] = p.r.now()
}

// lastNode is the one of nodes the stage reported on last ("" when it reported on none of
// them): in a phase whose nodes work at once, the node the phase waited for.
func (p *phase) lastNode(nodes []string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var last string
	var at time.Time
	for _, n := range nodes {
		if t, ok := p.last[n]; ok && (last == "" || t.After(at)) {
			last, at = n, t
		}
	}
	return last
}

// elapsed is the phase's running time.
func (p *phase) elapsed() time.Duration { return p.r.now().Sub(p.start) }

// node prints a subject's line; its time is when the stage last reported on it (or now).
func (p *phase) node(subject, format string, args ...any) {
	p.mu.Lock()
	at, ok := p.last[subject]
	p.mu.Unlock()
	if !ok {
		at = p.r.now()
	}
	p.r.line(p.name, subject, at.Sub(p.start), format, args...)
}

// done prints the phase's summary line and returns its duration.
func (p *phase) done(format string, args ...any) time.Duration {
	took := p.elapsed()
	p.r.line(p.name, "cluster", took, format, args...)
	return took
}

// subjectWriter forwards a stage's progress lines ("<subject>: ...") to the detail writer and
// records when each subject was last reported on.
type subjectWriter struct {
	p      *phase
	detail io.Writer
	mu     sync.Mutex
	buf    bytes.Buffer
}

func (w *subjectWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.Reset()
			w.buf.WriteString(line)
			break
		}
		if subject, _, ok := strings.Cut(line, ": "); ok {
			w.p.seen(subject)
		}
		if _, err := io.WriteString(w.detail, "  "+line); err != nil {
			return len(b), err
		}
	}
	return len(b), nil
}

// setPhase attributes later lines to another phase.
func (w *subjectWriter) setPhase(p *phase) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.p = p
}
