package proxmox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

// DestroyItem is one VM to destroy.
type DestroyItem struct {
	VM VMResource
	// DataDisk is the volume in the data slot (scsi1), if any.
	DataDisk string
	// DataSizeGiB and DataSerial describe it, to recognise it in the holder after move_disk
	// renamed it.
	DataSizeGiB int
	DataSerial  string
	// Keep parks DataDisk in a holder VM before the VM is deleted.
	Keep bool
	// Holder is an existing holder VM for this node (0 = create one when keeping).
	Holder int
	// Pool is the resource pool a new holder joins (DestroyOptions.Pool).
	Pool string
	// AdoptedNode names the node whose adopted VM this is (DestroyOptions.IncludeAdopted).
	AdoptedNode string
}

// DestroyPlan lists the cluster's VMs to destroy.
type DestroyPlan struct {
	Cluster string
	Items   []DestroyItem
	// Holders are the cluster's holder VMs of kept data disks; they are destroyed only when
	// asked to (IncludeParked), which deletes the kept disks too.
	Holders       []VMResource
	IncludeParked bool
	// Skipped explains VMs whose tags mention the cluster but do not prove that it owns them;
	// they are left alone.
	Skipped []string
}

// DestroyOptions select what to destroy.
type DestroyOptions struct {
	// Nodes restricts destruction to these VM names (default: every VM of the cluster).
	Nodes []string
	// KeepDataDisks parks each VM's data disk in a holder VM (<name>-parked) before deleting
	// the VM, so that `provision` re-attaches it to the re-created VM.
	KeepDataDisks bool
	// IncludeParked also destroys the holder VMs, and with them the kept data disks.
	IncludeParked bool
	// Adopted maps the VMIDs of the profile's adopted nodes to the node names (AdoptedVMs).
	// Their VMs, made by hand, are left alone unless IncludeAdopted; Nodes may name them by
	// node name or by VM name.
	Adopted        map[int]string
	IncludeAdopted bool
	// Pool is the profile's proxmox.pool: a holder made for a kept data disk joins it, so a
	// token whose privileges come from the pool can create, fill and delete it.
	Pool string
}

// PlanDestroy finds the cluster's VMs by their ownership tags: node VMs tagged
// talforge.node.<cluster>, and with IncludeParked the holders tagged talforge.parked.<cluster>
// (see ParseOwnership for the older tags). VMs without them are never part of the plan; the
// executor checks every VM again right before each change.
func PlanDestroy(ctx context.Context, api API, cluster string, opts DestroyOptions) (*DestroyPlan, error) {
	if err := CheckClusterName(cluster); err != nil {
		return nil, err
	}

	api = retryingReads{api}

	vms, err := api.ListVMs(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing VMs: %w", err)
	}

	sort.Slice(vms, func(i, j int) bool {
		return vms[i].Name < vms[j].Name || vms[i].Name == vms[j].Name && vms[i].VMID < vms[j].VMID
	})

	only := map[string]bool{}

	for _, n := range opts.Nodes {
		only[n] = true
	}

	found := map[string]bool{}
	plan := &DestroyPlan{Cluster: cluster, IncludeParked: opts.IncludeParked}
	holders := map[string]VMResource{}

	for _, vm := range vms {
		if vm.IsHolderOf(cluster) {
			holders[vm.Name] = vm
		}
	}

	for _, vm := range vms {
		o := vm.Ownership()

		switch {
		case o.Ambiguous != "" && o.claims(cluster):
			plan.Skipped = append(plan.Skipped, fmt.Sprintf("VM %d %q on %s is left alone: it %s (retag it by hand, see docs/proxmox.md)",
				vm.VMID, vm.Name, vm.Node, o.Ambiguous))

			continue
		case o.Is(KindHolder, cluster):
			node, ok := strings.CutSuffix(vm.Name, "-parked")
			if !ok {
				plan.Skipped = append(plan.Skipped, fmt.Sprintf("VM %d %q on %s is tagged %s but not named <node>-parked; it is left alone",
					vm.VMID, vm.Name, vm.Node, HolderTag(cluster)))

				continue
			}

			if opts.IncludeParked && (len(only) == 0 || only[node]) {
				plan.Holders = append(plan.Holders, vm)
			}

			continue
		case !o.Is(KindNode, cluster):
			continue
		}

		node, adopted := opts.Adopted[vm.VMID]
		if len(only) > 0 && !only[vm.Name] && !(adopted && only[node]) {
			continue
		}

		found[vm.Name] = true

		if adopted {
			found[node] = true

			if !opts.IncludeAdopted {
				plan.Skipped = append(plan.Skipped, fmt.Sprintf("VM %d %q on %s is the adopted VM of node %s and is left alone (--include-adopted deletes it too)",
					vm.VMID, vm.Name, vm.Node, node))

				continue
			}
		}

		it := DestroyItem{VM: vm, Pool: opts.Pool}
		if adopted {
			it.AdoptedNode = node
		}

		cfg, err := api.VMConfig(ctx, vm.Node, vm.VMID)
		if err != nil {
			return nil, fmt.Errorf("VM %s (%d): reading config: %w", vm.Name, vm.VMID, err)
		}

		if err := nodeExpect(cluster, vm).check(cfg); err != nil {
			plan.Skipped = append(plan.Skipped, fmt.Sprintf("VM %d %q on %s is left alone: it changed while it was read (%v)", vm.VMID, vm.Name, vm.Node, err))
			continue
		}

		if d, ok := cfg[SlotData]; ok {
			dp := parseProp(d, "file")
			it.DataDisk, it.DataSizeGiB, it.DataSerial = dp["file"], diskGiB(dp), dp["serial"]
			it.Keep = opts.KeepDataDisks
		}

		if h, ok := holders[ParkedName(vm.Name)]; ok && it.Keep {
			hcfg, err := api.VMConfig(ctx, h.Node, h.VMID)
			if err != nil {
				return nil, fmt.Errorf("VM %s (%d): reading config: %w", h.Name, h.VMID, err)
			}

			if vols := heldVolumes(hcfg); len(vols) > 0 {
				return nil, fmt.Errorf("VM %s already holds a kept data disk of %s (%s); re-provision to re-attach it before keeping another, "+
					"or destroy without --keep-data-disks", h.Name, vm.Name, strings.Join(vols, ", "))
			}

			if h.Node != vm.Node {
				return nil, fmt.Errorf("VM %s, the holder for %s's data disk, is on %s but %s is on %s; move_disk works on one host only: delete or migrate the holder",
					h.Name, vm.Name, h.Node, vm.Name, vm.Node)
			}

			it.Holder = h.VMID
		}

		plan.Items = append(plan.Items, it)
	}

	for _, n := range opts.Nodes {
		if !found[n] {
			return nil, fmt.Errorf("no VM named %s carries the ownership tag %s", n, OwnerTag(cluster))
		}
	}

	return plan, nil
}

// Empty reports whether there is nothing to destroy.
func (p *DestroyPlan) Empty() bool { return len(p.Items) == 0 && len(p.Holders) == 0 }

// Print lists what destroy will do.
func (p *DestroyPlan) Print(w io.Writer) {
	fmt.Fprintf(w, "Destroy plan for cluster %s (only VMs tagged %s or %s)\n\n", p.Cluster, OwnerTag(p.Cluster), HolderTag(p.Cluster))

	for _, it := range p.Items {
		fmt.Fprintf(w, "  - %s (VMID %d on %s) will be stopped and deleted with purge\n", it.VM.Name, it.VM.VMID, it.VM.Node)

		if it.AdoptedNode != "" {
			fmt.Fprintf(w, "      # the adopted VM of node %s: talforge did not create it and cannot re-create it\n", it.AdoptedNode)
		}

		switch {
		case it.DataDisk != "" && it.Keep:
			fmt.Fprintf(w, "      # data disk %s is kept in VM %s and re-attached by the next provision\n", it.DataDisk, ParkedName(it.VM.Name))
		case it.DataDisk != "":
			fmt.Fprintf(w, "      # data disk %s is DELETED (use --keep-data-disks to keep it)\n", it.DataDisk)
		}
	}

	for _, h := range p.Holders {
		fmt.Fprintf(w, "  - %s (VMID %d on %s) holder of a kept data disk will be deleted WITH the disk\n", h.Name, h.VMID, h.Node)
	}

	for _, s := range p.Skipped {
		fmt.Fprintf(w, "  # %s\n", s)
	}

	fmt.Fprintf(w, "\nDestroy: %d VM(s)", len(p.Items)+len(p.Holders))

	kept := 0

	for _, it := range p.Items {
		if it.Keep {
			kept++
		}
	}

	if kept > 0 {
		fmt.Fprintf(w, ", %d data disk(s) kept", kept)
	}

	fmt.Fprintln(w, ".")
}

// Destroy executes a destroy plan with bounded parallelism.
func (e *Executor) Destroy(ctx context.Context, plan *DestroyPlan) error {
	sem := make(chan struct{}, e.opts.Parallelism)
	errs := make([]error, len(plan.Items)+len(plan.Holders))

	var wg sync.WaitGroup

	launch := func(i int, fn func() error) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			return
		}

		wg.Add(1)

		go func() {
			defer wg.Done()
			defer func() { <-sem }()

			errs[i] = fn()
		}()
	}

	for i, it := range plan.Items {
		launch(i, func() error {
			if err := e.destroyVM(ctx, plan.Cluster, it); err != nil {
				return fmt.Errorf("VM %s (%d): %w", it.VM.Name, it.VM.VMID, err)
			}

			return nil
		})
	}

	wg.Wait()

	for j, h := range plan.Holders {
		launch(len(plan.Items)+j, func() error {
			if err := e.deleteVM(ctx, holderExpect(plan.Cluster, h), true); err != nil {
				return fmt.Errorf("VM %s (%d): %w", h.Name, h.VMID, err)
			}

			return nil
		})
	}

	wg.Wait()

	return errors.Join(errs...)
}

// destroyVM stops a node VM, parks its data disk if asked to, and deletes it. Every step
// re-reads the VM's config and re-checks that it is still the cluster's node VM of that name,
// so a VM renamed, retagged or replaced after the plan (and the confirmation prompt) is left
// alone.
func (e *Executor) destroyVM(ctx context.Context, cluster string, it DestroyItem) error {
	x := nodeExpect(cluster, it.VM)

	if err := e.stop(ctx, x); err != nil {
		return err
	}

	if it.Keep && it.DataDisk != "" {
		if err := e.park(ctx, cluster, it); err != nil {
			return err
		}
	}

	return e.deleteVM(ctx, x, !it.Keep)
}

// stop stops a running VM after re-checking that it is still the one planned.
func (e *Executor) stop(ctx context.Context, x expect) error {
	return e.retry(ctx, x.name, "stop", func(int) error {
		cur, err := e.findVM(ctx, x.vmid)
		if err != nil || cur == nil || !cur.Running {
			return err
		}

		if _, err := e.verify(ctx, x); err != nil {
			return err
		}

		e.emit(x.name, "stop", "VMID %d", x.vmid)

		upid, err := e.api.StopVM(ctx, x.node, x.vmid)
		if err != nil {
			return err
		}

		return e.Wait(ctx, upid)
	})
}

// deleteVM stops and deletes (purges) a VM, re-checking right before each call that it is
// still the one planned. With dataDisks false (the data disk was parked) it refuses to delete
// a VM that references a data disk again.
func (e *Executor) deleteVM(ctx context.Context, x expect, dataDisks bool) error {
	if err := e.stop(ctx, x); err != nil {
		return err
	}

	return e.retry(ctx, x.name, "delete", func(int) error {
		cfg, err := e.verifyIfExists(ctx, x)
		if err != nil || cfg == nil {
			return err // gone: an earlier attempt deleted it
		}

		if d, ok := cfg[SlotData]; ok && !dataDisks {
			return fmt.Errorf("%s holds %s again after its data disk was parked; the VM is not deleted", SlotData, d)
		}

		e.emit(x.name, "delete", "VMID %d (purge, destroy unreferenced disks)", x.vmid)

		return e.api.DeleteVM(ctx, x.node, x.vmid, true, true)
	})
}

// park moves the VM's data disk into its holder VM (created on demand on the same host), so
// that deleting the VM leaves the disk alone: PVE deletes every disk a VM owns, unused ones
// included, so a detached disk alone would not survive. Both VMs are re-checked before the
// move, which carries both config digests; afterwards the holder must hold the disk (renamed
// to the holder by move_disk) or the VM is not deleted.
func (e *Executor) park(ctx context.Context, cluster string, it DestroyItem) error {
	vm := it.VM
	x := nodeExpect(cluster, vm)
	hx := expect{cluster: cluster, kind: KindHolder, name: ParkedName(vm.Name), node: vm.Node, vmid: it.Holder}

	if hx.vmid == 0 {
		id, err := e.createHolder(ctx, cluster, vm, it.Pool)
		if err != nil {
			return err
		}

		hx.vmid = id
	}

	pk := &ParkedDisk{HolderVMID: hx.vmid, HolderNode: hx.node, HolderName: hx.name, Slot: SlotData, VolID: it.DataDisk,
		SizeGiB: it.DataSizeGiB, Serial: it.DataSerial}

	e.emit(vm.Name, "park", "moving %s to VM %d", it.DataDisk, hx.vmid)

	err := e.retry(ctx, vm.Name, "park", func(int) error {
		cfg, err := e.verify(ctx, x)
		if err != nil {
			return err
		}

		hcfg, err := e.verify(ctx, hx)
		if err != nil {
			return err
		}

		cur := parseProp(cfg[SlotData], "file")["file"]

		switch {
		case cur == "" && hcfg[SlotData] == "":
			// neither holds it: a move between the source's and the target's config write (PVE
			// writes the source first), or gone elsewhere, which the last attempt reports
			return fmt.Errorf("%w: %s", errMoveInFlight, keptDiskAttached(hcfg, pk, hx.vmid, nil))
		case cur == "":
			// gone from the VM: an earlier attempt moved it (its answer was lost), or someone else did
			return keptDiskAttached(hcfg, pk, hx.vmid, nil)
		case cur != it.DataDisk:
			return fmt.Errorf("%s now holds %s, not the data disk %s of the plan; the VM is not deleted", SlotData, cur, it.DataDisk)
		case hcfg[SlotData] != "":
			// a move that finished between the two reads is no stranger's disk: look again
			if again, err := e.verify(ctx, x); err != nil {
				return err
			} else if again[SlotData] == "" {
				return fmt.Errorf("%w: %s left VM %d while it was read", errMoveInFlight, it.DataDisk, vm.VMID)
			}

			return fmt.Errorf("holder VM %d got %s on %s meanwhile; %s stays in VM %d, which is not deleted", hx.vmid, hcfg[SlotData], SlotData, it.DataDisk, vm.VMID)
		}

		upid, err := e.api.MoveDisk(ctx, vm.Node, vm.VMID, MoveDiskRequest{Disk: SlotData, TargetVMID: hx.vmid, TargetDisk: SlotData,
			Digest: cfg["digest"], TargetDigest: hcfg["digest"]})
		if err != nil {
			return err
		}

		if err := e.Wait(ctx, upid); err != nil {
			return err
		}

		if hcfg, err = e.verify(ctx, hx); err != nil {
			return err
		}

		return keptDiskAttached(hcfg, pk, hx.vmid, nil)
	})
	if err != nil {
		return fmt.Errorf("moving data disk %s to holder VM %d: %w", it.DataDisk, hx.vmid, err)
	}

	return nil
}

// createHolder creates the empty holder VM <node>-parked, tagged talforge.parked.<cluster>, in
// pool when one is given.
func (e *Executor) createHolder(ctx context.Context, cluster string, vm VMResource, pool string) (int, error) {
	e.allocMu.Lock()
	id, err := e.freeID(ctx)
	if err == nil {
		e.reserved[id] = true
	}
	e.allocMu.Unlock()

	if err != nil {
		return 0, fmt.Errorf("allocating a VMID for the data disk holder: %w", err)
	}

	hx := expect{cluster: cluster, kind: KindHolder, name: ParkedName(vm.Name), node: vm.Node, vmid: id}
	cfg := Params{
		"name":        hx.name,
		"memory":      "64",
		"onboot":      "0",
		"tags":        strings.Join([]string{TagManaged, HolderTag(cluster)}, ";"),
		"description": fmt.Sprintf("Holds the data disk of %s kept by talforge destroy --keep-data-disks; talforge provision re-attaches it.", vm.Name),
	}
	if pool != "" {
		cfg["pool"] = pool
	}

	e.emit(vm.Name, "park", "creating holder VM %s (%d)", cfg["name"], id)

	if err := e.retry(ctx, vm.Name, "park", func(attempt int) error {
		if attempt > 0 {
			cur, err := e.findVM(ctx, id)
			if err != nil {
				return err
			}

			if cur != nil {
				// an earlier attempt's create, or someone else's VM on that id: the checks
				// before the move tell them apart
				if _, err := e.afterLock(ctx, id); err != nil {
					return err
				}

				_, err := e.verify(ctx, hx)

				return err
			}
		}

		upid, err := e.api.CreateVM(ctx, vm.Node, id, cfg)
		if err != nil {
			return err
		}

		return e.Wait(ctx, upid)
	}); err != nil {
		return 0, fmt.Errorf("creating the data disk holder: %w", err)
	}

	return id, nil
}
