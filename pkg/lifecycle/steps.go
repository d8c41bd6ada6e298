package lifecycle

import (
	"fmt"
	"slices"
	"strings"

	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/proxmox"
)

// Step is one change a stage plans, or made, in one vocabulary for both: `plan` lists the steps
// up would take, and up reports the steps it took, so that "plan said X, up did X" can be checked
// (Terraform's contract between plan and apply).
type Step struct {
	Stage   string `json:"stage"`
	Subject string `json:"subject"`
	Action  string `json:"action"`
}

func (s Step) String() string { return s.Stage + " " + s.Subject + ": " + s.Action }

// Step actions.
const (
	StepDownloadISO = "download boot image"
	StepCreate      = "create"
	StepUpdate      = "update"
	StepStart       = "start"
	StepInstall     = "install"
	StepApply       = "apply"
	// StepApplyIfChanged is planned for a node that could not be observed (its VM is
	// stopped): up starts it and applies its config only when it differs.
	StepApplyIfChanged = "apply if changed"
	StepBootstrap      = "bootstrap"
	StepUpgrade        = "upgrade"
	StepConverge       = "converge"
	// StepAdopt adds the ownership tags to an adopted VM (with its cores, memory and disk
	// growth, if the profile changes them): proxmox.VMPlan.Adopts.
	StepAdopt = "adopt"
)

// Subjects of the steps that are not a node.
const (
	SubjectEtcd     = "etcd"
	SubjectLonghorn = "longhorn"
)

// proxmoxSteps are the steps of a Proxmox plan, or, with res, the ones its execution made: a
// VM counts only when it did not fail.
func proxmoxSteps(p *proxmox.Plan, res *proxmox.Result) []Step {
	if p == nil {
		return nil
	}
	var steps []Step
	for _, iso := range p.ISOs {
		if p.Downloads(iso) {
			steps = append(steps, Step{PhaseProvision, iso.Node, StepDownloadISO})
		}
	}
	for i, v := range p.VMs {
		action, start := v.Action, v.NeedsStart()
		if p.Blocked(v.Spec.Name) != nil {
			continue // left alone
		}
		if res != nil {
			if i >= len(res.VMs) || res.VMs[i].Err != nil {
				continue
			}
			action, start = res.VMs[i].Action, res.VMs[i].Started
		}
		switch {
		case action == proxmox.ActionCreate:
			steps = append(steps, Step{PhaseProvision, v.Spec.Name, StepCreate})
		case action == proxmox.ActionUpdate && v.Adopts():
			steps = append(steps, Step{PhaseProvision, v.Spec.Name, StepAdopt})
		case action == proxmox.ActionUpdate:
			steps = append(steps, Step{PhaseProvision, v.Spec.Name, StepUpdate})
		}
		if start {
			steps = append(steps, Step{PhaseProvision, v.Spec.Name, StepStart})
		}
	}
	return steps
}

// talosStep is the step a node's apply result plans or reports (none when unchanged).
func talosStep(r bootstrap.NodeResult) (Step, bool) {
	switch r.Action {
	case bootstrap.ActionInstalled, bootstrap.ActionWouldInstall:
		return Step{PhaseApply, r.Node, StepInstall}, true
	case bootstrap.ActionApplied, bootstrap.ActionWouldApply:
		return Step{PhaseApply, r.Node, StepApply}, true
	}
	return Step{}, false
}

// StepsDiffer describes how performed differs from planned ("" when up did what plan said).
// A planned "apply if changed" matches an apply or nothing.
func StepsDiffer(planned, performed []Step) string {
	var missing, extra []string
	done := slices.Clone(performed)
	for _, p := range planned {
		i := slices.IndexFunc(done, func(s Step) bool { return s.Stage == p.Stage && s.Subject == p.Subject && matches(p.Action, s.Action) })
		if i < 0 {
			if p.Action != StepApplyIfChanged {
				missing = append(missing, p.String())
			}
			continue
		}
		done = slices.Delete(done, i, i+1)
	}
	for _, s := range done {
		extra = append(extra, s.String())
	}
	if len(missing) == 0 && len(extra) == 0 {
		return ""
	}
	return fmt.Sprintf("planned but not done: [%s]; done but not planned: [%s]", strings.Join(missing, "; "), strings.Join(extra, "; "))
}

func matches(planned, performed string) bool {
	return planned == performed || (planned == StepApplyIfChanged && performed == StepApply)
}
