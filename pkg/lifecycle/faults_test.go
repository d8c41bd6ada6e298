package lifecycle_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/talforge/talforge/pkg/lifecycle"
)

// TestUpConvergesAfterAnInterruptInEachPhase kills `up` (cancels its context, as Ctrl-C does)
// inside each phase of a first run, then runs it again: it converges to the same cluster with
// nothing lost — one VM per node, etcd bootstrapped exactly once, the secrets bundle the
// interrupted run created kept byte for byte — and a third run changes nothing.
func TestUpConvergesAfterAnInterruptInEachPhase(t *testing.T) {
	tests := []struct {
		phase string
		// after is how long into the phase the run is killed.
		after time.Duration
	}{
		{lifecycle.PhaseGenerate, 30 * time.Millisecond},
		{lifecycle.PhaseProvision, 10 * time.Millisecond},
		{lifecycle.PhaseApply, 30 * time.Millisecond},
		{lifecycle.PhaseBootstrap, 5 * time.Millisecond},
		{lifecycle.PhaseLonghorn, 60 * time.Millisecond},  // inside helm install
		{lifecycle.PhaseLonghorn, 300 * time.Millisecond}, // after the chart, waiting for longhorn-manager
	}
	for _, tt := range tests {
		t.Run(tt.phase+"/"+tt.after.String(), func(t *testing.T) {
			l := newLab(t)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			opts := l.options()
			opts.OnPhase = func(name string) {
				if name == tt.phase {
					time.AfterFunc(tt.after, cancel)
				}
			}
			_, err := lifecycle.Up(ctx, opts)
			var ie *lifecycle.InterruptedError
			if !errors.As(err, &ie) {
				t.Fatalf("killed up returned %v, want an InterruptedError", err)
			}
			t.Logf("killed during %s: %v", ie.Phase, err)
			if ie.Phase != tt.phase {
				t.Logf("note: the phase %s finished before the kill landed", tt.phase)
			}
			bundle, _ := os.ReadFile(filepath.Join(l.outDir(), "secrets.sops.yaml"))

			l.up(t.Context(), l.options())
			l.assertUp()
			if bundle != nil && !bytes.Equal(bundle, l.bundle()) {
				t.Error("the re-run replaced the secrets bundle the interrupted run created")
			}
			if l.env.BootstrapCalls() != 1 {
				t.Errorf("etcd Bootstrap was called %d times", l.env.BootstrapCalls())
			}
			if n := len(l.env.PVE.VMs()); n != 2 {
				t.Errorf("%d VMs, want 2 (no duplicate, no orphan)", n)
			}

			before := l.files()
			l.env.PVE.ResetLog()
			applies := l.env.TalosCalls(applyRPC)
			if res := l.up(t.Context(), l.options()); res.Changed() || len(l.env.PVE.MutatingRequests()) > 0 || l.env.TalosCalls(applyRPC) != applies {
				t.Errorf("the run after convergence changed something: %+v", res.Phases)
			}
			if after := l.files(); len(after) != len(before) {
				t.Errorf("files changed: %v -> %v", before, after)
			}
		})
	}
}
