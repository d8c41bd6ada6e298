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
	// Keep parks DataDisk in a holder VM before the VM is deleted.
	Keep bool
	// Holder is an existing holder VM for this node (0 = create one when keeping).
	Holder int
}

// DestroyPlan lists the cluster's VMs to destroy.
type DestroyPlan struct {
	Cluster string
	Items   []DestroyItem
	// Holders are the cluster's holder VMs of kept data disks; they are destroyed only when
	// asked to (IncludeParked), which deletes the kept disks too.
	Holders       []VMResource
	IncludeParked bool
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
}

// PlanDestroy finds the VMs carrying the cluster's ownership tag. VMs without it are never
// part of the plan.
func PlanDestroy(ctx context.Context, api API, cluster string, opts DestroyOptions) (*DestroyPlan, error) {
	api = retryingReads{api}

	vms, err := api.ListVMs(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing VMs: %w", err)
	}

	sort.Slice(vms, func(i, j int) bool {
		return vms[i].Name < vms[j].Name || vms[i].Name == vms[j].Name && vms[i].VMID < vms[j].VMID
	})

	owner := OwnerTag(cluster)
	only := map[string]bool{}

	for _, n := range opts.Nodes {
		only[n] = true
	}

	found := map[string]bool{}
	plan := &DestroyPlan{Cluster: cluster, IncludeParked: opts.IncludeParked}
	holders := map[string]VMResource{}

	for _, vm := range vms {
		if vm.HasTag(owner) && vm.HasTag(TagParked) {
			holders[vm.Name] = vm
		}
	}

	for _, vm := range vms {
		if !vm.HasTag(owner) {
			continue
		}

		if vm.HasTag(TagParked) {
			if opts.IncludeParked && (len(only) == 0 || only[strings.TrimSuffix(vm.Name, "-parked")]) {
				plan.Holders = append(plan.Holders, vm)
			}

			continue
		}

		if len(only) > 0 && !only[vm.Name] {
			continue
		}

		found[vm.Name] = true
		it := DestroyItem{VM: vm}

		cfg, err := api.VMConfig(ctx, vm.Node, vm.VMID)
		if err != nil {
			return nil, fmt.Errorf("VM %s (%d): reading config: %w", vm.Name, vm.VMID, err)
		}

		if d, ok := cfg[SlotData]; ok {
			it.DataDisk = parseProp(d, "file")["file"]
			it.Keep = opts.KeepDataDisks
		}

		if h, ok := holders[ParkedName(vm.Name)]; ok && it.Keep {
			hcfg, err := api.VMConfig(ctx, h.Node, h.VMID)
			if err != nil {
				return nil, fmt.Errorf("VM %s (%d): reading config: %w", h.Name, h.VMID, err)
			}

			if _, busy := hcfg[SlotData]; busy {
				return nil, fmt.Errorf("VM %s already holds a kept data disk of %s; re-provision to re-attach it before keeping another, "+
					"or destroy without --keep-data-disks", h.Name, vm.Name)
			}

			it.Holder = h.VMID
		}

		plan.Items = append(plan.Items, it)
	}

	for _, n := range opts.Nodes {
		if !found[n] {
			return nil, fmt.Errorf("no VM named %s carries the ownership tag %s", n, owner)
		}
	}

	return plan, nil
}

// Empty reports whether there is nothing to destroy.
func (p *DestroyPlan) Empty() bool { return len(p.Items) == 0 && len(p.Holders) == 0 }

// Print lists what destroy will do.
func (p *DestroyPlan) Print(w io.Writer) {
	fmt.Fprintf(w, "Destroy plan for cluster %s (only VMs tagged %s)\n\n", p.Cluster, OwnerTag(p.Cluster))

	for _, it := range p.Items {
		fmt.Fprintf(w, "  - %s (VMID %d on %s) will be stopped and deleted with purge\n", it.VM.Name, it.VM.VMID, it.VM.Node)

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
			if err := e.deleteVM(ctx, h); err != nil {
				return fmt.Errorf("VM %s (%d): %w", h.Name, h.VMID, err)
			}

			return nil
		})
	}

	wg.Wait()

	return errors.Join(errs...)
}

func (e *Executor) destroyVM(ctx context.Context, cluster string, it DestroyItem) error {
	vm := it.VM

	if err := e.stop(ctx, vm); err != nil {
		return err
	}

	if it.Keep && it.DataDisk != "" {
		if err := e.park(ctx, cluster, it); err != nil {
			return err
		}
	}

	return e.deleteVM(ctx, vm)
}

func (e *Executor) stop(ctx context.Context, vm VMResource) error {
	return e.retry(ctx, vm.Name, "stop", func(int) error {
		cur, err := e.findVM(ctx, vm.VMID)
		if err != nil || cur == nil || !cur.Running {
			return err
		}

		e.emit(vm.Name, "stop", "VMID %d", vm.VMID)

		upid, err := e.api.StopVM(ctx, vm.Node, vm.VMID)
		if err != nil {
			return err
		}

		return e.Wait(ctx, upid)
	})
}

func (e *Executor) deleteVM(ctx context.Context, vm VMResource) error {
	if err := e.stop(ctx, vm); err != nil {
		return err
	}

	return e.retry(ctx, vm.Name, "delete", func(int) error {
		cur, err := e.findVM(ctx, vm.VMID)
		if err != nil || cur == nil {
			return err // gone: an earlier attempt deleted it
		}

		e.emit(vm.Name, "delete", "VMID %d (purge, destroy unreferenced disks)", vm.VMID)

		return e.api.DeleteVM(ctx, vm.Node, vm.VMID, true, true)
	})
}

// park moves the VM's data disk into its holder VM (created on demand on the same host), so
// that deleting the VM leaves the disk alone: PVE deletes every disk a VM owns, unused ones
// included, so a detached disk alone would not survive.
func (e *Executor) park(ctx context.Context, cluster string, it DestroyItem) error {
	vm := it.VM
	holder := it.Holder

	if holder == 0 {
		e.allocMu.Lock()
		id, err := e.freeID(ctx)
		if err == nil {
			e.reserved[id] = true
		}
		e.allocMu.Unlock()

		if err != nil {
			return fmt.Errorf("allocating a VMID for the data disk holder: %w", err)
		}

		holder = id
		cfg := Params{
			"name":        ParkedName(vm.Name),
			"memory":      "64",
			"onboot":      "0",
			"tags":        strings.Join([]string{TagManaged, OwnerTag(cluster), TagParked}, ";"),
			"description": fmt.Sprintf("Holds the data disk of %s kept by talforge destroy --keep-data-disks; talforge provision re-attaches it.", vm.Name),
		}

		e.emit(vm.Name, "park", "creating holder VM %s (%d)", cfg["name"], holder)

		if err := e.retry(ctx, vm.Name, "park", func(attempt int) error {
			if attempt > 0 {
				if cur, err := e.findVM(ctx, holder); err != nil || cur != nil {
					if cur != nil {
						return e.waitUnlocked(ctx, vm.Name, holder)
					}

					return err
				}
			}

			upid, err := e.api.CreateVM(ctx, vm.Node, holder, cfg)
			if err != nil {
				return err
			}

			return e.Wait(ctx, upid)
		}); err != nil {
			return fmt.Errorf("creating the data disk holder: %w", err)
		}
	}

	e.emit(vm.Name, "park", "moving %s to VM %d", it.DataDisk, holder)

	err := e.retry(ctx, vm.Name, "park", func(attempt int) error {
		if attempt > 0 {
			cur, err := e.api.VMConfig(ctx, vm.Node, vm.VMID)
			if err != nil {
				return err
			}

			if _, still := cur[SlotData]; !still {
				return nil
			}
		}

		upid, err := e.api.MoveDisk(ctx, vm.Node, vm.VMID, SlotData, holder, SlotData)
		if err != nil {
			return err
		}

		return e.Wait(ctx, upid)
	})
	if err != nil {
		return fmt.Errorf("moving data disk %s to holder VM %d: %w", it.DataDisk, holder, err)
	}

	return nil
}
