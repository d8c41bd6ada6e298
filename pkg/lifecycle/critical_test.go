package lifecycle

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestCriticalPathLine: the line up ends with names every phase that matters in order, the node
// each per-node phase waited for, and the longest phase with its share.
func TestCriticalPathLine(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name    string
		phases  []PhaseResult
		want    string
		longest string
	}{
		{
			name: "first up",
			phases: []PhaseResult{
				{Name: PhaseValidate, Took: 1 * ms}, {Name: PhaseGenerate, Took: 15 * ms}, {Name: PhasePlan, Took: 4 * ms},
				{Name: PhaseProvision, Took: 60 * ms, Node: "worker-9"}, {Name: PhaseApply, Took: 900 * ms, Node: "worker-3"},
				{Name: PhaseBootstrap, Took: 240 * ms, Node: "cp-1"}, {Name: PhaseLonghorn, Took: 980 * ms},
			},
			want:    "critical path: provision 0.1s (worker-9) → apply 0.9s (worker-3) → bootstrap 0.2s (cp-1) → longhorn 1.0s; longest phase: longhorn (45%)",
			longest: PhaseLonghorn,
		},
		{
			name:    "nothing to do",
			phases:  []PhaseResult{{Name: PhaseValidate, Took: 10 * ms}, {Name: PhaseGenerate, Took: 30 * ms}, {Name: PhasePlan, Took: 60 * ms}},
			want:    "critical path: validate 0.0s → generate 0.0s → plan 0.1s; longest phase: plan (60%)",
			longest: PhasePlan,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp := criticalPath(tc.phases)
			if got := cp.String(); got != tc.want {
				t.Errorf("line\n got %s\nwant %s", got, tc.want)
			}
			if cp.Longest != tc.longest || len(cp.Steps) != len(tc.phases) {
				t.Errorf("longest %q, %d steps", cp.Longest, len(cp.Steps))
			}
			data, err := json.Marshal(cp)
			if err != nil || !strings.Contains(string(data), `"longest":"`+tc.longest+`"`) {
				t.Errorf("JSON %s: %v", data, err)
			}
		})
	}
	if criticalPath(nil) != nil || (*CriticalPath)(nil).String() != "" {
		t.Error("no phases: want no critical path")
	}
}
