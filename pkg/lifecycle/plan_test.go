package lifecycle_test

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/talforge/talforge/internal/testenv/pvesim"
	"github.com/talforge/talforge/pkg/lifecycle"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/proxmox"
)

// TestUpTakesExactlyThePlannedSteps holds Terraform's contract between plan and apply: on a
// cluster with changes pending in every stage (an empty Proxmox: VMs to create and start, nodes to
// install, etcd to bootstrap, Longhorn to install), and then on the running cluster after a
// profile edit (a VM to update, a node config to apply, Longhorn to converge), up takes exactly
// the steps plan listed, and plans them with the same function.
func TestUpTakesExactlyThePlannedSteps(t *testing.T) {
	l := newLab(t)

	check := func(name string, wantStages ...string) {
		t.Helper()
		plan, err := lifecycle.Plan(t.Context(), l.options())
		if err != nil {
			t.Fatalf("%s: plan: %v", name, err)
		}
		stages := map[string]bool{}
		for _, s := range plan.Steps {
			stages[s.Stage] = true
		}
		for _, st := range wantStages {
			if !stages[st] {
				t.Errorf("%s: the plan has no %s step: %v", name, st, plan.Steps)
			}
		}
		res := l.up(t.Context(), l.options())
		if d := lifecycle.StepsDiffer(plan.Steps, res.Steps); d != "" {
			t.Errorf("%s: up did not take the planned steps: %s\nplanned %v\ndone    %v", name, d, plan.Steps, res.Steps)
		}
		if res.Plan == nil || lifecycle.StepsDiffer(plan.Steps, res.Plan.Steps) != "" {
			t.Errorf("%s: up planned differently from plan: %v vs %v", name, res.Plan, plan.Steps)
		}
		t.Logf("%s: planned and took %v", name, res.Steps)
	}

	check("from nothing", lifecycle.PhaseProvision, lifecycle.PhaseApply, lifecycle.PhaseBootstrap, lifecycle.PhaseLonghorn)
	if l.env.BootstrapCalls() != 1 {
		t.Errorf("etcd bootstrapped %d times", l.env.BootstrapCalls())
	}
	// Long waits show on the progress stream, not only with --verbose: Helm's install with its
	// hooks is reported as it starts.
	if want := regexp.MustCompile(`(?m)^longhorn\s+cluster\s+waiting for helm install longhorn 1\.10\.2 \(hooks included\)\s+\(\d+\.\ds\)$`); !want.MatchString(l.out.String()) {
		t.Errorf("progress lacks %s:\n%s", want, l.out.String())
	}

	data, err := os.ReadFile(l.proj.Profile)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.NewReplacer("memory: 4096", "memory: 6144", "nameservers: [127.0.71.1]", "nameservers: [127.0.71.1, 9.9.9.9]",
		`cron: "0 3 * * *"`, `cron: "0 4 * * *"`).Replace(string(data))
	if err := os.WriteFile(l.proj.Profile, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	check("after an edit", lifecycle.PhaseProvision, lifecycle.PhaseApply, lifecycle.PhaseLonghorn)

	// Longhorn's UI writes a Setting directly, and longhorn-manager re-reads the chart's
	// ConfigMap only when it changes: up must write the profile's value back itself.
	dyn := dynamic.NewForConfigOrDie(l.env.Kube.Config)
	settings := dyn.Resource(longhorn.SettingGVR).Namespace(longhorn.Namespace)
	patch := []byte(`{"value":"3"}`)
	if _, err := settings.Patch(t.Context(), "default-replica-count", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	check("after a Setting changed in Longhorn's UI", lifecycle.PhaseLonghorn)
	if u, err := settings.Get(t.Context(), "default-replica-count", metav1.GetOptions{}); err != nil || u.Object["value"] != "2" {
		t.Errorf("default-replica-count after up = %v (%v), want the profile's 2", u.Object["value"], err)
	}

	plan, err := lifecycle.Plan(t.Context(), l.options())
	if err != nil || len(plan.Steps) != 0 || plan.Changes {
		t.Errorf("plan after up: %v, steps %v", err, plan.Steps)
	}
}

func TestStepsDiffer(t *testing.T) {
	apply := lifecycle.Step{Stage: lifecycle.PhaseApply, Subject: "cp-1", Action: lifecycle.StepApply}
	maybe := lifecycle.Step{Stage: lifecycle.PhaseApply, Subject: "cp-1", Action: lifecycle.StepApplyIfChanged}
	create := lifecycle.Step{Stage: lifecycle.PhaseProvision, Subject: "cp-1", Action: lifecycle.StepCreate}
	for _, tc := range []struct {
		name               string
		planned, performed []lifecycle.Step
		want               string
	}{
		{"same", []lifecycle.Step{create, apply}, []lifecycle.Step{apply, create}, ""},
		{"missing", []lifecycle.Step{create, apply}, []lifecycle.Step{create}, "planned but not done: [apply cp-1: apply]; done but not planned: []"},
		{"extra", []lifecycle.Step{create}, []lifecycle.Step{create, apply}, "planned but not done: []; done but not planned: [apply cp-1: apply]"},
		{"apply if changed, applied", []lifecycle.Step{maybe}, []lifecycle.Step{apply}, ""},
		{"apply if changed, unchanged", []lifecycle.Step{maybe}, nil, ""},
	} {
		if got := lifecycle.StepsDiffer(tc.planned, tc.performed); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestUpLeavesANodeInConflictAndConvergesTheRest: a foreign VM has the worker's name. plan
// shows the plan for the rest and fails naming the conflict; up creates and starts the control
// plane's VM in the same run, sends nothing for the worker or to the foreign VM, and stops after
// provisioning with the conflict; once the foreign VM is renamed, up brings the whole cluster up.
func TestUpLeavesANodeInConflictAndConvergesTheRest(t *testing.T) {
	l := newLab(t)
	const foreign = 950
	l.env.PVE.Seed(pvesim.SeedVM{ID: foreign, Config: map[string]string{"name": "lab-worker-1", "memory": "1024"}})
	want := fmt.Sprintf(`VM %d "lab-worker-1"`, foreign)

	plan, err := lifecycle.Plan(t.Context(), l.options())
	if !errors.Is(err, proxmox.ErrConflict) || !strings.Contains(err.Error(), want) || plan == nil {
		t.Fatalf("plan: %v, want the conflict with %s and the plan for the rest", err, want)
	}
	created := false
	for _, s := range plan.Steps {
		if s.Subject == "lab-worker-1" {
			t.Errorf("the plan has a step for the node in conflict: %s", s)
		}
		created = created || (s == lifecycle.Step{Stage: lifecycle.PhaseProvision, Subject: "lab-cp-1", Action: lifecycle.StepCreate})
	}
	if !created {
		t.Errorf("the plan does not create lab-cp-1: %v", plan.Steps)
	}

	res, err := lifecycle.Up(t.Context(), l.options())
	if !errors.Is(err, proxmox.ErrConflict) || !strings.Contains(err.Error(), want) {
		t.Fatalf("up: %v, want the conflict reported", err)
	}
	if d := lifecycle.StepsDiffer(plan.Steps, res.Steps); d != "" || plan.Stopped == "" {
		t.Errorf("up did not take the planned steps (the provision stage's, then it stops): %s; plan %v, stopped %q", d, plan.Steps, plan.Stopped)
	}
	if cp := l.vms()["lab-cp-1"]; !cp.Running {
		t.Errorf("lab-cp-1 was not provisioned in the same run: %+v", cp)
	}
	for _, r := range l.env.PVE.MutatingRequests() {
		if strings.Contains(r.Path+"/", fmt.Sprintf("/qemu/%d/", foreign)) || r.Params["name"] == "lab-worker-1" {
			t.Errorf("sent for the node in conflict: %s %s %v", r.Method, r.Path, r.Params)
		}
	}
	if vm, _ := l.env.PVE.VM(foreign); vm.Running || vm.Config["memory"] != "1024" || vm.Config["tags"] != "" {
		t.Errorf("the foreign VM changed: %+v", vm)
	}

	l.env.PVE.Modify(foreign, func(v *pvesim.VM) { v.Config["name"] = "pihole" })
	l.up(t.Context(), l.options())
	vms := l.vms()
	for _, name := range []string{"lab-cp-1", "lab-worker-1"} {
		if vm := vms[name]; !vm.Running || !strings.Contains(vm.Tags, "talforge.node.lab") || vm.ID == foreign {
			t.Errorf("after the rename, %s: %+v", name, vm)
		}
	}
	if plan, err := lifecycle.Plan(t.Context(), l.options()); err != nil || plan.Changes {
		t.Errorf("plan after up: %v, steps %v", err, plan.Steps)
	}
}
