package proxmox

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/talforge/talforge/internal/testenv/pvesim"
	"github.com/talforge/talforge/pkg/profile"
)

// TestProvisionHAProfile creates every VM of the HA profile through the real Telmate client,
// then re-runs: the second run must send no request that changes anything.
func TestProvisionHAProfile(t *testing.T) {
	e := newEnv(t, "ha")
	ctx := context.Background()

	p := e.plan(ctx)
	if p.Err() != nil {
		t.Fatalf("plan: %v", p.Err())
	}

	for _, v := range p.VMs {
		if v.Action != ActionCreate {
			t.Errorf("%s: action %s, want create", v.Spec.Name, v.Action)
		}
	}

	if len(p.ISOs) != 2 || p.ISOs[0].Present || p.ISOs[1].Present {
		t.Errorf("ISO plan %+v, want missing on pve1 and pve2", p.ISOs)
	}

	res, err := e.executor(Options{}).Apply(ctx, p)
	if err != nil {
		t.Fatalf("apply: %v\nevents:\n%s\nrequests:\n%s", err, e.events, summary(e.srv))
	}

	e.assertConverged()

	for _, r := range res.VMs {
		if r.VMID == 0 || !r.Started {
			t.Errorf("result %+v", r)
		}
	}

	for _, r := range e.srv.Requests() {
		if r.Status >= 400 {
			t.Errorf("error answer during a clean run: %s %s -> %d %s %v", r.Method, r.Path, r.Status, r.Message, r.Errors)
		}
	}
	// the VM config is exactly the spec
	cp1 := e.vmByName("cp-1")
	want := map[string]string{
		"name": "cp-1", "cores": "4", "memory": "8192", "balloon": "0", "cpu": "host", "scsihw": "virtio-scsi-pci",
		"net0":      "virtio=46:69:A6:A3:E1:AF,bridge=vmbr0,tag=20",
		"ipconfig0": "ip=10.20.0.11/24,gw=10.20.0.1", "nameserver": "10.20.0.1", "serial0": "socket",
		"agent": "enabled=1", "boot": "order=scsi0;ide0", "onboot": "1", "ostype": "l26",
		"tags": "controlplane;talforge;talforge.node.ha",
		"ide0": e.boot.VolID() + ",media=cdrom,size=100M",
	}
	for k, v := range want {
		if cp1.Config[k] != v {
			t.Errorf("cp-1 %s = %q, want %q", k, cp1.Config[k], v)
		}
	}

	if !strings.HasPrefix(cp1.Config["scsi0"], "local-lvm:vm-") || !strings.Contains(cp1.Config["scsi0"], "size=40G") {
		t.Errorf("cp-1 scsi0 = %q", cp1.Config["scsi0"])
	}

	if _, has := cp1.Config["scsi1"]; has {
		t.Errorf("control plane without longhornDisk got a data disk: %s", cp1.Config["scsi1"])
	}

	w1 := e.vmByName("worker-1")
	if d := w1.Config["scsi1"]; !strings.Contains(d, "serial="+profile.LonghornDiskSerial) || !strings.Contains(d, "size=200G") || !strings.Contains(d, "backup=0") {
		t.Errorf("worker-1 data disk %q", d)
	}

	if !strings.HasPrefix(w1.Config["ide2"], "local-lvm:vm-") || !strings.Contains(w1.Config["ide2"], "cloudinit") {
		t.Errorf("worker-1 cloud-init drive %q", w1.Config["ide2"])
	}

	// re-run: nothing to do, no mutating request
	e.srv.ResetLog()

	p2 := e.plan(ctx)
	if p2.HasChanges() {
		var buf bytes.Buffer
		p2.Print(&buf)
		t.Fatalf("second plan has changes:\n%s", buf.String())
	}

	if _, err := e.executor(Options{}).Apply(ctx, p2); err != nil {
		t.Fatalf("second apply: %v", err)
	}

	if m := mutating(e.srv); len(m) != 0 {
		t.Errorf("second run sent mutating requests: %v", m)
	}
}

// TestChangedProfileUpdatesOneVM raises one node's memory: exactly that VM gets one config
// update, and the plan shows the field-level diff.
func TestChangedProfileUpdatesOneVM(t *testing.T) {
	e := newEnv(t, "ha")
	ctx := context.Background()

	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatalf("provision: %v", err)
	}

	for i := range e.cluster.Nodes {
		if e.cluster.Nodes[i].Name == "worker-2" {
			e.cluster.Nodes[i].Memory = 32768
		}
	}

	e.refresh()
	e.srv.ResetLog()

	p := e.plan(ctx)

	var buf bytes.Buffer
	p.Print(&buf)

	out := buf.String()
	if !strings.Contains(out, "~ worker-2 (VMID ") || !strings.Contains(out, "~ memory: 16384 -> 32768") ||
		!strings.Contains(out, "Plan: 0 to create, 1 to update, 0 to start, 5 unchanged.") {
		t.Errorf("plan output:\n%s", out)
	}

	res, err := e.executor(Options{}).Apply(ctx, p)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}

	m := mutating(e.srv)
	if len(m) != 1 || !strings.HasPrefix(m[0], "POST /nodes/pve2/qemu/") || !strings.HasSuffix(m[0], "/config -> 200") {
		t.Fatalf("mutating requests %v, want one POST config", m)
	}

	vm := e.vmByName("worker-2")
	if vm.Pending["memory"] != "32768" {
		t.Errorf("memory change should be pending on the running VM: config %q pending %v", vm.Config["memory"], vm.Pending)
	}

	for _, r := range res.VMs {
		if r.Name == "worker-2" && (len(r.Pending) != 1 || r.Pending[0] != "memory") {
			t.Errorf("result pending = %v", r.Pending)
		}
	}
	// and the next run is a no-op although the change is still pending
	e.srv.ResetLog()

	if p := e.plan(ctx); p.HasChanges() {
		t.Errorf("plan after update has changes")
	}
}

// TestForeignVMNeverTouched: VMs with a node's name or VMID but without the ownership tag are
// conflicts; nothing is sent to them, and provision refuses to run.
func TestForeignVMNeverTouched(t *testing.T) {
	e := newEnv(t, "tazlab")
	ctx := context.Background()
	e.srv.Seed(
		pvesim.SeedVM{ID: 500, Config: map[string]string{"name": "tazlab-cp-1", "tags": "prod", "memory": "1024"}, Running: true},
		pvesim.SeedVM{ID: 161, Config: map[string]string{"name": "legacy", "memory": "1024"}},
		pvesim.SeedVM{ID: 700, Config: map[string]string{"name": "tazlab-worker-1", "tags": "talforge;talforge-other"}},
	)

	p := e.plan(ctx)

	err := p.Err()
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("plan error %v, want ErrConflict", err)
	}

	for _, want := range []string{`VM 500 "tazlab-cp-1"`, `VM 161 "legacy"`, `VM 700 "tazlab-worker-1"`, "not the ownership tag talforge.node.tazlab"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}

	if _, err := e.executor(Options{}).Apply(ctx, p); !errors.Is(err, ErrConflict) {
		t.Fatalf("apply error %v, want ErrConflict", err)
	}

	if m := mutating(e.srv); len(m) != 0 {
		t.Errorf("mutating requests despite conflicts: %v", m)
	}

	for _, id := range []int{500, 161, 700} {
		vm, ok := e.srv.VM(id)
		if !ok {
			t.Fatalf("foreign VM %d vanished", id)
		}

		if id == 500 && !vm.Running {
			t.Errorf("foreign VM 500 was stopped")
		}
	}
}

// TestDestroyOnlyOwned destroys a cluster next to a foreign VM and another cluster's VM.
func TestDestroyOnlyOwned(t *testing.T) {
	e := newEnv(t, "tazlab")
	ctx := context.Background()

	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatalf("provision: %v", err)
	}

	e.srv.Seed(
		pvesim.SeedVM{ID: 900, Config: map[string]string{"name": "tazlab-cp-1-backup", "memory": "1024"}, Running: true},
		pvesim.SeedVM{ID: 901, Config: map[string]string{"name": "other-cp-1", "tags": "talforge;talforge-other"}, Running: true},
	)
	e.srv.ResetLog()

	dp, err := PlanDestroy(ctx, e.api, "tazlab", DestroyOptions{})
	if err != nil {
		t.Fatal(err)
	}

	if len(dp.Items) != 2 {
		t.Fatalf("destroy plan has %d items, want 2", len(dp.Items))
	}

	if err := e.executor(Options{}).Destroy(ctx, dp); err != nil {
		t.Fatalf("destroy: %v\n%s", err, summary(e.srv))
	}

	if n := len(e.owned()); n != 0 {
		t.Errorf("%d owned VMs left", n)
	}

	for _, id := range []int{900, 901} {
		if vm, ok := e.srv.VM(id); !ok || !vm.Running {
			t.Errorf("VM %d was touched (exists %v)", id, ok)
		}
	}

	for _, r := range e.srv.MutatingRequests() {
		if strings.Contains(r.Path, "/900") || strings.Contains(r.Path, "/901") {
			t.Errorf("request to a foreign VM: %s %s", r.Method, r.Path)
		}
	}

	for _, r := range e.srv.Requests() {
		if r.Method == "DELETE" && (r.Params["purge"] != "1" || r.Params["destroy-unreferenced-disks"] != "1") {
			t.Errorf("DELETE without purge: %s %v", r.Path, r.Params)
		}
	}

	for _, v := range e.srv.Volumes() {
		if v.VMID == 151 || v.VMID == 161 {
			t.Errorf("volume %s of a destroyed VM survived", v.VolID)
		}
	}
}

// TestKeepDataDisks destroys with --keep-data-disks and re-provisions: the Longhorn disks
// survive in holder VMs and the re-created VMs get them back on scsi1.
func TestKeepDataDisks(t *testing.T) {
	e := newEnv(t, "tazlab")
	ctx := context.Background()

	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatalf("provision: %v", err)
	}

	before := e.vmByName("tazlab-worker-1").Config["scsi1"]

	dp, err := PlanDestroy(ctx, e.api, "tazlab", DestroyOptions{KeepDataDisks: true})
	if err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	dp.Print(&buf)

	if !strings.Contains(buf.String(), "is kept in VM tazlab-worker-1-parked") {
		t.Errorf("destroy plan:\n%s", buf.String())
	}

	if err := e.executor(Options{}).Destroy(ctx, dp); err != nil {
		t.Fatalf("destroy: %v\n%s", err, summary(e.srv))
	}

	owned := e.owned()
	if len(owned) != 2 || len(owned["tazlab-cp-1-parked"]) != 1 || len(owned["tazlab-worker-1-parked"]) != 1 {
		t.Fatalf("after destroy owned = %v", owned)
	}

	holder := owned["tazlab-worker-1-parked"][0]
	if !strings.Contains(holder.Config["scsi1"], "serial="+profile.LonghornDiskSerial) {
		t.Errorf("holder scsi1 = %q", holder.Config["scsi1"])
	}
	// a destroy without --include-parked-disks leaves holders alone
	dp2, err := PlanDestroy(ctx, e.api, "tazlab", DestroyOptions{})
	if err != nil || !dp2.Empty() {
		t.Errorf("second destroy plan %+v, %v; want empty", dp2, err)
	}

	p := e.plan(ctx)

	buf.Reset()
	p.Print(&buf)

	if !strings.Contains(buf.String(), "re-attaches the kept data disk") {
		t.Errorf("plan:\n%s", buf.String())
	}

	if _, err := e.executor(Options{}).Apply(ctx, p); err != nil {
		t.Fatalf("re-provision: %v\n%s", err, e.events)
	}

	e.assertConverged()

	after := e.vmByName("tazlab-worker-1").Config["scsi1"]
	if !strings.Contains(after, "serial="+profile.LonghornDiskSerial) || !strings.Contains(after, "size=100G") {
		t.Errorf("re-attached scsi1 = %q (before destroy %q)", after, before)
	}

	volumes := 0

	for _, v := range e.srv.Volumes() {
		if strings.Contains(v.VolID, "disk") && v.Size == 100<<30 {
			volumes++
		}
	}

	if volumes != 2 {
		t.Errorf("%d 100G data volumes, want the 2 original ones (no new allocation)", volumes)
	}

	if p := e.plan(ctx); p.HasChanges() {
		t.Errorf("plan after re-attach has changes")
	}
}

// TestCancelAndConverge cancels an apply mid-way (Ctrl-C) and checks it returns promptly and
// that a re-run converges.
func TestCancelAndConverge(t *testing.T) {
	e := newEnv(t, "ha", withLatency(map[string]time.Duration{"qmcreate": 400 * time.Millisecond, "qmstart": 50 * time.Millisecond}))
	ctx, cancel := context.WithCancel(context.Background())
	p := e.plan(ctx)

	time.AfterFunc(150*time.Millisecond, cancel)

	start := time.Now()
	_, err := e.executor(Options{Parallelism: 2}).Apply(ctx, p)

	if !errors.Is(err, context.Canceled) {
		t.Fatalf("apply error %v, want context.Canceled", err)
	}

	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancel took %s", d)
	}

	e.srv.WaitIdle(5 * time.Second)

	if _, _, err := e.provision(context.Background(), Options{}); err != nil {
		t.Fatalf("re-run: %v\n%s", err, e.events)
	}

	e.assertConverged()
}

// TestCloneFromTemplate: with proxmox.template set, VMs are full clones of the template,
// converged to the spec (disk grown, NIC MAC pinned, ISO and cloud-init drive added).
func TestCloneFromTemplate(t *testing.T) {
	e := newEnv(t, "tazlab")
	e.srv.Seed(pvesim.SeedVM{ID: 9000, Config: map[string]string{"name": "talos-template", "template": "1", "memory": "2048",
		"cores": "1", "scsihw": "virtio-scsi-pci", "scsi0": "local-lvm:base-9000-disk-0,size=8G", "cpu": "host",
		"net0": "virtio=BC:24:11:00:00:99,bridge=vmbr0", "tags": "template"}})
	e.cluster.Proxmox.Template = 9000
	e.refresh()

	ctx := context.Background()
	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatalf("provision: %v\n%s\n%s", err, e.events, summary(e.srv))
	}

	e.assertConverged()

	clones := 0

	for _, r := range e.srv.Requests() {
		if r.Method == "POST" && strings.HasSuffix(r.Path, "/qemu/9000/clone") {
			clones++
		}

		if r.Method == "POST" && r.Path == "/nodes/pve/qemu" {
			t.Errorf("created instead of cloning")
		}
	}

	if clones != 2 {
		t.Errorf("%d clone requests, want 2", clones)
	}

	vm := e.vmByName("tazlab-cp-1")
	if !strings.Contains(vm.Config["scsi0"], "size=40G") || vm.Config["net0"] != "virtio=CA:C2:FA:42:27:93,bridge=vmbr0" ||
		!strings.Contains(vm.Config["ide2"], "cloudinit") || !strings.Contains(vm.Config["scsi1"], "serial=talforge-longhorn") {
		t.Errorf("clone not converged: %v", vm.Config)
	}

	if tmpl, _ := e.srv.VM(9000); tmpl.Config["name"] != "talos-template" || tmpl.Running {
		t.Errorf("template touched: %v", tmpl)
	}

	if p := e.plan(ctx); p.HasChanges() {
		t.Errorf("plan after clone has changes")
	}
}

// TestRerunWhileCreatesRun re-runs at once after an interrupted apply, while PVE still runs
// its creates: the VMs are locked and nameless until their tasks end, and the plan must wait
// for them instead of creating the nodes a second time.
func TestRerunWhileCreatesRun(t *testing.T) {
	e := newEnv(t, "ha", withLatency(map[string]time.Duration{"qmcreate": 400 * time.Millisecond, "qmstart": 50 * time.Millisecond}))
	ctx, cancel := context.WithCancel(context.Background())
	p := e.plan(ctx)

	time.AfterFunc(150*time.Millisecond, cancel)

	if _, err := e.executor(Options{}).Apply(ctx, p); !errors.Is(err, context.Canceled) {
		t.Fatalf("apply error %v, want context.Canceled", err)
	}

	locked := 0

	for _, vm := range e.srv.VMs() {
		if vm.Config["lock"] == "create" {
			locked++
		}
	}

	if locked == 0 {
		t.Fatal("no create was running when the re-run began: the test proves nothing")
	}

	if _, _, err := e.provision(context.Background(), Options{}); err != nil {
		t.Fatalf("re-run: %v\n%s", err, e.events)
	}

	e.assertConverged()
}
