// Observing the cluster's VMs and ISOs, with reads retried, and planning each node's VM
// against them.

package proxmox

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// readRetry retries a read on transient errors (a few quick attempts: reads are cheap and
// observation must not fail on one dropped connection).
func readRetry[T any](ctx context.Context, read func() (T, error)) (T, error) {
	delay := 100 * time.Millisecond

	for attempt := 1; ; attempt++ {
		v, err := read()
		if err == nil || !Retryable(err) || attempt == 4 {
			return v, err
		}

		if serr := sleepCtx(ctx, delay); serr != nil {
			return v, err
		}

		delay *= 2
	}
}

// retryingReads wraps the read side of an API with readRetry.
type retryingReads struct{ API }

func (r retryingReads) Version(ctx context.Context) (string, error) {
	return readRetry(ctx, func() (string, error) { return r.API.Version(ctx) })
}

// WithReadRetries wraps api so that its idempotent reads (version, VM listing, configs,
// pending changes, storage content) are retried on transient failures (a 502-504, a
// timeout, a lock), four attempts with backoff from 100 ms; writes are left as they are.
func WithReadRetries(api API) API { return retryingReads{api} }

func (r retryingReads) ListVMs(ctx context.Context) ([]VMResource, error) {
	return readRetry(ctx, func() ([]VMResource, error) { return r.API.ListVMs(ctx) })
}

func (r retryingReads) VMConfig(ctx context.Context, node string, vmid int) (map[string]string, error) {
	return readRetry(ctx, func() (map[string]string, error) { return r.API.VMConfig(ctx, node, vmid) })
}

func (r retryingReads) PendingKeys(ctx context.Context, node string, vmid int) ([]string, error) {
	return readRetry(ctx, func() ([]string, error) { return r.API.PendingKeys(ctx, node, vmid) })
}

func (r retryingReads) StorageContent(ctx context.Context, node, storage, content string) ([]StorageVolume, error) {
	return readRetry(ctx, func() ([]StorageVolume, error) { return r.API.StorageContent(ctx, node, storage, content) })
}

// Observe reads the VMs and ISO storage from Proxmox and plans how to reach the specs.
// It changes nothing.
func Observe(ctx context.Context, api API, cluster string, specs []VMSpec, boot BootImage) (*Plan, error) {
	if err := CheckClusterName(cluster); err != nil {
		return nil, err
	}

	api = retryingReads{api}

	vms, err := listSettled(ctx, api)
	if err != nil {
		return nil, err
	}

	sort.Slice(vms, func(i, j int) bool { return vms[i].VMID < vms[j].VMID })

	plan := &Plan{Cluster: cluster}
	want := map[string]bool{}

	for _, s := range specs {
		want[s.Name] = true
	}

	// adopted VMs keep their own names: they are found by VMID, and are no orphans
	adopted := map[int]bool{}

	for _, s := range specs {
		observe := observeVM
		if s.IsAdopted() {
			observe = observeAdopted
			adopted[s.VMID] = true
		}

		vp, err := observe(ctx, api, plan, vms, cluster, s)
		if err != nil {
			return nil, err
		}

		plan.VMs = append(plan.VMs, vp)
	}

	for _, vm := range vms {
		if vm.IsNodeOf(cluster) && !want[vm.Name] && !adopted[vm.VMID] {
			plan.Orphans = append(plan.Orphans, vm)
		}
	}

	// The boot image is needed where talforge creates VMs or points their CD-ROM at it: on the
	// PVE nodes of VMs that are not adopted. Adopted VMs keep whatever they booted from.
	nodes := map[string]bool{}
	for _, s := range specs {
		if !s.IsAdopted() {
			nodes[s.PVENode] = true
		}
	}

	for _, n := range sortedKeys(nodes) {
		present, err := isoPresent(ctx, api, n, boot)
		if err != nil {
			return nil, err
		}

		plan.ISOs = append(plan.ISOs, ISOPlan{Node: n, Image: boot, Present: present})
	}

	return plan, nil
}

// createSettleTimeout bounds how long Observe waits for VMs whose create is still running.
const createSettleTimeout = 5 * time.Minute

// listSettled lists the VMs once no create is running. While PVE creates a VM, the VM is
// listed locked and without name or tags (create_and_lock_config writes only the lock; the
// worker writes the rest at its end), so it may be a node of this cluster whose create an
// interrupted run left running: a plan made meanwhile would create that node a second time.
// A VM still locked and nameless after createSettleTimeout (a create whose worker died leaves
// its lock) is an error that says how to clear it.
func listSettled(ctx context.Context, api API) ([]VMResource, error) {
	deadline := time.Now().Add(createSettleTimeout)
	poll := DefaultPoll()

	var delay time.Duration

	for {
		vms, err := api.ListVMs(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing VMs: %w", err)
		}

		i := slices.IndexFunc(vms, func(vm VMResource) bool { return vm.Locked && vm.Name == "" && !vm.Container })
		if i < 0 {
			return vms, nil
		}

		if time.Now().After(deadline) {
			return nil, fmt.Errorf("VM %d on %s is still being created after %s (locked, no name yet): talforge cannot tell whose it is; "+
				"if no create task of it runs (Datacenter > Tasks), clear the lock: qm unlock %d", vms[i].VMID, vms[i].Node, createSettleTimeout, vms[i].VMID)
		}

		delay = poll.next(delay)
		if err := sleepCtx(ctx, delay); err != nil {
			return nil, err
		}
	}
}

func isoPresent(ctx context.Context, api API, node string, boot BootImage) (bool, error) {
	vols, err := api.StorageContent(ctx, node, boot.Storage, "iso")
	if err != nil {
		return false, fmt.Errorf("listing ISO storage %s on %s: %w", boot.Storage, node, err)
	}

	for _, v := range vols {
		if v.VolID == boot.VolID() {
			return true, nil
		}
	}

	return false, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}

	sort.Strings(out)

	return out
}

func observeVM(ctx context.Context, api API, plan *Plan, vms []VMResource, cluster string, s VMSpec) (VMPlan, error) {
	vp := VMPlan{Spec: s, VMID: s.VMID}
	owner := OwnerTag(cluster)

	var mine []VMResource

	for _, vm := range vms {
		o := vm.Ownership()
		ours := o.Is(KindNode, cluster)

		if !ours && o.Kind == KindNone && o.Ambiguous == "" && vm.Name == s.Name && s.Template != 0 && !vm.Container {
			unfinished, err := unfinishedClone(ctx, api, vm, cluster, s.Name)
			if err != nil {
				return vp, err
			}

			if unfinished {
				vp.Unfinished = true
				ours = true
			}
		}

		switch {
		case vm.Container:
			// A container's name is no VM's; its VMID is: PVE refuses a VM with it.
			if s.VMID != 0 && vm.VMID == s.VMID {
				plan.Conflicts = append(plan.Conflicts, Conflict{VM: vm, Node: s.Name, Message: fmt.Sprintf(
					"is an LXC container holding VMID %d, which the profile gives node %s: PVE keeps one id space for VMs and containers; choose another nodes[].vmid", s.VMID, s.Name)})
			}
		case o.Is(KindHolder, cluster):
		case ours && vm.Name == s.Name:
			mine = append(mine, vm)
		case !ours && (vm.Name == s.Name || (s.VMID != 0 && vm.VMID == s.VMID)):
			what := "has the name"
			if vm.Name != s.Name {
				what = "has the VMID"
			}

			msg := fmt.Sprintf("%s of node %s but not the ownership tag %s: foreign VM, talforge will not touch it (rename it, or tag it %s to adopt it)",
				what, s.Name, owner, owner)
			if o.Ambiguous != "" {
				msg += "; its tags are ambiguous: it " + o.Ambiguous
			}

			plan.Conflicts = append(plan.Conflicts, Conflict{VM: vm, Node: s.Name, Message: msg})
		case ours && s.VMID != 0 && vm.VMID == s.VMID:
			plan.Conflicts = append(plan.Conflicts, Conflict{VM: vm, Node: s.Name, Message: fmt.Sprintf(
				"is the profile's VMID %d of node %s but is named %q", s.VMID, s.Name, vm.Name)})
		}
	}

	switch {
	case len(mine) > 1:
		for _, vm := range mine[1:] {
			plan.Conflicts = append(plan.Conflicts, Conflict{VM: vm, Node: s.Name, Message: fmt.Sprintf(
				"another VM of this cluster (VMID %d) is also named %s: destroy the duplicate", mine[0].VMID, s.Name)})
		}

		return vp, nil
	case len(mine) == 0:
		vp.Action = ActionCreate
		vp.Changes = configChanges(s.Config)

		if err := planReattach(ctx, api, plan, vms, cluster, &vp); err != nil {
			return vp, err
		}

		return vp, nil
	}

	vm := mine[0]
	vp.VMID, vp.Running = vm.VMID, vm.Running

	if s.VMID != 0 && vm.VMID != s.VMID {
		plan.Conflicts = append(plan.Conflicts, Conflict{VM: vm, Node: s.Name, Message: fmt.Sprintf(
			"the profile wants VMID %d; a VM's id cannot change: remove nodes[].vmid or destroy the VM", s.VMID)})

		return vp, nil
	}

	if vm.Node != s.PVENode {
		plan.Conflicts = append(plan.Conflicts, Conflict{VM: vm, Node: s.Name, Message: fmt.Sprintf(
			"runs on %s but the profile places it on %s; migrate it in Proxmox or change pveNode", vm.Node, s.PVENode)})

		return vp, nil
	}

	cfg, err := api.VMConfig(ctx, vm.Node, vm.VMID)
	if err != nil {
		return vp, fmt.Errorf("VM %s (%d): reading config: %w", s.Name, vm.VMID, err)
	}

	d := diffConfig(s, cfg)
	vp.Set, vp.Delete, vp.Resize, vp.Changes, vp.Notes = d.set, d.del, d.resize, d.changes, d.notes

	if vp.Unfinished {
		vp.Delete = append(vp.Delete, "description") // the marker has done its job
		vp.Notes = append(vp.Notes, "an interrupted run cloned it and did not tag it yet (its description says so): this run finishes it")
	}

	if vm.Ownership().Legacy {
		vp.Notes = append(vp.Notes, "carries the old ownership tag "+legacyOwnerTag(cluster)+"; the tags update moves it to "+owner)
	}

	if _, has := cfg[SlotData]; !has && s.HasDataDisk() {
		// An earlier run created the VM but did not get the kept disk across: re-attach it
		// rather than allocating an empty one.
		if _, adding := vp.Set[SlotData]; adding {
			if err := planReattach(ctx, api, plan, vms, cluster, &vp); err != nil {
				return vp, err
			}

			if vp.Parked != nil {
				delete(vp.Set, SlotData)
			}
		}
	}

	for _, e := range d.errs {
		plan.Conflicts = append(plan.Conflicts, Conflict{VM: vm, Node: s.Name, Message: e})
	}

	vp.Action = ActionUnchanged
	if len(vp.Set) > 0 || len(vp.Delete) > 0 || len(vp.Resize) > 0 || vp.Parked != nil {
		vp.Action = ActionUpdate
	}

	vp.VMName = vm.Name

	if vm.Running {
		for _, c := range vp.Changes {
			if c.Key == "ipconfig0" || c.Key == "nameserver" || c.Key == "searchdomain" {
				vp.Notes = append(vp.Notes, "cloud-init changes reach Talos at the VM's next boot (nocloud is read at boot)")
				break
			}
		}

		if err := notePending(ctx, api, &vp, vm); err != nil {
			return vp, err
		}
	}

	return vp, nil
}

// notePending reads the config keys of a running VM that wait for its restart.
func notePending(ctx context.Context, api API, vp *VMPlan, vm VMResource) error {
	var err error
	if vp.Pending, err = api.PendingKeys(ctx, vm.Node, vm.VMID); err != nil {
		return fmt.Errorf("VM %s (%d): reading pending changes: %w", vp.Spec.Name, vm.VMID, err)
	}

	sort.Strings(vp.Pending)

	if len(vp.Pending) > 0 {
		vp.Notes = append(vp.Notes, "changes pending until the VM restarts: "+strings.Join(vp.Pending, ", "))
	}

	return nil
}

// planReattach plans re-attaching a node's kept data disk, if a holder of this cluster keeps
// one, instead of allocating a new data disk.
func planReattach(ctx context.Context, api API, plan *Plan, vms []VMResource, cluster string, vp *VMPlan) error {
	s := vp.Spec

	parked, err := findParked(ctx, api, vms, cluster, s)
	if err != nil || parked == nil {
		return err
	}

	if parked.HolderNode != s.PVENode {
		plan.Conflicts = append(plan.Conflicts, Conflict{VM: VMResource{VMID: parked.HolderVMID, Node: parked.HolderNode, Name: parked.HolderName},
			Node: s.Name, Message: fmt.Sprintf("holds the kept data disk of %s on %s, but the profile places %s on %s; disks can only be re-attached on the same host",
				s.Name, parked.HolderNode, s.Name, s.PVENode)})
	}

	vp.Parked = parked

	for i, c := range vp.Changes {
		if c.Key == SlotData {
			vp.Changes[i].To = parked.VolID + " (kept data disk, re-attached)"
		}
	}

	vp.Notes = append(vp.Notes, fmt.Sprintf("re-attaches the kept data disk %s (%d GiB) from VM %d %s", parked.VolID, parked.SizeGiB, parked.HolderVMID, parked.HolderName))

	return nil
}

// findParked looks for the holder VM of a node's kept data disk: a VM tagged as a holder of
// this cluster (never another cluster's, whatever the names) and named <node>-parked. Its
// config is read again before anything is moved.
func findParked(ctx context.Context, api API, vms []VMResource, cluster string, s VMSpec) (*ParkedDisk, error) {
	if !s.HasDataDisk() {
		return nil, nil
	}

	for _, vm := range vms {
		if !vm.IsHolderOf(cluster) || vm.Name != s.ParkedName() {
			continue
		}

		cfg, err := api.VMConfig(ctx, vm.Node, vm.VMID)
		if err != nil {
			return nil, fmt.Errorf("VM %s (%d): reading config: %w", vm.Name, vm.VMID, err)
		}

		if holderExpect(cluster, vm).check(cfg) != nil {
			continue // changed between the listing and the read
		}

		d, ok := cfg[SlotData]
		if !ok {
			continue
		}

		dp := parseProp(d, "file")

		return &ParkedDisk{HolderVMID: vm.VMID, HolderNode: vm.Node, HolderName: vm.Name, Slot: SlotData, VolID: dp["file"],
			SizeGiB: diskGiB(dp), Serial: dp["serial"]}, nil
	}

	return nil, nil
}

// unfinishedClone reports whether an untagged VM with the node's name is a clone an
// interrupted run made for it: its description still is the CloneMarker of the request.
func unfinishedClone(ctx context.Context, api API, vm VMResource, cluster, node string) (bool, error) {
	cfg, err := api.VMConfig(ctx, vm.Node, vm.VMID)
	if err != nil {
		return false, fmt.Errorf("VM %s (%d): reading config: %w", vm.Name, vm.VMID, err)
	}

	return strings.TrimSpace(cfg["description"]) == CloneMarker(cluster, node), nil
}
