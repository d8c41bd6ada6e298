// Ownership is re-checked before every change: a VM that changed after the plan or during a
// move is refused, and only errors a re-check can clear are retried.

package proxmox

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/talforge/talforge/internal/testenv/pvesim"
)

func volumeOf(srv *pvesim.Server, volid string) *pvesim.Volume {
	for _, v := range srv.Volumes() {
		if v.VolID == volid {
			return &v
		}
	}

	return nil
}

// TestOwnershipChangedAfterPlan: someone renames, retags or replaces a VM between the plan
// (and the confirmation prompt) and the execution: destroy refuses that VM and goes on with
// the others; nothing is stopped, moved or deleted on it.
func TestOwnershipChangedAfterPlan(t *testing.T) {
	t.Parallel()

	cases := []struct {
		name   string
		keep   bool
		change func(v *pvesim.VM)
		reason string
	}{
		{"renamed", false, func(v *pvesim.VM) { v.Config["name"] = "someone-elses" }, "the name changed"},
		{"retagged for another cluster", true, func(v *pvesim.VM) { v.Config["tags"] = "talforge;talforge.node.other;worker" }, "tagged for cluster other"},
		{"ownership tag removed", false, func(v *pvesim.VM) { v.Config["tags"] = "worker" }, "no ownership tag"},
		{"turned into a holder", true, func(v *pvesim.VM) { v.Config["tags"] = "talforge;talforge.parked.tazlab" }, "tagged as a data disk holder"},
		{"replaced by a foreign VM", true, func(v *pvesim.VM) {
			v.Config = map[string]string{"name": "tazlab-worker-1", "memory": "1024", "tags": "prod", SlotData: "local-lvm:vm-161-disk-7,size=100G"}
		}, "no ownership tag"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			ctx := context.Background()
			e := newEnv(t, "tazlab")

			if _, _, err := e.provision(ctx, Options{}); err != nil {
				t.Fatal(err)
			}

			dp, err := PlanDestroy(ctx, e.api, "tazlab", DestroyOptions{KeepDataDisks: tc.keep})
			if err != nil || len(dp.Items) != 2 {
				t.Fatalf("plan: %v, %+v", err, dp)
			}

			e.srv.Modify(161, tc.change)
			want, _ := e.srv.VM(161)

			e.srv.ResetLog()

			err = e.executor(Options{}).Destroy(ctx, dp)
			if !errors.Is(err, ErrNotOwned) || !strings.Contains(err.Error(), "VM 161") || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("destroy error %v, want ErrNotOwned for VM 161 (%s)", err, tc.reason)
			}

			got, ok := e.srv.VM(161)
			if !ok || !maps.Equal(got.Config, want.Config) || !got.Running {
				t.Errorf("VM 161 changed: exists %v, running %v\n  %v\n  want %v", ok, got.Running, got.Config, want.Config)
			}

			if _, ok := e.srv.VM(151); ok {
				t.Errorf("VM 151 (unchanged) was not destroyed")
			}

			for _, r := range e.srv.MutatingRequests() {
				if strings.Contains(r.Path, "/161") || r.Params["target-vmid"] == "161" {
					t.Errorf("request to the changed VM: %s %s %v", r.Method, r.Path, r.Params)
				}
			}
		})
	}
}

// TestOwnershipChangedDuringTheMove: the VM is retagged just before PVE processes the
// move_disk that would park its data disk (after talforge's own check): the config digest
// makes PVE refuse the move, the re-check then refuses the VM, and it keeps its disk.
func TestOwnershipChangedDuringTheMove(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	e := newEnv(t, "tazlab")

	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatal(err)
	}

	dp, err := PlanDestroy(ctx, e.api, "tazlab", DestroyOptions{KeepDataDisks: true, Nodes: []string{"tazlab-worker-1"}})
	if err != nil {
		t.Fatal(err)
	}

	disk := dp.Items[0].DataDisk
	h := e.srv.InjectFault(pvesim.Fault{Kind: pvesim.FaultActor, Method: "POST", Path: `/nodes/pve/qemu/161/move_disk`,
		Act: func() { e.srv.Modify(161, func(v *pvesim.VM) { v.Config["tags"] = "prod" }) }})

	err = e.executor(Options{}).Destroy(ctx, dp)
	if !errors.Is(err, ErrNotOwned) || h.Fired() != 1 {
		t.Fatalf("destroy error %v (actor fired %d), want ErrNotOwned", err, h.Fired())
	}

	vm, ok := e.srv.VM(161)
	if !ok || parseProp(vm.Config[SlotData], "file")["file"] != disk || volumeOf(e.srv, disk) == nil {
		t.Fatalf("VM 161 lost its data disk %s: exists %v, %v", disk, ok, vm.Config)
	}
}

// TestProvisionRefusesChangedVM: a VM retagged between provision's plan and its apply is not
// updated (nor started), the others are.
func TestProvisionRefusesChangedVM(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	e := newEnv(t, "tazlab")

	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatal(err)
	}

	e.cluster.Nodes[0].Memory, e.cluster.Nodes[1].Memory = 6144, 6144
	e.refresh()

	p := e.plan(ctx)
	e.srv.Modify(161, func(v *pvesim.VM) { v.Config["tags"] = "prod;worker" })

	_, err := e.executor(Options{}).Apply(ctx, p)
	if !errors.Is(err, ErrNotOwned) || !strings.Contains(err.Error(), "VM 161") {
		t.Fatalf("apply error %v, want ErrNotOwned for VM 161", err)
	}

	// memory waits for a restart of a running VM: it is a pending change
	if vm, _ := e.srv.VM(161); vm.Config["memory"] != "8192" || len(vm.Pending) != 0 || vm.Config["tags"] != "prod;worker" {
		t.Errorf("the retagged VM was changed: %v, pending %v", vm.Config, vm.Pending)
	}

	if vm, _ := e.srv.VM(151); vm.Pending["memory"] != "6144" {
		t.Errorf("VM 151 was not updated: memory %s, pending %v", vm.Config["memory"], vm.Pending)
	}
}

// TestRetryableAfterARecheck: a stale config digest and a disk caught between the two VMs of a
// move are retried (every attempt re-reads and re-checks first); a failed ownership check is
// not.
func TestRetryableAfterARecheck(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{&APIError{Status: 500, Message: "VM 950: detected modified configuration - file changed by other user? Try again."}, true},
		{&TaskError{ExitStatus: "VM 161: detected modified configuration - file changed by other user? Try again."}, true},
		{&TaskError{ExitStatus: "checksum mismatch (file change by other user?)"}, true},
		{fmt.Errorf("x: %w", errMoveInFlight), true},
		{&OwnershipError{VMID: 161, Reason: "the name changed"}, false},
		{fmt.Errorf("VM 161: %w", &OwnershipError{VMID: 161}), false},
	}
	for _, tc := range cases {
		if got := Retryable(tc.err); got != tc.want {
			t.Errorf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}

	if err := fmt.Errorf("x: %w", &OwnershipError{VMID: 1}); !errors.Is(err, ErrNotOwned) {
		t.Errorf("an OwnershipError is not ErrNotOwned")
	}
}
