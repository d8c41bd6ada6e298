// Kept data disks: moving one from its holder VM back onto a node's VM, and checking where it
// ended up.

package proxmox

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// reattach moves a kept data disk from its holder onto scsi1 of the node's VM, checks that
// scsi1 now holds that very volume (renamed by move_disk to the new VM), and only then deletes
// the holder, which by then must hold no disk at all. Both VMs are re-checked (ownership tag and
// name) on every attempt, and the move carries both config digests, so PVE itself refuses it if
// either VM changed after the check.
func (e *Executor) reattach(ctx context.Context, cluster string, vp VMPlan) error {
	s, pk := vp.Spec, vp.Parked
	nx := expect{cluster: cluster, kind: KindNode, name: s.Name, node: s.PVENode, vmid: vp.VMID}
	hx := expect{cluster: cluster, kind: KindHolder, name: pk.HolderName, node: pk.HolderNode, vmid: pk.HolderVMID}

	if hx.name == "" {
		hx.name = s.ParkedName()
	}

	wrap := func(err error) error {
		return fmt.Errorf("re-attaching kept data disk %s from VM %d: %w", pk.VolID, pk.HolderVMID, err)
	}

	// The volumes the VM references before the move: the kept disk, renamed to this VM, must
	// be none of them.
	var before map[string]bool

	if err := e.retry(ctx, s.Name, "reattach", func(int) error {
		cfg, err := e.verify(ctx, nx)
		if err != nil {
			return err
		}

		if d, busy := cfg[SlotData]; busy {
			return fmt.Errorf("VM %d already has %s on %s, which is not the kept disk; the kept disk stays in holder VM %d (detach that disk, then re-run)",
				vp.VMID, d, SlotData, pk.HolderVMID)
		}

		before = map[string]bool{}
		for _, v := range heldVolumes(cfg) {
			before[v] = true
		}

		return nil
	}); err != nil {
		return wrap(err)
	}

	e.emit(s.Name, "reattach", "%s from VM %d", pk.VolID, pk.HolderVMID)

	err := e.retry(ctx, s.Name, "reattach", func(int) error {
		// the source first: move_disk writes the source's config before the target's
		hcfg, err := e.verifyIfExists(ctx, hx)
		if err != nil {
			return err
		}

		ncfg, err := e.verify(ctx, nx)
		if err != nil {
			return err
		}

		held := parseProp(hcfg[SlotData], "file")["file"]

		switch {
		case held == pk.VolID && ncfg[SlotData] != "":
			// a move that finished between the two reads is no stranger's disk: look again
			if again, err := e.verifyIfExists(ctx, hx); err != nil {
				return err
			} else if parseProp(again[SlotData], "file")["file"] != pk.VolID {
				return fmt.Errorf("%w: the kept disk left holder VM %d while it was read", errMoveInFlight, pk.HolderVMID)
			}

			return fmt.Errorf("VM %d got %s on %s from someone else meanwhile; the kept disk stays in holder VM %d and nothing is deleted",
				vp.VMID, ncfg[SlotData], SlotData, pk.HolderVMID)
		case held == pk.VolID:
			upid, err := e.api.MoveDisk(ctx, pk.HolderNode, pk.HolderVMID, MoveDiskRequest{Disk: pk.Slot, TargetVMID: vp.VMID, TargetDisk: SlotData,
				Digest: hcfg["digest"], TargetDigest: ncfg["digest"]})
			if err != nil {
				return err
			}

			if err := e.Wait(ctx, upid); err != nil {
				return err
			}

			if ncfg, err = e.verify(ctx, nx); err != nil {
				return err
			}
		case held != "":
			return fmt.Errorf("holder VM %d now holds %s on %s, not the kept disk %s of the plan; nothing is moved or deleted",
				pk.HolderVMID, held, SlotData, pk.VolID)
		case ncfg[SlotData] == "":
			// neither holds it: a move between the source's and the target's config write
			// (or gone elsewhere, which the last attempt reports)
			return fmt.Errorf("%w: %s", errMoveInFlight, keptDiskAttached(ncfg, pk, vp.VMID, before))
		}
		// The kept disk left the holder: this attempt or an earlier one whose answer was lost
		// moved it, or someone else did. Only the kept volume on scsi1 counts as success.
		return keptDiskAttached(ncfg, pk, vp.VMID, before)
	})
	if err != nil {
		return wrap(err)
	}

	if s.DataDiskGiB > pk.SizeGiB {
		if err := e.resize(ctx, nx, SlotData, s.DataDiskGiB); err != nil {
			return err
		}
	}

	return e.retry(ctx, s.Name, "remove holder", func(int) error {
		hcfg, err := e.verifyIfExists(ctx, hx)
		if err != nil || hcfg == nil {
			return err
		}

		if vols := heldVolumes(hcfg); len(vols) > 0 {
			return fmt.Errorf("holder VM %d still holds %s; it is not deleted", pk.HolderVMID, strings.Join(vols, ", "))
		}

		e.emit(s.Name, "remove holder", "VMID %d", pk.HolderVMID)

		// no destroy-unreferenced-disks: the holder's name may be matched by volumes that are
		// not in its config; only what it references (nothing) goes
		return e.api.DeleteVM(ctx, pk.HolderNode, pk.HolderVMID, true, false)
	})
}

// errMoveInFlight marks a disk found in neither VM of a move_disk: PVE writes the source's
// config, then the target's, so a move in progress looks like that for a moment. Retryable:
// the next attempt looks again.
var errMoveInFlight = errors.New("the disk is between two VMs (a move in progress?)")

// keptDiskAttached checks that scsi1 of a VM is the kept volume after move_disk renamed it to
// the VM (docs/proxmox.md#move-disk): a volume the VM did not reference before,
// named for this VM, on the kept disk's storage, of its size, with its serial.
func keptDiskAttached(cfg map[string]string, pk *ParkedDisk, vmid int, before map[string]bool) error {
	d := parseProp(cfg[SlotData], "file")
	f := d["file"]

	var why string

	switch {
	case f == "":
		return fmt.Errorf("the kept disk %s is no longer in holder VM %d, and VM %d has nothing on %s: it was moved elsewhere; nothing is deleted",
			pk.VolID, pk.HolderVMID, vmid, SlotData)
	case before[f]:
		why = "the VM referenced it before the move"
	case volumeOwner(f) != vmid:
		why = fmt.Sprintf("it is not named for VM %d", vmid)
	case volumeStorage(f) != volumeStorage(pk.VolID):
		why = "it is on storage " + volumeStorage(f)
	case pk.SizeGiB > 0 && diskGiB(d) != pk.SizeGiB:
		why = fmt.Sprintf("it has %d GiB, the kept disk %d GiB", diskGiB(d), pk.SizeGiB)
	case pk.Serial != "" && d["serial"] != pk.Serial:
		why = fmt.Sprintf("its serial is %q, the kept disk's %q", d["serial"], pk.Serial)
	default:
		return nil
	}

	return fmt.Errorf("VM %d has %s on %s, which is not the kept disk %s (%s); holder VM %d is not deleted",
		vmid, f, SlotData, pk.VolID, why, pk.HolderVMID)
}
