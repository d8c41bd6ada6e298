// Applying one VM's plan: create (or clone), update, resize and start.

package proxmox

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// create makes the VM (or clones the template), re-attaches a parked data disk, and converges
// a clone's config. Each attempt first re-observes, so a create whose answer was lost (dropped
// connection) is recognised instead of duplicated.
func (e *Executor) create(ctx context.Context, cluster string, vp *VMPlan) error {
	s := vp.Spec
	cfg := Params{}

	for k, v := range s.Config {
		cfg[k] = v
	}

	if vp.Parked != nil {
		delete(cfg, SlotData) // re-attached below, not allocated
	}

	if s.Pool != "" {
		cfg["pool"] = s.Pool
	}

	err := e.retry(ctx, s.Name, "create", func(attempt int) error {
		if attempt > 0 {
			vm, err := e.findVM(ctx, vp.VMID)
			if err != nil {
				return err
			}

			if vm != nil && (vm.IsNodeOf(cluster) && vm.Name == s.Name || vm.Locked && vm.Name == "") {
				// An earlier attempt's create may still run (PVE shows it locked and nameless),
				// or someone else's: which one shows only once the lock is gone.
				if vm, err = e.afterLock(ctx, vp.VMID); err != nil {
					return err
				}

				ours, err := e.createdHere(ctx, cluster, s, vm)
				if err != nil || ours {
					return err
				}
			}

			if vm != nil {
				if s.VMID != 0 {
					return fmt.Errorf("VMID %d was taken by VM %q meanwhile; it is not ours, so it is not touched", vp.VMID, vm.Name)
				}

				e.allocMu.Lock()
				id, err := e.freeID(ctx)
				if err == nil {
					e.reserved[id] = true
				}
				e.allocMu.Unlock()

				if err != nil {
					return err
				}

				e.emit(s.Name, "create", "VMID %d was taken meanwhile; using %d", vp.VMID, id)
				vp.VMID = id
			}
		}

		e.emit(s.Name, "create", "VMID %d on %s", vp.VMID, s.PVENode)

		var (
			upid string
			err  error
		)

		if s.Template != 0 {
			upid, err = e.clone(ctx, cluster, s, vp.VMID)
		} else {
			upid, err = e.api.CreateVM(ctx, s.PVENode, vp.VMID, cfg)
		}

		if err != nil {
			if s.VMID == 0 && idTaken(err) {
				// PVE's "VM <id> already exists": another client took the id nextid gave us;
				// the retry allocates another one.
				return fmt.Errorf("%w: %w", errVMIDTaken, err)
			}

			return err
		}

		return e.Wait(ctx, upid)
	})
	if err != nil {
		return fmt.Errorf("creating VM %d: %w", vp.VMID, err)
	}

	if s.Template != 0 {
		// a clone has the template's config: converge it like an update
		cur, err := e.api.VMConfig(ctx, s.PVENode, vp.VMID)
		if err != nil {
			return fmt.Errorf("reading cloned config: %w", err)
		}

		spec := s
		if vp.Parked != nil {
			spec.Config = cfg
		}

		d := diffConfig(spec, cur)
		if cur["description"] == CloneMarker(cluster, s.Name) {
			d.del = append(d.del, "description") // tagged by this update: the marker has done its job
		}
		if len(d.errs) > 0 {
			return fmt.Errorf("converging the clone of template %d: %s", s.Template, strings.Join(d.errs, "; "))
		}

		up := VMPlan{Spec: s, VMID: vp.VMID, Set: d.set, Delete: d.del, Resize: d.resize}
		if err := e.update(ctx, cluster, up, true); err != nil {
			return err
		}
	}

	if vp.Parked != nil {
		if err := e.reattach(ctx, cluster, *vp); err != nil {
			return err
		}
	}

	return nil
}

// createdHere reports whether vm, found unlocked at the id a lost create request asked for, is
// that create's VM: the node's name and the ownership tags, or for a clone, which gets its tags
// only afterwards, the marker description the clone request carried.
func (e *Executor) createdHere(ctx context.Context, cluster string, s VMSpec, vm *VMResource) (bool, error) {
	if vm == nil || vm.Name != s.Name {
		return false, nil
	}

	ours := vm.IsNodeOf(cluster)
	if !ours && s.Template != 0 && vm.Ownership().Kind == KindNone {
		var err error
		if ours, err = unfinishedClone(ctx, e.api, *vm, cluster, s.Name); err != nil {
			return false, err
		}
	}

	if ours {
		e.emit(s.Name, "create", "VMID %d exists (an earlier attempt created it)", vm.VMID)
	}

	return ours, nil
}

// update sends the config change and grows disks, each after re-checking that the VM is still
// the cluster's node VM and with its config digest (PVE refuses the change if the config
// changed after the check). fresh: the VM was just cloned and carries the template's tags.
//
// An adopted VM's tags are merged again with the ones read right before the update: tags only
// ever get added to it, and the update carries that read's digest.
func (e *Executor) update(ctx context.Context, cluster string, vp VMPlan, fresh bool) error {
	s := vp.Spec
	x := vmExpect(cluster, vp)
	x.fresh = fresh

	if len(vp.Set) > 0 || len(vp.Delete) > 0 {
		p := Params{}
		for k, v := range vp.Set {
			p[k] = v
		}

		if len(vp.Delete) > 0 {
			p["delete"] = strings.Join(vp.Delete, ",")
		}

		e.emit(s.Name, "update", "%s", strings.Join(p.Keys(), ", "))

		if err := e.retry(ctx, s.Name, "update", func(int) error {
			cfg, err := e.verify(ctx, x)
			if err != nil {
				return err
			}

			p["digest"] = cfg["digest"]

			if len(vp.AddTags) > 0 {
				p["tags"] = mergeTags(cfg["tags"], vp.AddTags)
			}

			upid, err := e.api.UpdateVM(ctx, s.PVENode, vp.VMID, p)
			if err != nil {
				return err
			}

			return e.Wait(ctx, upid)
		}); err != nil {
			return fmt.Errorf("updating config: %w", err)
		}
	}

	disks := make([]string, 0, len(vp.Resize))
	for d := range vp.Resize {
		disks = append(disks, d)
	}

	sort.Strings(disks)

	for _, d := range disks {
		if err := e.resize(ctx, x, d, vp.Resize[d]); err != nil {
			return err
		}
	}

	return nil
}

// resize grows a disk after re-checking ownership, with the config digest.
func (e *Executor) resize(ctx context.Context, x expect, disk string, gib int) error {
	size := strconv.Itoa(gib) + "G"
	e.emit(x.name, "resize", "%s to %s", disk, size)

	if err := e.retry(ctx, x.name, "resize", func(int) error {
		cfg, err := e.verify(ctx, x)
		if err != nil {
			return err
		}

		upid, err := e.api.ResizeDisk(ctx, x.node, x.vmid, disk, size, cfg["digest"])
		if err != nil {
			return err
		}

		return e.Wait(ctx, upid)
	}); err != nil {
		return fmt.Errorf("growing %s to %s: %w", disk, size, err)
	}

	return nil
}

// start starts the VM and waits until PVE reports it running.
func (e *Executor) start(ctx context.Context, cluster string, vp VMPlan) error {
	s, vmid := vp.Spec, vp.VMID
	e.emit(s.Name, "start", "VMID %d", vmid)
	x := vmExpect(cluster, vp)

	err := e.retry(ctx, s.Name, "start", func(attempt int) error {
		if attempt > 0 {
			vm, err := e.findVM(ctx, vmid)
			if err != nil {
				return err
			}

			if vm != nil && vm.Running {
				return nil
			}
		}

		if _, err := e.verify(ctx, x); err != nil {
			return err
		}

		upid, err := e.api.StartVM(ctx, s.PVENode, vmid)
		if err != nil {
			return err
		}

		err = e.Wait(ctx, upid)

		var te *TaskError
		if errors.As(err, &te) && strings.Contains(te.ExitStatus, "already running") {
			return nil
		}

		return err
	})
	if err != nil {
		return fmt.Errorf("starting VM %d: %w", vmid, err)
	}

	var vm *VMResource
	if err := e.retry(ctx, s.Name, "check running", func(int) (err error) {
		vm, err = e.findVM(ctx, vmid)
		return err
	}); err != nil {
		return fmt.Errorf("checking VM %d is running: %w", vmid, err)
	}

	if vm == nil || !vm.Running {
		return fmt.Errorf("VM %d is not running after a successful start task", vmid)
	}

	e.emit(s.Name, "running", "VMID %d", vmid)

	return nil
}

// clone starts a full clone of the profile's template as VM vmid on the node's host. PVE
// clones on the host that holds the template (its config lives there) and places the copy
// with target=<host>; full=1, because a linked clone takes no target storage and cannot go
// to another host (qemu-server clone_vm).
func (e *Executor) clone(ctx context.Context, cluster string, s VMSpec, vmid int) (string, error) {
	tmpl, err := e.findVM(ctx, s.Template)
	if err != nil {
		return "", err
	}
	if tmpl == nil || !tmpl.Template {
		return "", fmt.Errorf("template %d does not exist (proxmox.template): nothing to clone", s.Template)
	}
	// CloneVM asks for full=1; the description marks the clone as ours until it is tagged.
	p := Params{"name": s.Name, "storage": s.Storage, "description": CloneMarker(cluster, s.Name)}
	if s.Pool != "" {
		p["pool"] = s.Pool
	}
	if tmpl.Node != s.PVENode {
		p["target"] = s.PVENode
		e.emit(s.Name, "create", "cloning template %d from %s to %s", s.Template, tmpl.Node, s.PVENode)
	}
	return e.api.CloneVM(ctx, tmpl.Node, s.Template, vmid, p)
}

// idTaken recognises PVE's refusal of a VMID that a VM or container holds
// (PVE::Cluster::check_vmid_unused: "VM <id> already exists on node ..." or "CT <id> ...").
func idTaken(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == 500 && strings.Contains(ae.Message, " already exists on node ")
}
