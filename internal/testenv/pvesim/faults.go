package pvesim

import (
	"regexp"
	"sync/atomic"
)

// FaultKind selects what an injected fault does.
type FaultKind int

const (
	// FaultHTTPError answers with Status (default 500) and Message without
	// processing the request.
	FaultHTTPError FaultKind = iota
	// FaultDropBefore closes the connection before the request is processed.
	FaultDropBefore
	// FaultDropAfter processes the request (it takes effect) and then closes
	// the connection without answering: the client cannot know it happened.
	FaultDropAfter
	// FaultLockTimeout makes the request fail on the VM config lock: a
	// synchronous endpoint answers 500, a task-starting endpoint returns a
	// UPID whose task fails with "can't lock file ... got timeout".
	FaultLockTimeout
	// FaultTaskFailure lets the task started by the request fail with
	// Message (exit status) after logging TaskLog; nothing changes state.
	FaultTaskFailure
	// FaultTaskWarnings lets the task succeed with exit status "WARNINGS: 1".
	FaultTaskWarnings
	// FaultActor only runs Act (another actor changes something just before the request
	// arrives); the request is then processed normally.
	FaultActor
)

func (k FaultKind) String() string {
	switch k {
	case FaultHTTPError:
		return "http-error"
	case FaultDropBefore:
		return "drop-before"
	case FaultDropAfter:
		return "drop-after"
	case FaultLockTimeout:
		return "lock-timeout"
	case FaultTaskFailure:
		return "task-failure"
	case FaultTaskWarnings:
		return "task-warnings"
	case FaultActor:
		return "actor"
	}
	return "unknown"
}

// Fault describes an injected failure.
type Fault struct {
	Kind FaultKind
	// Method restricts the fault to one HTTP method ("" = any).
	Method string
	// Path is a regular expression matched (anchored) against the request
	// path below /api2/json, e.g. `/nodes/[^/]+/qemu`.
	Path string
	// Nth fires on the Nth matching request (1-based; 0 = the first).
	Nth int
	// Count is how many consecutive matching requests fire (default 1;
	// negative = every matching request from Nth on).
	Count int
	// Status and Message of a FaultHTTPError, or the task exit status of a
	// FaultTaskFailure.
	Status  int
	Message string
	// TaskLog lines precede "TASK ERROR: <Message>" in a failed task's log.
	TaskLog []string
	// Act, if set, runs when the fault fires, before the request is processed (and before a
	// dropped connection or an error answer): the race in which someone else renames,
	// retags or re-disks a VM between a client's check and its change. It runs without the
	// server lock held and may call Modify, Seed and the other accessors.
	Act func()
}

type faultRule struct {
	Fault
	re    *regexp.Regexp
	seen  int
	fired atomic.Int64
}

// FaultHandle reports how often a fault fired.
type FaultHandle struct{ r *faultRule }

// Fired is the number of requests the fault affected.
func (h FaultHandle) Fired() int { return int(h.r.fired.Load()) }

// InjectFault registers a fault. It panics on an invalid Path regexp.
func (s *Server) InjectFault(f Fault) FaultHandle {
	if f.Nth <= 0 {
		f.Nth = 1
	}
	if f.Count == 0 {
		f.Count = 1
	}
	r := &faultRule{Fault: f, re: regexp.MustCompile("^(?:" + f.Path + ")$")}
	s.mu.Lock()
	s.faults = append(s.faults, r)
	s.mu.Unlock()
	return FaultHandle{r}
}

// ClearFaults removes all injected faults.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	s.faults = nil
	s.mu.Unlock()
}

// takeFault returns the fault that fires for this request, if any.
func (s *Server) takeFault(method, path string) *faultRule {
	s.mu.Lock()
	defer s.mu.Unlock()
	var hit *faultRule
	for _, r := range s.faults {
		if (r.Method != "" && r.Method != method) || !r.re.MatchString(path) {
			continue
		}
		r.seen++
		if r.seen < r.Nth || (r.Count > 0 && r.seen >= r.Nth+r.Count) {
			continue
		}
		if hit == nil {
			hit = r
			r.fired.Add(1)
		}
	}
	return hit
}
