package proxmox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/talforge/talforge/internal/testenv/pvesim"
)

// TestContainersShareTheVMIDSpace: PVE keeps one id space for VMs and LXC containers. A
// container holding the VMID a node is given is a conflict the plan names before PVE refuses
// the create; a container named like a node is not; and a container is never talforge's,
// whatever its tags say, so destroy leaves it alone.
func TestContainersShareTheVMIDSpace(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, "tazlab")
	fixed := e.specs[0].VMID
	if fixed == 0 {
		t.Fatal("the tazlab profile gives its nodes fixed VMIDs")
	}
	host := e.specs[0].PVENode
	e.srv.AddContainer(pvesim.Container{ID: fixed, Node: host, Name: "dns"})
	e.srv.AddContainer(pvesim.Container{ID: 100, Node: host, Name: e.specs[1].Name, Tags: "talforge;" + OwnerTag(e.cluster.Metadata.Name)})
	e.srv.AddContainer(pvesim.Container{ID: 101, Node: host, Name: "proxy"})

	p := e.plan(ctx)
	want := "LXC container holding VMID " + strconv.Itoa(fixed)
	if len(p.Conflicts) != 1 || p.Conflicts[0].VM.VMID != fixed || !p.Conflicts[0].VM.Container || !strings.Contains(p.Conflicts[0].Message, want) {
		t.Fatalf("conflicts = %v, want only the container holding VMID %d", p.Conflicts, fixed)
	}
	if _, err := e.executor(Options{}).Apply(ctx, p); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), want) {
		t.Fatalf("apply: %v, want the conflict", err)
	}
	if m := touching(e.srv, e.specs[0].Name, fixed); len(m) > 0 {
		t.Fatalf("requests sent for the node in conflict: %v", m)
	}
	if vm := e.vmByName(e.specs[1].Name); !vm.Running {
		t.Fatalf("the node not in conflict was provisioned but not started in the same run: %+v", vm)
	}

	// The tagged container named like a node is not the cluster's: nothing to destroy.
	dp, err := PlanDestroy(ctx, e.api, e.cluster.Metadata.Name, DestroyOptions{IncludeParked: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range dp.Items {
		if it.VM.Container || it.VM.VMID == 100 {
			t.Errorf("destroy plans the container %+v: a container is never talforge's", it.VM)
		}
	}
	if len(dp.Items) != 1 || len(dp.Holders) != 0 {
		t.Errorf("destroy plans %+v, want only the VM provisioned above", dp)
	}

	// Without fixed VMIDs, PVE's next free id skips the containers' ids.
	for i := range e.cluster.Nodes {
		e.cluster.Nodes[i].VMID = 0
	}
	e.refresh()
	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatalf("provision: %v\n%s", err, summary(e.srv))
	}
	if len(e.srv.VMs()) != len(e.specs) {
		t.Fatalf("%d VMs, want %d", len(e.srv.VMs()), len(e.specs))
	}
	for _, vm := range e.srv.VMs() {
		if vm.ID == fixed || vm.ID == 100 || vm.ID == 101 {
			t.Errorf("VM %d reuses a container's id", vm.ID)
		}
	}
}

// TestVersionReadIsRetried: one 503 from pveproxy on GET /version does not end a run (the
// connection check reads through WithReadRetries); a 401 is final.
func TestVersionReadIsRetried(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, "tazlab")
	e.srv.InjectFault(pvesim.Fault{Kind: pvesim.FaultHTTPError, Method: "GET", Path: "/version", Status: 503, Message: "Service Unavailable"})
	if _, err := e.api.Version(ctx); err == nil {
		t.Fatal("the fault did not fire: the test proves nothing")
	}
	e.srv.InjectFault(pvesim.Fault{Kind: pvesim.FaultHTTPError, Method: "GET", Path: "/version", Status: 503, Message: "Service Unavailable"})
	v, err := WithReadRetries(e.api).Version(ctx)
	if err != nil || v == "" {
		t.Fatalf("version with one 503 = %q, %v; want it retried", v, err)
	}
	e.srv.InjectFault(pvesim.Fault{Kind: pvesim.FaultHTTPError, Method: "GET", Path: "/version", Status: 401, Message: "authentication failure", Count: -1})
	e.srv.ResetLog()
	if _, err := WithReadRetries(e.api).Version(ctx); err == nil {
		t.Fatal("a 401 came back as success")
	}
	if n := len(e.srv.Requests()); n != 1 {
		t.Errorf("a 401 was sent %d times, want once (it is final)", n)
	}
}

// TestPoolScopedTokenKeepsDataDisks: with a token whose VM privileges come only from the
// profile's resource pool (docs/proxmox.md's least-privilege setup), provision creates the VMs
// in the pool, destroy --keep-data-disks creates the holders in it too (else PVE answers 403 on
// their create, move_disk and delete), and the next provision re-attaches the kept disks.
func TestPoolScopedTokenKeepsDataDisks(t *testing.T) {
	ctx := context.Background()
	c := loadProfile(t, "tazlab")
	c.Proxmox.Pool = "k8s"
	e := newEnvWith(t, c, pvesim.Options{Schema: pveSchema(t), Nodes: []string{c.Proxmox.Node}, Pools: []string{"k8s"}, AuthFailDelay: -1,
		DefaultLatency: 5 * time.Millisecond, Tokens: []pvesim.Token{{ID: pvesim.DefaultTokenID, Secret: pvesim.DefaultTokenSecret,
			ACL: pvesim.PoolACL("k8s", c.Proxmox.Storage, "local", c.Proxmox.Node, "vmbr0")}}})

	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatalf("provision with a pool-scoped token: %v\n%s", err, summary(e.srv))
	}
	for _, vm := range e.srv.VMs() {
		if e.srv.PoolOf(vm.ID) != "k8s" {
			t.Fatalf("VM %d is not in pool k8s", vm.ID)
		}
	}
	dp, err := PlanDestroy(ctx, e.api, c.Metadata.Name, DestroyOptions{KeepDataDisks: true, Pool: c.Proxmox.Pool})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.executor(Options{}).Destroy(ctx, dp); err != nil {
		t.Fatalf("destroy --keep-data-disks with a pool-scoped token: %v\n%s", err, summary(e.srv))
	}
	holders := 0
	for _, vm := range e.srv.VMs() {
		if ParseOwnership(vm.Tags()).Is(KindHolder, c.Metadata.Name) {
			holders++
			if e.srv.PoolOf(vm.ID) != "k8s" {
				t.Errorf("holder %d is not in pool k8s", vm.ID)
			}
		}
	}
	if holders != len(e.specs) {
		t.Fatalf("%d holders, want %d", holders, len(e.specs))
	}
	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatalf("re-provision: %v\n%s", err, summary(e.srv))
	}
	e.assertConverged()
	for _, vm := range e.srv.VMs() {
		if ParseOwnership(vm.Tags()).Is(KindHolder, c.Metadata.Name) {
			t.Errorf("holder %d left after the re-attach", vm.ID)
		}
	}
}

// TestCloneAcrossHosts: with the template on pve and a node placed on pve2, the clone is
// asked of pve (where the template's config is) with target=pve2 and a full copy onto the
// profile's storage; PVE refuses it on pve2 ("Configuration file ... does not exist") and a
// linked clone with a storage.
func TestCloneAcrossHosts(t *testing.T) {
	ctx := context.Background()
	c := loadProfile(t, "tazlab")
	c.Nodes[1].PVENode = "pve2"
	c.Proxmox.Template = 9000
	e := newEnvWith(t, c, pvesim.Options{Schema: pveSchema(t), Nodes: []string{"pve", "pve2"}, AuthFailDelay: -1, DefaultLatency: 5 * time.Millisecond})
	e.srv.Seed(pvesim.SeedVM{ID: 9000, Node: "pve", Config: map[string]string{"name": "talos-template", "template": "1", "memory": "2048",
		"cores": "1", "scsihw": "virtio-scsi-pci", "scsi0": "local-lvm:base-9000-disk-0,size=8G", "cpu": "host",
		"net0": "virtio=BC:24:11:00:00:99,bridge=vmbr0"}})

	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatalf("provision: %v\n%s", err, summary(e.srv))
	}
	e.assertConverged()
	var clones []string
	for _, r := range e.srv.Requests() {
		if r.Method == "POST" && strings.HasSuffix(r.Path, "/clone") {
			clones = append(clones, r.Path+" target="+r.Params["target"]+" full="+r.Params["full"])
		}
	}
	want := []string{"/nodes/pve/qemu/9000/clone target= full=1", "/nodes/pve/qemu/9000/clone target=pve2 full=1"}
	slices.Sort(clones)
	if !slices.Equal(clones, want) {
		t.Errorf("clone requests %v, want %v", clones, want)
	}
	if vm := e.vmByName(c.Nodes[1].Name); vm.Node != "pve2" {
		t.Errorf("%s runs on %s, want pve2", c.Nodes[1].Name, vm.Node)
	}
}

// TestUnfinishedCloneIsFinished: a run that dies between the clone and the update that tags
// it leaves an untagged VM with the node's name. The clone request itself marked it (PVE's
// clone takes a description, not tags), so the next run recognises its own unfinished clone,
// tags and converges it instead of reporting a foreign VM forever; a VM of that name without
// the marker still is foreign.
func TestUnfinishedCloneIsFinished(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, "tazlab")
	e.srv.Seed(pvesim.SeedVM{ID: 9000, Config: map[string]string{"name": "talos-template", "template": "1", "memory": "2048",
		"cores": "1", "scsihw": "virtio-scsi-pci", "scsi0": "local-lvm:base-9000-disk-0,size=8G", "cpu": "host",
		"net0": "virtio=BC:24:11:00:00:99,bridge=vmbr0"}})
	e.cluster.Proxmox.Template = 9000
	e.refresh()
	cp := e.specs[0]
	// The run dies right after the clone: every config update of the new VM fails.
	crash := e.srv.InjectFault(pvesim.Fault{Kind: pvesim.FaultHTTPError, Method: "POST", Path: fmt.Sprintf("/nodes/[^/]+/qemu/%d/config", cp.VMID),
		Status: 500, Message: "simulated crash", Count: 1000})
	if _, _, err := e.provision(ctx, Options{}); err == nil {
		t.Fatal("the run survived its crash")
	}
	if crash.Fired() == 0 {
		t.Fatal("the crash did not happen: the test proves nothing")
	}
	half, ok := e.srv.VM(cp.VMID)
	if !ok || half.Name() != cp.Name || len(half.Tags()) != 0 {
		t.Fatalf("after the crash: %+v, want the untagged clone named %s", half, cp.Name)
	}
	e.srv.ClearFaults()

	p := e.plan(ctx)
	if len(p.Conflicts) != 0 {
		t.Fatalf("the unfinished clone is reported as a conflict: %v", p.Conflicts)
	}
	if _, err := e.executor(Options{}).Apply(ctx, p); err != nil {
		t.Fatalf("re-run: %v\n%s", err, summary(e.srv))
	}
	e.assertConverged()
	if vm, _ := e.srv.VM(cp.VMID); vm.Config["description"] != "" {
		t.Errorf("the clone marker stayed: %q", vm.Config["description"])
	}

	// Without the marker, an untagged VM with a node's name is foreign as before.
	e.srv.Modify(cp.VMID, func(v *pvesim.VM) { delete(v.Config, "tags") })
	if p := e.plan(ctx); len(p.Conflicts) != 1 || !strings.Contains(p.Conflicts[0].Message, "foreign VM") {
		t.Errorf("an untagged VM without the marker: conflicts %v", p.Conflicts)
	}
}

// TestVMIDRaceConvergesInOneRun: someone else creates a VM on the id nextid gave talforge,
// between nextid and the create. PVE refuses the create ("VM <id> already exists on node");
// the same run allocates another id and converges, and the other VM is left alone.
func TestVMIDRaceConvergesInOneRun(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, "tazlab")
	for i := range e.cluster.Nodes {
		e.cluster.Nodes[i].VMID = 0
	}
	e.refresh()
	var taken int
	e.srv.InjectFault(pvesim.Fault{Kind: pvesim.FaultActor, Method: "POST", Path: `/nodes/[^/]+/qemu`, Act: func() {
		// the other client's create lands first on the lowest free id
		for id := 100; ; id++ {
			if _, ok := e.srv.VM(id); !ok {
				taken = id
				e.srv.Seed(pvesim.SeedVM{ID: id, Config: map[string]string{"name": "someone-else", "memory": "512"}})
				return
			}
		}
	}})
	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatalf("provision with a VMID race: %v\n%s", err, summary(e.srv))
	}
	e.assertConverged()
	if vm, ok := e.srv.VM(taken); !ok || vm.Name() != "someone-else" {
		t.Errorf("the other client's VM %d: %+v", taken, vm)
	}
	refused := 0
	for _, r := range e.srv.Requests() {
		if r.Method == "POST" && r.Status == 500 && strings.Contains(r.Message, "already exists on node") {
			refused++
		}
	}
	if refused != 1 {
		t.Errorf("%d creates refused for a taken id, want 1 (the race happened once)", refused)
	}
}

// TestConflictLeavesTheOtherNodesToConverge: one node in conflict does not hold up the others.
// A foreign VM takes one node's name; in the same run the other node's VM, stopped and with a
// changed size, is updated and started, nothing is sent for the node in conflict (neither to
// the foreign VM nor to the node's own VM), and the run fails naming the conflict.
func TestConflictLeavesTheOtherNodesToConverge(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, "tazlab")
	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatalf("provision: %v", err)
	}
	blocked, free := e.specs[0], e.specs[1]
	if !e.srv.Modify(free.VMID, func(v *pvesim.VM) { v.Running = false }) {
		t.Fatalf("no VM %d", free.VMID)
	}
	for i := range e.cluster.Nodes {
		if e.cluster.Nodes[i].Name == free.Name {
			e.cluster.Nodes[i].Memory = 12288
		}
	}
	e.refresh()
	e.srv.Seed(pvesim.SeedVM{ID: 500, Config: map[string]string{"name": blocked.Name, "memory": "1024"}, Running: true})
	e.srv.ResetLog()

	p := e.plan(ctx)
	want := `VM 500 "` + blocked.Name + `"`
	if err := p.Err(); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), want) {
		t.Fatalf("plan: %v, want the conflict with %s", err, want)
	}
	if !p.HasChanges() {
		t.Fatal("the node not in conflict has changes the plan does not count")
	}

	res, err := e.executor(Options{}).Apply(ctx, p)
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), want) {
		t.Fatalf("apply: %v, want the conflict reported at the end", err)
	}
	if m := touching(e.srv, blocked.Name, 500, blocked.VMID); len(m) > 0 {
		t.Errorf("requests for the node in conflict: %v", m)
	}
	vm := e.vmByName(free.Name)
	if !vm.Running || vm.Config["memory"] != "12288" {
		t.Errorf("%s: running %v, memory %s: not converged in the same run", free.Name, vm.Running, vm.Config["memory"])
	}
	for _, r := range res.VMs {
		if (r.Err != nil) != (r.Name == blocked.Name) || (r.Name == free.Name && (!r.Started || r.Action != ActionUpdate)) {
			t.Errorf("result %s: %+v", r.Name, r)
		}
	}

	// Once the conflict is gone (the foreign VM renamed), the next run has nothing else to do.
	e.srv.Modify(500, func(v *pvesim.VM) { v.Config["name"] = "pihole" })
	if p := e.plan(ctx); p.Err() != nil || p.HasChanges() {
		t.Errorf("after the rename: err %v, changes %v", p.Err(), p.HasChanges())
	}
}

// TestLockedVMAtTheIDIsCheckedAfterTheLock: talforge's create request is lost, and at the id it
// asked for another client's create is running (locked, no name yet). The retry waits for the
// lock and looks again: the VM is someone else's, so an allocated id is given up for another
// and a fixed one is an error; the other VM is never touched either way.
func TestLockedVMAtTheIDIsCheckedAfterTheLock(t *testing.T) {
	for _, fixed := range []bool{false, true} {
		t.Run(fmt.Sprintf("fixed VMID %v", fixed), func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t, "tazlab")
			if !fixed {
				for i := range e.cluster.Nodes {
					e.cluster.Nodes[i].VMID = 0
				}
				e.refresh()
			}
			first := e.specs[0]
			id := first.VMID
			if !fixed {
				id = 100 // the first allocation: PVE's lowest free id
			}
			done := make(chan struct{})
			e.srv.InjectFault(pvesim.Fault{Kind: pvesim.FaultDropBefore, Method: "POST", Path: `/nodes/[^/]+/qemu`, Act: func() {
				e.srv.Seed(pvesim.SeedVM{ID: id, Config: map[string]string{"lock": "create"}})
				go func() {
					defer close(done)
					time.Sleep(150 * time.Millisecond)
					e.srv.Modify(id, func(v *pvesim.VM) {
						delete(v.Config, "lock")
						v.Config["name"], v.Config["memory"] = "someone-else", "512"
					})
				}()
			}})
			_, _, err := e.provision(ctx, Options{Parallelism: 1})
			<-done
			if fixed {
				want := fmt.Sprintf(`VMID %d was taken by VM "someone-else" meanwhile; it is not ours`, id)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("provision: %v, want %q", err, want)
				}
			} else if err != nil {
				t.Fatalf("provision: %v\n%s", err, summary(e.srv))
			} else {
				e.assertConverged()
			}
			// The lost create (dropped before PVE saw it, status 0) asked for the id; nothing
			// after it may.
			if m := touching(e.srv, "", id); len(m) != 1 || !strings.HasSuffix(m[0], "-> 0") {
				t.Errorf("requests for the other client's VM %d: %v, want only the lost create", id, m)
			}
			if vm, ok := e.srv.VM(id); !ok || vm.Name() != "someone-else" || vm.Running || len(vm.Tags()) > 0 {
				t.Errorf("the other client's VM %d: %+v", id, vm)
			}
		})
	}
}
