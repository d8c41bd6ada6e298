package lifecycle_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/lifecycle"
	"github.com/talforge/talforge/pkg/sopsfile"
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

// TestUpAfterAWorkerInstalledBeforeItsControlPlane: a run stopped after a worker took its config
// but before its control plane did leaves a worker that cannot answer, since trustd on a
// configured control plane issues its API certificate. The next plan reports the worker as not
// observed instead of waiting out the API timeout for it (which failed every later up), and up
// installs the control plane, after which the worker comes up with its config: no second apply.
func TestUpAfterAWorkerInstalledBeforeItsControlPlane(t *testing.T) {
	const worker, workerIP = "lab-worker-1", "127.0.71.21"
	l := newLab(t)

	// Stop the first run as its apply phase starts: both VMs run, both nodes are in maintenance.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	opts := l.options()
	opts.OnPhase = func(name string) {
		if name == lifecycle.PhaseApply {
			cancel()
		}
	}
	var ie *lifecycle.InterruptedError
	if _, err := lifecycle.Up(ctx, opts); !errors.As(err, &ie) {
		t.Fatalf("killed up returned %v, want an InterruptedError", err)
	}

	// The worker takes its config, as it did in the run that was stopped (`talosctl apply-config --insecure`).
	cfg, err := sopsfile.DecryptFile(filepath.Join(l.outDir(), generate.NodeConfigFile(worker)))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err = l.env.ApplyInsecure(t.Context(), workerIP, cfg); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("apply the worker's config: %v", err)
		}
	}
	// It answers in maintenance mode until it goes down to install, and then stays down.
	for deadline := time.Now().Add(10 * time.Second); l.env.TalosNode(workerIP).Up(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not go down to install its config", worker)
		}
	}

	plan, err := lifecycle.Plan(t.Context(), l.options())
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	wantPlanned := lifecycle.Step{Stage: lifecycle.PhaseApply, Subject: worker, Action: lifecycle.StepApplyIfChanged}
	if !slices.Contains(plan.Steps, wantPlanned) {
		t.Errorf("plan steps %v lack %v", plan.Steps, wantPlanned)
	}
	for _, n := range plan.Nodes {
		if n.Name == worker && !strings.HasPrefix(n.Action, "not observed: a worker answers once a control plane runs its config") {
			t.Errorf("plan for %s: %q, want it not observed until a control plane runs its config", worker, n.Action)
		}
	}

	res := l.up(t.Context(), l.options())
	l.assertUp()
	if d := lifecycle.StepsDiffer(plan.Steps, res.Steps); d != "" {
		t.Errorf("up did not take the planned steps: %s\nplanned %v\ndone    %v", d, plan.Steps, res.Steps)
	}
	if n := l.env.TalosNode(workerIP).Calls(applyRPC); n != 1 {
		t.Errorf("%s got %d ApplyConfiguration calls, want only the one before up", worker, n)
	}
}
