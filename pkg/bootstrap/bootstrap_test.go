package bootstrap_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"

	"github.com/talforge/talforge/pkg/bootstrap"
)

const (
	applyMethod     = machine.MachineService_ApplyConfiguration_FullMethodName
	bootstrapMethod = machine.MachineService_Bootstrap_FullMethodName
)

var haNodes = []string{"cp-1", "cp-2", "cp-3", "worker-1", "worker-2", "worker-3"}

func actions(results []bootstrap.NodeResult) map[string]bootstrap.Action {
	out := map[string]bootstrap.Action{}
	for _, r := range results {
		out[r.Node] = r.Action
	}

	return out
}

func wantActions(t *testing.T, results []bootstrap.NodeResult, want map[string]bootstrap.Action) {
	t.Helper()

	got := actions(results)
	for node, action := range want {
		if got[node] != action {
			t.Errorf("node %s: action %q, want %q (all: %v)", node, got[node], action, got)
		}
	}
}

func all(action bootstrap.Action) map[string]bootstrap.Action {
	out := map[string]bootstrap.Action{}
	for _, n := range haNodes {
		out[n] = action
	}

	return out
}

func assertNoSecrets(t *testing.T, r rendered, texts ...string) {
	t.Helper()

	for _, secret := range secretValues(r.bundle) {
		for _, text := range texts {
			if strings.Contains(text, secret) {
				t.Fatalf("output contains a secret value (%.6s…)", secret)
			}
		}
	}
}

// TestHAProfileFromMaintenance brings the HA profile (3 control planes + 3 workers, rendered by talforge's
// generator) up on emulated nodes from maintenance mode, then runs everything again and checks that the
// second run changes nothing and never calls Bootstrap.
func TestHAProfileFromMaintenance(t *testing.T) {
	r := renderProfile(t, "ha")
	e := emulate(t, r, emulateOptions{subnet: 1})
	ctx := t.Context()

	kubeconfig := []byte("apiVersion: v1\nkind: Config\ncurrent-context: emulated\n")
	e.etcd.SetKubeconfig(kubeconfig)

	var out syncBuffer

	// A dry run touches nothing.
	dry := e.runner(t, &out, bootstrap.Options{DryRun: true})

	results, err := dry.Apply(ctx)
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, out.String())
	}

	wantActions(t, results, all(bootstrap.ActionWouldInstall))

	for node, calls := range e.calls(applyMethod) {
		if calls != 0 {
			t.Fatalf("dry run sent %d ApplyConfiguration calls to %s", calls, node)
		}
	}

	run := e.runner(t, &out, bootstrap.Options{})

	results, err = run.Apply(ctx)
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, out.String())
	}

	wantActions(t, results, all(bootstrap.ActionInstalled))

	for _, name := range haNodes {
		if !bytes.Equal(e.nodes[name].ActiveConfig(), r.configs[name]) {
			t.Errorf("node %s does not run its generated config", name)
		}
	}

	etcd, err := run.Bootstrap(ctx)
	if err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, out.String())
	}

	if etcd.Action != bootstrap.EtcdBootstrapped || etcd.Node != "cp-1" {
		t.Fatalf("bootstrap result %+v, want bootstrapped on cp-1", etcd)
	}

	if err := run.TalosHealth(ctx); err != nil {
		t.Fatalf("talos health: %v\n%s", err, out.String())
	}

	if members := e.etcd.EtcdMembers(); !slices.Equal(sorted(members), []string{"cp-1", "cp-2", "cp-3"}) {
		t.Fatalf("etcd members %v", members)
	}

	got, err := run.Kubeconfig(ctx)
	if err != nil {
		t.Fatal(err)
	}

	if !bytes.Equal(got, kubeconfig) {
		t.Fatalf("kubeconfig %q, want %q", got, kubeconfig)
	}

	if err := run.KubeHealth(ctx, &fakeKube{nodes: haNodes}); err != nil {
		t.Fatalf("kube health: %v", err)
	}

	if got := e.etcd.BootstrapCalls(); got != 1 {
		t.Fatalf("Bootstrap reached nodes %d times, want 1", got)
	}

	if got := e.nodes["cp-1"].Calls(bootstrapMethod); got != 1 {
		t.Fatalf("cp-1 got %d Bootstrap calls, want 1", got)
	}

	// Run again: nothing to do, and no Bootstrap call.
	applyCalls := e.calls(applyMethod)
	bootstrapCalls := e.calls(bootstrapMethod)
	again := e.runner(t, &out, bootstrap.Options{})

	results, err = again.Apply(ctx)
	if err != nil {
		t.Fatalf("second apply: %v", err)
	}

	wantActions(t, results, all(bootstrap.ActionUnchanged))

	for _, r := range results {
		if r.Diff != "" {
			t.Errorf("node %s: unchanged node has a diff:\n%s", r.Node, r.Diff)
		}
	}

	etcd, err = again.Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}

	if etcd.Action != bootstrap.EtcdAlreadyBootstrapped || !slices.Equal(etcd.Members, []string{"cp-1", "cp-2", "cp-3"}) {
		t.Fatalf("second bootstrap %+v, want already bootstrapped with three members", etcd)
	}

	if err := again.Health(ctx, &fakeKube{nodes: haNodes}); err != nil {
		t.Fatal(err)
	}

	if got := e.calls(applyMethod); !mapsEqual(got, applyCalls) {
		t.Fatalf("second run sent configs: ApplyConfiguration calls %v, before %v", got, applyCalls)
	}

	if got := e.calls(bootstrapMethod); !mapsEqual(got, bootstrapCalls) {
		t.Fatalf("second run called Bootstrap: %v, before %v", got, bootstrapCalls)
	}

	assertNoSecrets(t, r, out.String())
	t.Logf("progress:\n%s", out.String())
}

// TestInterruptedRunResumes: a run cancelled (Ctrl-C) in the middle, with nodes rebooting in the middle of
// the apply call, is finished by the next run; nothing is applied twice that took, etcd is bootstrapped once.
func TestInterruptedRunResumes(t *testing.T) {
	r := renderProfile(t, "ha")
	e := emulate(t, r, emulateOptions{subnet: 2, bootDelay: 300 * time.Millisecond})

	e.nodes["cp-2"].InterruptNext(applyMethod, true)      // config taken, answer lost
	e.nodes["worker-1"].InterruptNext(applyMethod, false) // call lost, node reboots into maintenance
	e.nodes["worker-2"].RefuseFor(time.Second)            // not reachable at first

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	var out syncBuffer

	cancelOn := &cancelWriter{w: &out, trigger: "cp-1: config applied in maintenance mode", cancel: cancel}
	interrupted := newRunner(t, e.input(r.configs, r.talosconfig), cancelOn, bootstrap.Options{})

	_, err := interrupted.Apply(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: err = %v, want context.Canceled", err)
	}

	var be *bootstrap.Error
	if !errors.As(err, &be) || be.Node == "" {
		t.Fatalf("cancelled run error does not name a node: %v", err)
	}

	// The next run finishes the job.
	run := e.runner(t, &out, bootstrap.Options{})

	results, err := run.Apply(t.Context())
	if err != nil {
		t.Fatalf("resumed apply: %v\n%s", err, out.String())
	}

	for _, res := range results {
		if res.Action != bootstrap.ActionInstalled && res.Action != bootstrap.ActionUnchanged {
			t.Errorf("node %s: action %q after resume", res.Node, res.Action)
		}

		if !bytes.Equal(e.nodes[res.Node].ActiveConfig(), r.configs[res.Node]) {
			t.Errorf("node %s does not run its config after resume", res.Node)
		}
	}

	if got := e.nodes["cp-2"].Calls(applyMethod); got != 1 {
		t.Errorf("cp-2 took its config in the interrupted call but got %d ApplyConfiguration calls, want 1", got)
	}

	if got := e.nodes["worker-1"].Calls(applyMethod); got != 2 {
		t.Errorf("worker-1 lost the first call and should get exactly one more: %d calls, want 2", got)
	}

	if _, err := run.Bootstrap(t.Context()); err != nil {
		t.Fatal(err)
	}

	if _, err := run.Bootstrap(t.Context()); err != nil {
		t.Fatal(err)
	}

	if err := run.TalosHealth(t.Context()); err != nil {
		t.Fatal(err)
	}

	if got := e.etcd.BootstrapCalls(); got != 1 {
		t.Fatalf("Bootstrap reached nodes %d times, want 1", got)
	}
}

// TestWrongCARefused: nodes that run another cluster's config (another CA) are refused with an error naming
// each node, and nothing is sent to them.
func TestWrongCARefused(t *testing.T) {
	theirs := renderProfile(t, "ha")
	ours := renderProfile(t, "ha")
	e := emulate(t, theirs, emulateOptions{subnet: 3, configured: theirs.configs})

	var out syncBuffer

	run := newRunner(t, e.input(ours.configs, ours.talosconfig), &out, bootstrap.Options{APITimeout: 5 * time.Second})

	_, err := run.Apply(t.Context())
	if err == nil {
		t.Fatal("apply to another cluster's nodes succeeded")
	}

	for _, name := range haNodes {
		if !strings.Contains(err.Error(), "node "+name+" (") {
			t.Errorf("error does not name node %s:\n%v", name, err)
		}
	}

	var be *bootstrap.Error
	if !errors.As(err, &be) || !strings.Contains(be.Err.Error(), "neither in maintenance mode nor with this cluster's CA") || be.Hint == "" {
		t.Fatalf("error = %#v, want a CA mismatch with a hint", be)
	}

	// Another cluster's node is adopted, not wiped: import comes first, a reset only after.
	if i := strings.Index(be.Hint, "talforge import"); i < 0 || strings.Index(be.Hint, "reset") < i {
		t.Errorf("the hint does not point to talforge import before any reset: %s", be.Hint)
	}

	if errors.Is(err, bootstrap.ErrTimeout) {
		t.Fatal("a CA mismatch cannot resolve by waiting, yet the run waited for the timeout")
	}

	for node, calls := range e.calls(applyMethod) {
		if calls != 0 {
			t.Fatalf("%d ApplyConfiguration calls reached %s", calls, node)
		}
	}

	_, err = run.Bootstrap(t.Context())
	if !errors.As(err, &be) || !strings.HasPrefix(be.Node, "cp-") || be.Phase != bootstrap.PhaseBootstrap || errors.Is(err, bootstrap.ErrTimeout) {
		t.Fatalf("bootstrap against another cluster: %v; want an immediate CA mismatch error naming a control plane", err)
	}

	err = run.TalosHealth(t.Context())
	if !errors.As(err, &be) || be.Phase != bootstrap.PhaseHealthAPId || errors.Is(err, bootstrap.ErrTimeout) {
		t.Fatalf("health against another cluster: %v; want an immediate CA mismatch error", err)
	}

	if e.etcd.BootstrapCalls() != 0 {
		t.Fatal("Bootstrap reached a node of another cluster")
	}
}

// TestBootstrapNeverCalledWhenEtcdHasMembers: etcd bootstrapped through another control plane (by hand)
// means talforge must not call Bootstrap at all; and while a control plane is unreachable talforge cannot
// prove etcd is empty, so it does not bootstrap either.
func TestBootstrapNeverCalledWhenEtcdHasMembers(t *testing.T) {
	r := renderProfile(t, "ha")

	t.Run("members elsewhere", func(t *testing.T) {
		e := emulate(t, r, emulateOptions{subnet: 4, configured: r.configs})

		var out syncBuffer

		// Someone bootstrapped cp-2: a Runner whose first control plane is cp-2 does exactly that.
		byHand := e.input(r.configs, r.talosconfig)
		byHand.Nodes[0], byHand.Nodes[1] = byHand.Nodes[1], byHand.Nodes[0]

		if _, err := newRunner(t, byHand, &out, bootstrap.Options{}).Bootstrap(t.Context()); err != nil {
			t.Fatal(err)
		}

		res, err := e.runner(t, &out, bootstrap.Options{}).Bootstrap(t.Context())
		if err != nil {
			t.Fatal(err)
		}

		if res.Action != bootstrap.EtcdAlreadyBootstrapped {
			t.Fatalf("action %q, want already bootstrapped", res.Action)
		}

		if got := e.nodes["cp-1"].Calls(bootstrapMethod); got != 0 {
			t.Fatalf("cp-1 got %d Bootstrap calls although etcd had members", got)
		}

		if e.etcd.BootstrapCalls() != 1 || e.etcd.ConflictingBootstraps() != 0 {
			t.Fatalf("bootstrap calls %d, conflicting %d", e.etcd.BootstrapCalls(), e.etcd.ConflictingBootstraps())
		}
	})

	t.Run("control plane unreachable", func(t *testing.T) {
		e := emulate(t, r, emulateOptions{subnet: 5, configured: r.configs})
		e.nodes["cp-3"].RefuseFor(time.Minute)

		var out syncBuffer

		_, err := e.runner(t, &out, bootstrap.Options{BootstrapTimeout: time.Second}).Bootstrap(t.Context())

		var be *bootstrap.Error
		if !errors.As(err, &be) || be.Phase != bootstrap.PhaseBootstrap || !errors.Is(err, bootstrap.ErrTimeout) {
			t.Fatalf("err = %v, want a bootstrap timeout", err)
		}

		if !strings.Contains(be.LastSeen, "cp-3: connection refused") {
			t.Fatalf("last seen %q does not name the unreachable control plane", be.LastSeen)
		}

		if e.etcd.BootstrapCalls() != 0 {
			t.Fatal("bootstrapped while a control plane could not be asked")
		}
	})
}

// TestStuckInMaintenance: a node that never leaves maintenance mode gives a timeout error naming it, while
// the other nodes finish.
func TestStuckInMaintenance(t *testing.T) {
	r := renderProfile(t, "ha")
	e := emulate(t, r, emulateOptions{subnet: 6})
	e.nodes["worker-2"].SetStuckInMaintenance(true)

	var out syncBuffer

	results, err := e.runner(t, &out, bootstrap.Options{APITimeout: 3 * time.Second}).Apply(t.Context())

	var be *bootstrap.Error
	if !errors.As(err, &be) {
		t.Fatalf("err = %v, want *bootstrap.Error", err)
	}

	if be.Node != "worker-2" || be.Phase != bootstrap.PhaseWaitConfigured || !errors.Is(err, bootstrap.ErrTimeout) {
		t.Fatalf("error names node %q phase %q (%v); want worker-2, %q, timeout", be.Node, be.Phase, err, bootstrap.PhaseWaitConfigured)
	}

	msg := err.Error()
	for _, want := range []string{"node worker-2 (127.0.6.5:", "wait for configured mode", "timed out", "maintenance mode", "install"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q:\n%s", want, msg)
		}
	}

	want := all(bootstrap.ActionInstalled)
	delete(want, "worker-2")
	wantActions(t, results, want)
	t.Logf("error:\n%v", err)
}

// TestConfiguredNodes covers configured nodes: redacted diffs, dry run, staged mode and role mismatch.
func TestConfiguredNodes(t *testing.T) {
	r := renderProfile(t, "ha")
	e := emulate(t, r, emulateOptions{subnet: 7, configured: r.configs})

	desired := map[string][]byte{}
	for k, v := range r.configs {
		desired[k] = v
	}

	newToken := "zzzzzz.0123456789zzzzzz"
	desired["cp-1"] = replaceOnce(t, replaceOnce(t, r.configs["cp-1"], "time.cloudflare.com", "time.example.org"), r.bundle.TrustdInfo.Token, newToken)
	desired["cp-2"] = replaceOnce(t, r.configs["cp-2"], r.bundle.TrustdInfo.Token, newToken)

	var out syncBuffer

	results, err := newRunner(t, e.input(desired, r.talosconfig), &out, bootstrap.Options{DryRun: true}).Apply(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	want := all(bootstrap.ActionUnchanged)
	want["cp-1"], want["cp-2"] = bootstrap.ActionWouldApply, bootstrap.ActionWouldApply
	wantActions(t, results, want)

	diffs := map[string]string{}
	for _, res := range results {
		diffs[res.Node] = res.Diff
	}

	for _, s := range []string{"--- live\n+++ desired\n", "-        - time.cloudflare.com", "+        - time.example.org", "redacted values differ too"} {
		if !strings.Contains(diffs["cp-1"], s) {
			t.Errorf("cp-1 diff lacks %q:\n%s", s, diffs["cp-1"])
		}
	}

	if !strings.Contains(diffs["cp-2"], "only redacted values differ") {
		t.Errorf("cp-2 differs only in a secret; diff:\n%s", diffs["cp-2"])
	}

	assertNoSecrets(t, r, diffs["cp-1"], diffs["cp-2"], out.String())
	t.Logf("cp-1 diff:\n%s", diffs["cp-1"])

	if strings.Contains(diffs["cp-1"]+out.String(), newToken) {
		t.Fatal("the new token is printed")
	}

	if e.nodes["cp-1"].Calls(applyMethod) != 0 {
		t.Fatal("dry run applied")
	}

	// Staged: the node keeps running its config until the next reboot; a re-run sees nothing to do.
	results, err = newRunner(t, e.input(desired, r.talosconfig), &out, bootstrap.Options{Mode: bootstrap.ModeStaged}).Apply(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	want["cp-1"], want["cp-2"] = bootstrap.ActionApplied, bootstrap.ActionApplied
	wantActions(t, results, want)

	if !bytes.Equal(e.nodes["cp-1"].ActiveConfig(), r.configs["cp-1"]) {
		t.Fatal("staged apply changed the running config")
	}

	results, err = newRunner(t, e.input(desired, r.talosconfig), &out, bootstrap.Options{}).Apply(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	wantActions(t, results, all(bootstrap.ActionUnchanged))

	if res := results[0]; !strings.Contains(res.Details, "staged") {
		t.Fatalf("cp-1 details %q do not mention the pending staged config", res.Details)
	}

	// A control-plane config for a node that runs as a worker is refused.
	mismatch := e.input(desired, r.talosconfig)
	mismatch.Nodes[3].Role = mismatch.Nodes[0].Role
	mismatch.Nodes[3].Config = desired["cp-3"]

	_, err = newRunner(t, mismatch, &out, bootstrap.Options{}).Apply(t.Context())

	var be *bootstrap.Error
	if !errors.As(err, &be) || be.Node != "worker-1" || !strings.Contains(be.Err.Error(), "refusing to send a controlplane config to a node that runs as worker") {
		t.Fatalf("err = %v, want a role mismatch on worker-1", err)
	}

	if e.nodes["worker-1"].Calls(applyMethod) != 0 {
		t.Fatal("a config of the wrong role reached worker-1")
	}
}

// TestAutoApplyWaitsForReboot: when a node answers an AUTO apply with a reboot, Apply returns only once the
// node runs the new config.
func TestAutoApplyWaitsForReboot(t *testing.T) {
	r := renderProfile(t, "ha")
	e := emulate(t, r, emulateOptions{subnet: 11, configured: r.configs, autoReboots: true, bootDelay: 300 * time.Millisecond})

	desired := map[string][]byte{}
	for k, v := range r.configs {
		desired[k] = v
	}

	desired["worker-2"] = replaceOnce(t, r.configs["worker-2"], "time.cloudflare.com", "time.example.org")

	var out syncBuffer

	results, err := newRunner(t, e.input(desired, r.talosconfig), &out, bootstrap.Options{}).Apply(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	want := all(bootstrap.ActionUnchanged)
	want["worker-2"] = bootstrap.ActionApplied
	wantActions(t, results, want)

	if !bytes.Equal(e.nodes["worker-2"].ActiveConfig(), desired["worker-2"]) {
		t.Fatal("Apply returned before worker-2 rebooted into its new config")
	}

	if !strings.Contains(out.String(), "worker-2: rebooted and runs the new config") {
		t.Fatalf("progress does not report the reboot:\n%s", out.String())
	}
}

// TestHealthPhases checks what each health phase waits for and whom its errors name.
func TestHealthPhases(t *testing.T) {
	r := renderProfile(t, "ha")
	e := emulate(t, r, emulateOptions{subnet: 8, configured: r.configs})

	var out syncBuffer

	short := bootstrap.Options{HealthTimeout: 500 * time.Millisecond}

	// etcd never bootstrapped.
	err := e.runner(t, &out, short).TalosHealth(t.Context())

	var be *bootstrap.Error
	if !errors.As(err, &be) || be.Phase != bootstrap.PhaseHealthEtcd || !strings.Contains(be.LastSeen, "cp-1: etcd not running") {
		t.Fatalf("err = %v, want an etcd phase error listing control planes without etcd", err)
	}

	run := e.runner(t, &out, bootstrap.Options{})
	if _, err := run.Bootstrap(t.Context()); err != nil {
		t.Fatal(err)
	}

	if err := run.TalosHealth(t.Context()); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		kube     *fakeKube
		phase    bootstrap.Phase
		node     string
		lastSeen string
	}{
		{"apiserver down", &fakeKube{versionE: errors.New("dial tcp 10.20.0.10:6443: connect: connection refused")}, bootstrap.PhaseHealthAPI, "", "connection refused"},
		{"one node missing", &fakeKube{nodes: []string{"cp-1", "cp-2", "cp-3", "worker-1", "worker-2"}}, bootstrap.PhaseHealthNodes, "worker-3", "worker-3: not registered"},
		{"all registered", &fakeKube{nodes: haNodes}, "", "", ""},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.runner(t, &out, short).KubeHealth(t.Context(), tt.kube)
			if tt.phase == "" {
				if err != nil {
					t.Fatal(err)
				}

				return
			}

			var be *bootstrap.Error
			if !errors.As(err, &be) {
				t.Fatalf("err = %v, want *bootstrap.Error", err)
			}

			if be.Phase != tt.phase || be.Node != tt.node || !strings.Contains(be.LastSeen, tt.lastSeen) {
				t.Fatalf("error phase %q node %q last seen %q; want %q %q %q", be.Phase, be.Node, be.LastSeen, tt.phase, tt.node, tt.lastSeen)
			}

			if tt.phase == bootstrap.PhaseHealthAPI && !strings.Contains(be.Hint, "VIP 10.20.0.10") {
				t.Fatalf("apiserver hint does not mention the VIP: %s", be.Hint)
			}
		})
	}
}

// TestBootstrapHealthy checks that apid is checked on every node while etcd starts, and which
// error BootstrapHealthy reports when one of the two waits fails.
func TestBootstrapHealthy(t *testing.T) {
	r := renderProfile(t, "ha")

	// etcd takes a second to start: far longer than six apid checks take on a busy machine.
	const etcdStart = time.Second

	t.Run("apid while etcd starts", func(t *testing.T) {
		e := emulate(t, r, emulateOptions{subnet: 12, configured: r.configs, etcdStartDelay: etcdStart})

		var out syncBuffer

		res, err := e.runner(t, &out, bootstrap.Options{}).BootstrapHealthy(t.Context())
		if err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}

		if res.Action != bootstrap.EtcdBootstrapped || res.Node != "cp-1" {
			t.Fatalf("result %+v, want etcd bootstrapped on cp-1", res)
		}

		log := out.String()
		apid := strings.Index(log, "health: apid answers on all 6 nodes")
		etcd := strings.Index(log, "cp-1: etcd bootstrapped")
		healthy := strings.Index(log, "health: etcd healthy, members cp-1, cp-2, cp-3")

		if apid < 0 || etcd < 0 || healthy < 0 {
			t.Fatalf("progress lacks the apid, bootstrap or etcd health line:\n%s", log)
		}

		if apid > etcd {
			t.Fatalf("apid was checked after etcd started, not while it started:\n%s", log)
		}

		if healthy < etcd {
			t.Fatalf("etcd health reported before etcd started:\n%s", log)
		}
	})

	// Control planes join etcd on their own once the first member runs (talosnode JoinDelay);
	// the health wait looks again after PollInterval/8 while they do, not after a whole
	// PollInterval.
	t.Run("members that join are looked at again soon", func(t *testing.T) {
		e := emulate(t, r, emulateOptions{subnet: 18, configured: r.configs, etcdStartDelay: 10 * time.Millisecond, joinDelay: 1500 * time.Millisecond})

		var out syncBuffer

		const interval = 8 * time.Second

		start := time.Now()

		if _, err := e.runner(t, &out, bootstrap.Options{PollInterval: interval}).BootstrapHealthy(t.Context()); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}

		// etcd is seen running after one pause of interval/8 (1 s) and the joins after one
		// or two more: about 2 s in all. One pause of a whole interval would make it 9 s.
		if took := time.Since(start); took >= interval*3/4 {
			t.Fatalf("BootstrapHealthy took %s with a %s poll interval: the etcd waits did not look again soon\n%s",
				took.Round(time.Millisecond), interval, out.String())
		}

		if !strings.Contains(out.String(), "etcd not running") {
			t.Fatalf("the etcd health wait never saw a member still joining, so this test proves nothing:\n%s", out.String())
		}
	})

	t.Run("a node without apid", func(t *testing.T) {
		e := emulate(t, r, emulateOptions{subnet: 13, configured: r.configs, etcdStartDelay: etcdStart})
		e.nodes["worker-3"].RefuseFor(time.Minute)

		var out syncBuffer

		res, err := e.runner(t, &out, bootstrap.Options{HealthTimeout: 2 * etcdStart}).BootstrapHealthy(t.Context())

		var be *bootstrap.Error
		if !errors.As(err, &be) || be.Phase != bootstrap.PhaseHealthAPId || be.Node != "worker-3" {
			t.Fatalf("err = %v, want an apid error naming worker-3\n%s", err, out.String())
		}

		// etcd was bootstrapped all the same, and the caller is told so.
		if res == nil || res.Action != bootstrap.EtcdBootstrapped || e.etcd.BootstrapCalls() != 1 {
			t.Fatalf("result %+v with %d Bootstrap calls, want etcd bootstrapped once", res, e.etcd.BootstrapCalls())
		}
	})

	t.Run("a control plane unreachable", func(t *testing.T) {
		e := emulate(t, r, emulateOptions{subnet: 14, configured: r.configs, etcdStartDelay: etcdStart})
		e.nodes["cp-2"].RefuseFor(time.Minute)

		var out syncBuffer

		// apid's wait would take a minute: Bootstrap's error ends both.
		res, err := e.runner(t, &out, bootstrap.Options{BootstrapTimeout: etcdStart, HealthTimeout: time.Minute}).BootstrapHealthy(t.Context())

		var be *bootstrap.Error
		if !errors.As(err, &be) || be.Phase != bootstrap.PhaseBootstrap || res != nil {
			t.Fatalf("result %+v, err = %v; want only the bootstrap error\n%s", res, err, out.String())
		}

		if e.etcd.BootstrapCalls() != 0 {
			t.Fatal("Bootstrap was called while a control plane was unreachable")
		}
	})
}

// TestDryRunWithoutConfiguredControlPlane: workers that installed before their control planes did (a run
// interrupted between the two) cannot answer until a control plane runs its config, since trustd issues
// their API certificate. A dry run reports them instead of waiting out the API timeout, and the real run
// that follows converges. With a configured control plane, a silent worker is still waited for.
func TestDryRunWithoutConfiguredControlPlane(t *testing.T) {
	r := renderProfile(t, "ha")

	workers := map[string][]byte{}
	for name, cfg := range r.configs {
		if strings.HasPrefix(name, "worker-") {
			workers[name] = cfg
		}
	}

	t.Run("workers installed, control planes in maintenance", func(t *testing.T) {
		e := emulate(t, r, emulateOptions{subnet: 15, configured: workers, startDelay: time.Millisecond})

		var out syncBuffer

		// Waiting out this timeout would fail the dry run.
		results, err := e.runner(t, &out, bootstrap.Options{DryRun: true, APITimeout: 20 * time.Second}).Apply(t.Context())
		if err != nil {
			t.Fatalf("dry run: %v\n%s", err, out.String())
		}

		wantActions(t, results, map[string]bootstrap.Action{
			"cp-1": bootstrap.ActionWouldInstall, "cp-2": bootstrap.ActionWouldInstall, "cp-3": bootstrap.ActionWouldInstall,
			"worker-1": bootstrap.ActionAwaitsControlPlane, "worker-2": bootstrap.ActionAwaitsControlPlane, "worker-3": bootstrap.ActionAwaitsControlPlane,
		})

		if !strings.Contains(out.String(), "worker-1: connection refused: not waiting: a worker's Talos API answers once a control plane runs its config") {
			t.Errorf("progress does not say why worker-1 is not waited for:\n%s", out.String())
		}

		results, err = e.runner(t, &out, bootstrap.Options{}).Apply(t.Context())
		if err != nil {
			t.Fatalf("apply after the dry run: %v\n%s", err, out.String())
		}

		wantActions(t, results, map[string]bootstrap.Action{
			"cp-1": bootstrap.ActionInstalled, "cp-2": bootstrap.ActionInstalled, "cp-3": bootstrap.ActionInstalled,
			"worker-1": bootstrap.ActionUnchanged, "worker-2": bootstrap.ActionUnchanged, "worker-3": bootstrap.ActionUnchanged,
		})

		for name := range workers {
			if got := e.nodes[name].Calls(applyMethod); got != 0 {
				t.Errorf("%s runs its config already but got %d ApplyConfiguration calls", name, got)
			}
		}
	})

	t.Run("a silent worker beside configured control planes", func(t *testing.T) {
		e := emulate(t, r, emulateOptions{subnet: 16, configured: r.configs})
		e.nodes["worker-3"].RefuseFor(time.Minute)

		var out syncBuffer

		_, err := e.runner(t, &out, bootstrap.Options{DryRun: true, APITimeout: time.Second}).Apply(t.Context())

		var be *bootstrap.Error
		if !errors.As(err, &be) || be.Node != "worker-3" || !errors.Is(err, bootstrap.ErrTimeout) {
			t.Fatalf("err = %v, want worker-3 waited for until the API timeout\n%s", err, out.String())
		}
	})
}

func TestNewRejectsBadInput(t *testing.T) {
	r := renderProfile(t, "ha")
	e := emulate(t, r, emulateOptions{subnet: 9})

	tests := []struct {
		name   string
		mutate func(*bootstrap.Cluster)
		want   string
	}{
		{"role and config disagree", func(c *bootstrap.Cluster) { c.Nodes[0].Config = r.configs["worker-1"] }, "node cp-1: machine config is for a worker but the node is a controlplane"},
		{"VIP as a node address", func(c *bootstrap.Cluster) { c.Nodes[1].IP = c.VIP }, "node cp-2: its address 10.20.0.10 is the VIP"},
		{"no control plane", func(c *bootstrap.Cluster) { c.Nodes = c.Nodes[3:] }, "no control plane"},
		{"talosconfig without certificate", func(c *bootstrap.Cluster) {
			c.Talosconfig = []byte("context: x\ncontexts:\n  x:\n    endpoints: [1.2.3.4]\n")
		}, "needs a CA, a client certificate and a key"},
		{"duplicate node", func(c *bootstrap.Cluster) { c.Nodes[1].Name = "cp-1" }, "node cp-1: listed twice"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.input(r.configs, r.talosconfig)
			tt.mutate(&c)

			_, err := bootstrap.New(c, bootstrap.Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}

	if _, err := bootstrap.ParseMode("reboot"); err == nil || !strings.Contains(err.Error(), "auto, no-reboot, staged") {
		t.Fatalf("ParseMode(reboot) = %v", err)
	}
}

func replaceOnce(t *testing.T, data []byte, old, replacement string) []byte {
	t.Helper()

	if !bytes.Contains(data, []byte(old)) {
		t.Fatalf("test setup: %q not in the config", old)
	}

	return bytes.Replace(data, []byte(old), []byte(replacement), 1)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)

	return s
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}

	for k, v := range a {
		if b[k] != v {
			return false
		}
	}

	return true
}

// cancelWriter cancels a run when a progress line contains trigger: a Ctrl-C at a known point.
type cancelWriter struct {
	w       *syncBuffer
	trigger string
	cancel  context.CancelFunc
	once    sync.Once
}

func (c *cancelWriter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), c.trigger) {
		c.once.Do(c.cancel)
	}

	return c.w.Write(p)
}
