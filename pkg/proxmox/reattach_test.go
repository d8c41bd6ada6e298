// Re-attaching kept data disks: the attachment check, retries, lost answers and runs that
// stop half way.

package proxmox

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/talforge/talforge/internal/testenv/pvesim"
)

func TestKeptDiskAttached(t *testing.T) {
	pk := &ParkedDisk{HolderVMID: 900, VolID: "local-lvm:vm-900-disk-0", SizeGiB: 100, Serial: "talforge-longhorn"}
	ok := "local-lvm:vm-151-disk-2,backup=0,discard=on,serial=talforge-longhorn,size=100G,ssd=1"
	before := map[string]bool{"local-lvm:vm-151-disk-0": true, "local-lvm:vm-151-disk-1": true}
	cases := []struct {
		name, scsi1, err string
	}{
		{"the kept disk, renamed", ok, ""},
		{"dir storage path form", "local-lvm:151/vm-151-disk-2.raw,serial=talforge-longhorn,size=100G", ""},
		{"nothing", "", "nothing on scsi1"},
		{"referenced before", strings.Replace(ok, "disk-2", "disk-1", 1), "referenced it before"},
		{"another VM's volume", strings.Replace(ok, "vm-151", "vm-152", 1), "not named for VM 151"},
		{"the holder's name", strings.Replace(ok, "vm-151-disk-2", "vm-900-disk-0", 1), "not named for VM 151"},
		{"other storage", strings.Replace(ok, "local-lvm:", "ceph:", 1), "on storage ceph"},
		{"other size", strings.Replace(ok, "size=100G", "size=50G", 1), "50 GiB"},
		{"other serial", strings.Replace(ok, "serial=talforge-longhorn", "serial=x", 1), `serial is "x"`},
	}
	for _, tc := range cases {
		cfg := map[string]string{}
		if tc.scsi1 != "" {
			cfg[SlotData] = tc.scsi1
		}

		err := keptDiskAttached(cfg, pk, 151, before)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
	}
}

// keptEnv provisions tazlab and destroys it keeping the data disks; it returns the kept
// volumes by node.
func keptEnv(t *testing.T) (*env, map[string]pvesim.Volume) {
	t.Helper()

	ctx := context.Background()
	e := newEnv(t, "tazlab")

	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatal(err)
	}

	kept := map[string]pvesim.Volume{}

	for _, vm := range e.srv.VMs() {
		if v := volumeOf(e.srv, parseProp(vm.Config[SlotData], "file")["file"]); v != nil {
			kept[vm.Name()] = *v
		}
	}

	dp, err := PlanDestroy(ctx, e.api, "tazlab", DestroyOptions{KeepDataDisks: true})
	if err != nil {
		t.Fatal(err)
	}

	if err := e.executor(Options{}).Destroy(ctx, dp); err != nil {
		t.Fatal(err)
	}

	return e, kept
}

// holderOf returns the holder VM of a node and the volume it holds.
func holderOf(t *testing.T, srv *pvesim.Server, node string) (pvesim.VM, string) {
	t.Helper()

	for _, vm := range srv.VMs() {
		if vm.Name() == node+"-parked" {
			return vm, parseProp(vm.Config[SlotData], "file")["file"]
		}
	}

	t.Fatalf("no holder for %s", node)

	return pvesim.VM{}, ""
}

// TestReattachRetryWithForeignDisk: the first move_disk of a re-attach is lost (the
// connection drops before PVE sees it) while someone puts another disk on scsi1 of the new VM.
// The retry must not count that disk as the kept one: the holder keeps the kept disk and is
// not deleted.
func TestReattachRetryWithForeignDisk(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	e, kept := keptEnv(t)
	holder, keptVol := holderOf(t, e.srv, "tazlab-worker-1")

	p := e.plan(ctx)
	e.srv.InjectFault(pvesim.Fault{Kind: pvesim.FaultDropBefore, Method: "POST", Path: `/nodes/pve/qemu/` + strconv.Itoa(holder.ID) + `/move_disk`,
		Act: func() {
			e.srv.Modify(161, func(v *pvesim.VM) {
				v.Config[SlotData] = "local-lvm:vm-161-disk-5,backup=0,discard=on,serial=talforge-longhorn,size=100G,ssd=1"
			})
		}})

	_, err := e.executor(Options{}).Apply(ctx, p)
	if err == nil || !strings.Contains(err.Error(), "tazlab-worker-1") || !strings.Contains(err.Error(), "stays in holder VM "+strconv.Itoa(holder.ID)) {
		t.Fatalf("apply error %v, want the re-attach of tazlab-worker-1 refused", err)
	}

	h, ok := e.srv.VM(holder.ID)
	if !ok || parseProp(h.Config[SlotData], "file")["file"] != keptVol {
		t.Fatalf("holder %d lost the kept disk %s: exists %v, %v", holder.ID, keptVol, ok, h.Config)
	}

	if v := volumeOf(e.srv, keptVol); v == nil || v.CTime != kept["tazlab-worker-1"].CTime {
		t.Fatalf("kept volume %s: %+v", keptVol, v)
	}

	// the other node is unaffected
	if vm, _ := e.srv.VM(151); volumeOf(e.srv, parseProp(vm.Config[SlotData], "file")["file"]).CTime != kept["tazlab-cp-1"].CTime {
		t.Errorf("VM 151 did not get its kept disk back: %v", vm.Config)
	}
}

// TestReattachAnswerLost: the move_disk happens but its answer is lost; the retry recognises
// the kept disk on scsi1 (renamed to the new VM) and only then deletes the empty holder.
func TestReattachAnswerLost(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	e, kept := keptEnv(t)

	h := e.srv.InjectFault(pvesim.Fault{Kind: pvesim.FaultDropAfter, Method: "POST", Path: `/nodes/pve/qemu/\d+/move_disk`, Count: 2})

	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatalf("provision: %v\n%s", err, e.events)
	}

	if h.Fired() != 2 {
		t.Fatalf("fault fired %d times", h.Fired())
	}

	e.assertConverged()

	for name, old := range kept {
		vm := e.vmByName(name)
		if v := volumeOf(e.srv, parseProp(vm.Config[SlotData], "file")["file"]); v == nil || v.CTime != old.CTime || v.VMID != vm.ID {
			t.Errorf("%s: scsi1 %s is not its kept disk %+v", name, vm.Config[SlotData], old)
		}
	}
}

// TestReattachAcrossRuns: a run that creates the VM but cannot move the kept disk leaves it
// in the holder; the next run re-attaches it to the existing VM instead of allocating an empty
// data disk.
func TestReattachAcrossRuns(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	e, kept := keptEnv(t)
	holder, _ := holderOf(t, e.srv, "tazlab-cp-1")

	e.srv.InjectFault(pvesim.Fault{Kind: pvesim.FaultHTTPError, Method: "POST", Path: `/nodes/pve/qemu/` + strconv.Itoa(holder.ID) + `/move_disk`,
		Status: 500, Message: "storage migration failed", Count: -1})

	if _, _, err := e.provision(ctx, Options{}); err == nil {
		t.Fatalf("first run succeeded despite the failing move")
	}

	e.srv.ClearFaults()

	p := e.plan(ctx)
	if v := p.VMs[0]; v.Action != ActionUpdate || v.Parked == nil || v.Parked.HolderVMID != holder.ID {
		t.Fatalf("second plan for %s: %s, re-attach %+v", v.Spec.Name, v.Action, v.Parked)
	}

	if _, err := e.executor(Options{}).Apply(ctx, p); err != nil {
		t.Fatalf("second run: %v\n%s", err, e.events)
	}

	e.assertConverged()

	vm := e.vmByName("tazlab-cp-1")
	if v := volumeOf(e.srv, parseProp(vm.Config[SlotData], "file")["file"]); v == nil || v.CTime != kept["tazlab-cp-1"].CTime {
		t.Errorf("scsi1 %s is not the kept disk", vm.Config[SlotData])
	}

	n := 0

	for _, v := range e.srv.Volumes() {
		if v.Size == 100<<30 {
			n++
		}
	}

	if n != 2 {
		t.Errorf("%d data volumes, want the 2 kept ones", n)
	}
}
