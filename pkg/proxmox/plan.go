// The plan's types and their rendering.

package proxmox

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Action is what provisioning does to a node's VM.
type Action string

// Actions.
const (
	ActionCreate    Action = "create"
	ActionUpdate    Action = "update"
	ActionUnchanged Action = "unchanged"
)

// Change is one field-level difference between a VM's config and its spec.
type Change struct {
	Key  string
	From string // "" when the key is added
	To   string // "" when the key is removed
}

func (c Change) String() string {
	switch {
	case c.From == "":
		return fmt.Sprintf("+ %s: %s", c.Key, c.To)
	case c.To == "":
		return fmt.Sprintf("- %s: %s", c.Key, c.From)
	}

	return fmt.Sprintf("~ %s: %s -> %s", c.Key, c.From, c.To)
}

// ParkedDisk is a data disk kept by `destroy --keep-data-disks` in a holder VM.
type ParkedDisk struct {
	HolderVMID int
	HolderNode string
	// HolderName is the holder VM's name (<node>-parked), re-checked before every change.
	HolderName string
	Slot       string
	// VolID is the kept volume as the holder references it; re-attaching renames it to the new
	// VM (vm-<vmid>-disk-<n>, docs/proxmox.md#move-disk).
	VolID   string
	SizeGiB int
	// Serial is the drive's serial= option, carried along by move_disk.
	Serial string
}

// VMPlan is the plan for one node's VM.
type VMPlan struct {
	Spec   VMSpec
	Action Action
	// VMID of the existing VM, the profile's fixed VMID, or 0 (allocated at apply time).
	VMID int
	// VMName is the existing VM's name: the node's, except for an adopted VM, which keeps its
	// own.
	VMName string
	// Running is the observed power state of an existing VM.
	Running bool
	// AddTags are the tags an adopted VM lacks (talforge, talforge.node.<cluster>, the role):
	// the update adds them to the VM's own tags, which stay. Only with ActionUpdate; it is the
	// step lifecycle calls "adopt".
	AddTags []string
	// Changes are field-level differences (update) or the new config (create).
	Changes []Change
	// Set and Delete are the config update to send; Resize maps disks to their new size in GiB.
	Set    Params
	Delete []string
	Resize map[string]int
	// Pending are config keys that already wait for a VM restart.
	Pending []string
	// Parked is a kept data disk to re-attach on create.
	Parked *ParkedDisk
	// Unfinished marks a clone an interrupted run made for this node (its description carries
	// CloneMarker) but did not tag yet: the update finishes it, tags included.
	Unfinished bool
	// Notes are things worth knowing that change nothing.
	Notes []string
}

// Adopts reports whether the update takes over an adopted VM by adding its ownership tags.
func (v VMPlan) Adopts() bool { return v.Action == ActionUpdate && len(v.AddTags) > 0 }

// NeedsStart reports whether apply will start the VM.
func (v VMPlan) NeedsStart() bool { return v.Action == ActionCreate || !v.Running }

// ISOPlan is the boot image on one PVE node.
type ISOPlan struct {
	Node    string
	Image   BootImage
	Present bool
}

// Conflict is a VM talforge must not touch that collides with a node (foreign VM) or an
// ambiguous ownership situation.
type Conflict struct {
	VM      VMResource
	Node    string // profile node it collides with
	Message string
}

func (c Conflict) String() string {
	return fmt.Sprintf("VM %d %q on %s: %s", c.VM.VMID, c.VM.Name, c.VM.Node, c.Message)
}

// Plan is the result of observing Proxmox against a cluster's desired VMs.
type Plan struct {
	Cluster   string
	Endpoint  string
	ISOs      []ISOPlan
	VMs       []VMPlan
	Conflicts []Conflict
	// Orphans are VMs owned by the cluster that the profile no longer lists; provision leaves
	// them alone.
	Orphans []VMResource
	// Findings are lint results for the desired specs.
	Findings []Finding
}

// ErrConflict is returned by Plan.Err and Plan.Blocked when foreign or ambiguous VMs, or lint
// errors, block a node's VM.
var ErrConflict = errors.New("conflicting VMs")

// problem is a conflict or lint error, with the node whose VM it blocks.
type problem struct{ node, msg string }

// problems are the plan's conflicts and lint errors, in that order.
func (p *Plan) problems() []problem {
	var out []problem

	for _, c := range p.Conflicts {
		out = append(out, problem{c.Node, c.String()})
	}

	for _, f := range p.Findings {
		if f.Severity == SeverityError {
			out = append(out, problem{f.VM, f.String()})
		}
	}

	return out
}

// Err returns every conflict and lint error of the plan: Apply leaves the nodes they name alone,
// converges the others, and fails with this.
func (p *Plan) Err() error {
	var msgs []string
	for _, pr := range p.problems() {
		msgs = append(msgs, pr.msg)
	}

	if len(msgs) == 0 {
		return nil
	}

	return fmt.Errorf("%w: cluster %s:\n  %s", ErrConflict, p.Cluster, strings.Join(msgs, "\n  "))
}

// Blocked returns why Apply leaves a node's VM alone: its conflicts and lint errors, joined
// (nil when none). The other nodes' VMs do not depend on it and are worked on.
func (p *Plan) Blocked(node string) error {
	var msgs []string

	for _, pr := range p.problems() {
		if pr.node == node {
			msgs = append(msgs, pr.msg)
		}
	}

	if len(msgs) == 0 {
		return nil
	}

	return fmt.Errorf("%w: %s", ErrConflict, strings.Join(msgs, "; "))
}

// Downloads reports whether Apply downloads the boot image: it is missing and a VM on its host
// is worked on (a host whose every node is in conflict gets nothing).
func (p *Plan) Downloads(iso ISOPlan) bool {
	if iso.Present {
		return false
	}

	for _, v := range p.VMs {
		if v.Spec.PVENode == iso.Node && p.Blocked(v.Spec.Name) == nil {
			return true
		}
	}

	return false
}

// unattributed are the conflicts and lint errors that name no VM of the plan: Blocked reports
// the others with their VM.
func (p *Plan) unattributed() []error {
	planned := map[string]bool{}
	for _, v := range p.VMs {
		planned[v.Spec.Name] = true
	}

	var errs []error

	for _, pr := range p.problems() {
		if !planned[pr.node] {
			errs = append(errs, fmt.Errorf("%w: %s", ErrConflict, pr.msg))
		}
	}

	return errs
}

// HasChanges reports whether applying would change anything (a blocked node's VM is not
// changed).
func (p *Plan) HasChanges() bool {
	for _, i := range p.ISOs {
		if p.Downloads(i) {
			return true
		}
	}

	for _, v := range p.VMs {
		if (v.Action != ActionUnchanged || v.NeedsStart()) && p.Blocked(v.Spec.Name) == nil {
			return true
		}
	}

	return false
}

// Print writes the plan like `terraform plan`: + create, ~ update, = unchanged, ! conflict.
func (p *Plan) Print(w io.Writer) {
	fmt.Fprintf(w, "Proxmox plan for cluster %s\n\n", p.Cluster)

	for _, i := range p.ISOs {
		if i.Present {
			fmt.Fprintf(w, "  = boot image %s on %s\n", i.Image.VolID(), i.Node)
		} else {
			fmt.Fprintf(w, "  + boot image %s on %s\n      download-url %s\n", i.Image.VolID(), i.Node, i.Image.URL)
		}
	}

	if len(p.ISOs) > 0 {
		fmt.Fprintln(w)
	}

	creates, adopts, updates, starts, same, blocked := 0, 0, 0, 0, 0, 0

	for _, v := range p.VMs {
		id := "new VMID"
		if v.VMID != 0 {
			id = "VMID " + strconv.Itoa(v.VMID)
		}

		if p.Blocked(v.Spec.Name) != nil {
			blocked++

			fmt.Fprintf(w, "  ! %s (%s on %s) is left alone until its conflict below is resolved\n", v.Spec.Name, id, v.Spec.PVENode)

			continue
		}

		switch v.Action {
		case ActionCreate:
			creates++

			fmt.Fprintf(w, "  + %s (%s on %s) will be created and started\n", v.Spec.Name, id, v.Spec.PVENode)

			for _, c := range v.Changes {
				fmt.Fprintf(w, "      %s\n", c)
			}
		case ActionUpdate:
			if v.Adopts() {
				adopts++

				fmt.Fprintf(w, "  ~ %s (%s on %s): adopt: %s\n", v.Spec.Name, id, v.Spec.PVENode, v.describeAdoption())
			} else {
				updates++

				fmt.Fprintf(w, "  ~ %s (%s on %s) will be updated in place\n", v.Spec.Name, id, v.Spec.PVENode)
			}

			for _, c := range v.Changes {
				if c.Key != "tags" || !v.Adopts() {
					fmt.Fprintf(w, "      %s\n", c)
				}
			}
		default:
			same++

			fmt.Fprintf(w, "  = %s (%s on %s) unchanged\n", v.Spec.Name, id, v.Spec.PVENode)
		}

		if v.Action != ActionCreate && !v.Running {
			starts++

			fmt.Fprintf(w, "      > will be started (it is stopped)\n")
		}

		for _, n := range v.Notes {
			fmt.Fprintf(w, "      # %s\n", n)
		}
	}

	for _, o := range p.Orphans {
		fmt.Fprintf(w, "  # VM %d %q on %s belongs to cluster %s but is not in the profile; provision leaves it alone (talforge destroy --node %s removes it)\n",
			o.VMID, o.Name, o.Node, p.Cluster, o.Name)
	}

	for _, c := range p.Conflicts {
		fmt.Fprintf(w, "  ! %s\n", c)
	}

	for _, f := range p.Findings {
		fmt.Fprintf(w, "  ! %s\n", f)
	}

	adopt := ""
	if adopts > 0 {
		adopt = fmt.Sprintf("%d to adopt, ", adopts)
	}

	left := ""
	if blocked > 0 {
		left = fmt.Sprintf(", %d left alone (conflict)", blocked)
	}

	fmt.Fprintf(w, "\nPlan: %d to create, %s%d to update, %d to start, %d unchanged%s.\n", creates, adopt, updates, starts, same, left)
}

// describeAdoption reads "tags +talforge, +talforge.node.lab, +worker (k8s, talos kept)".
func (v VMPlan) describeAdoption() string {
	add := make([]string, len(v.AddTags))
	for i, t := range v.AddTags {
		add[i] = "+" + t
	}

	out := "tags " + strings.Join(add, ", ")

	for _, c := range v.Changes {
		if c.Key == "tags" && c.From != "" {
			out += " (" + strings.Join(splitTags(c.From), ", ") + " kept)"
		}
	}

	return out
}
