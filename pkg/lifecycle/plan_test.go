package lifecycle_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/talforge/talforge/pkg/lifecycle"
	"github.com/talforge/talforge/pkg/longhorn"
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
