// Where the time of an up went: the critical path through its phases.

package lifecycle

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// CriticalPath says where the time of a run went. Up's phases run one after the other (each
// needs what the one before made), so every phase is on the path; within a phase the nodes
// work at once, and the node that finished last is the phase's critical chain.
type CriticalPath struct {
	// Steps are the phases in the order they ran.
	Steps []CriticalStep `json:"steps"`
	// Longest is the phase that took longest; Share is its part of Total (0 to 1).
	Longest string  `json:"longest"`
	Share   float64 `json:"longestShare"`
	// Total is the sum of the phases' times.
	Total time.Duration `json:"tookNs"`
}

// CriticalStep is one phase on the critical path.
type CriticalStep struct {
	Phase string        `json:"phase"`
	Took  time.Duration `json:"tookNs"`
	// Node is the node that finished the phase last, for phases that work on the nodes at once.
	Node string `json:"node,omitempty"`
}

// criticalPath builds the CriticalPath of phases (nil for none).
func criticalPath(phases []PhaseResult) *CriticalPath {
	if len(phases) == 0 {
		return nil
	}
	cp := &CriticalPath{}
	for _, p := range phases {
		cp.Steps = append(cp.Steps, CriticalStep{Phase: p.Name, Took: p.Took, Node: p.Node})
		cp.Total += p.Took
	}
	longest := slices.MaxFunc(cp.Steps, func(a, b CriticalStep) int { return cmp.Compare(a.Took, b.Took) })
	cp.Longest = longest.Phase
	if cp.Total > 0 {
		cp.Share = float64(longest.Took) / float64(cp.Total)
	}
	return cp
}

// String is the line up prints at its end, e.g. "critical path: provision 0.1s (cp-2) →
// apply 0.9s (worker-3) → bootstrap 0.2s (cp-1) → longhorn 1.0s; longest phase: longhorn
// (45%)". Phases under 1% of the run are left out of the chain: they are not worth reading.
func (c *CriticalPath) String() string {
	if c == nil {
		return ""
	}
	var chain []string
	for _, s := range c.Steps {
		if c.Total > 0 && s.Took*100 < c.Total && s.Phase != c.Longest {
			continue
		}
		step := s.Phase + " " + formatDuration(s.Took)
		if s.Node != "" {
			step += " (" + s.Node + ")"
		}
		chain = append(chain, step)
	}
	return fmt.Sprintf("critical path: %s; longest phase: %s (%.0f%%)", strings.Join(chain, " → "), c.Longest, 100*c.Share)
}
