package pvesim

import (
	"strings"
	"testing"
	"time"
)

// configDigest reads a VM's config digest as a client does.
func configDigest(t *testing.T, srv *Server, vmid string) string {
	t.Helper()
	a := doReq(t, srv, "GET", "/nodes/pve/qemu/"+vmid+"/config", nil)
	if a.status != 200 {
		t.Fatalf("config %s: %d %s", vmid, a.status, a.reason)
	}
	return a.data().(map[string]any)["digest"].(string)
}

// TestDigestsRefuseChangesMadeMeanwhile: move_disk's digest and target-digest, and the digest
// of resize and config updates, make PVE refuse a change when the VM's config changed after
// the client read it (qemu-server Qemu.pm move_vm_disk, resize_vm, update_vm_api).
func TestDigestsRefuseChangesMadeMeanwhile(t *testing.T) {
	o := fastOptions(optSchema(t, 9))
	o.Latency = map[string]time.Duration{"qmmove": time.Second} // the window for a change after the request, before the task
	srv := New(o)
	defer srv.Close()
	createVM(t, srv, "scsi1", "local-lvm:16,serial=kept")
	srv.Seed(SeedVM{ID: 950, Config: map[string]string{"name": "holder", "memory": "16", "tags": "keep"}})

	src, dst := configDigest(t, srv, "200"), configDigest(t, srv, "950")
	if !srv.Modify(950, func(v *VM) { v.Config["tags"] = "someone;else" }) {
		t.Fatal("Modify: VM 950 not found")
	}
	if srv.Modify(999, func(*VM) {}) {
		t.Error("Modify reported a missing VM as found")
	}
	if vm, _ := srv.VM(950); vm.Config["tags"] != "else;someone" {
		t.Errorf("Modify did not normalise the tags: %q", vm.Config["tags"])
	}

	move := func(digest, target string) answer {
		return doReq(t, srv, "POST", "/nodes/pve/qemu/200/move_disk",
			vals("disk", "scsi1", "target-vmid", "950", "target-disk", "scsi1", "digest", digest, "target-digest", target))
	}
	a := move(src, dst)
	if a.status != 500 || !strings.Contains(a.reason, "VM 950: detected modified configuration - file changed by other user? Try again.") {
		t.Fatalf("stale target digest: %d %q", a.status, a.reason)
	}
	a = move("0123456789abcdef0123456789abcdef01234567", configDigest(t, srv, "950"))
	if a.status != 500 || !strings.Contains(a.reason, "VM 200: detected modified configuration") {
		t.Fatalf("stale source digest: %d %q", a.status, a.reason)
	}
	if vm, _ := srv.VM(200); !strings.Contains(vm.Config["scsi1"], "vm-200-disk-1") {
		t.Fatalf("a refused move moved the disk: %v", vm.Config)
	}

	// a change after the request was accepted, before the task runs under both locks, is
	// caught in the task
	a = move(configDigest(t, srv, "200"), configDigest(t, srv, "950"))
	if a.status != 200 {
		t.Fatalf("move: %d %q", a.status, a.reason)
	}
	srv.Modify(950, func(v *VM) { v.Config["name"] = "renamed" })
	if ex := waitTask(t, srv, a.data().(string)); ex != "VM 950: detected modified configuration - file changed by other user? Try again." {
		t.Fatalf("move task after a change: %q", ex)
	}

	a = move(configDigest(t, srv, "200"), configDigest(t, srv, "950"))
	if ex := waitTask(t, srv, a.data().(string)); ex != "OK" {
		t.Fatalf("move with fresh digests: %q", ex)
	}
	if h, _ := srv.VM(950); h.Config["scsi1"] != "local-lvm:vm-950-disk-0,serial=kept,size=16G" {
		t.Fatalf("holder after the move: %v", h.Config)
	}

	// resize and config updates
	stale := configDigest(t, srv, "950")
	srv.Modify(950, func(v *VM) { v.Config["description"] = "touched" })
	a = doReq(t, srv, "PUT", "/nodes/pve/qemu/950/resize", vals("disk", "scsi1", "size", "20G", "digest", stale))
	if ex := waitTask(t, srv, a.data().(string)); ex != "checksum mismatch (file change by other user?)" {
		t.Errorf("resize with a stale digest: %q", ex)
	}
	a = doReq(t, srv, "POST", "/nodes/pve/qemu/950/config", vals("memory", "32", "digest", stale))
	if ex := waitTask(t, srv, a.data().(string)); ex != "checksum mismatch (file change by other user?)" {
		t.Errorf("update with a stale digest: %q", ex)
	}
	a = doReq(t, srv, "PUT", "/nodes/pve/qemu/950/resize", vals("disk", "scsi1", "size", "20G", "digest", configDigest(t, srv, "950")))
	if ex := waitTask(t, srv, a.data().(string)); ex != "OK" {
		t.Errorf("resize with the current digest: %q", ex)
	}
}

// TestActorFault: Act runs before the request is processed, also for faults that drop the
// connection, and an actor fault is logged.
func TestActorFault(t *testing.T) {
	srv := New(fastOptions(optSchema(t, 9)))
	defer srv.Close()
	createVM(t, srv)

	acted := 0
	h := srv.InjectFault(Fault{Kind: FaultActor, Method: "POST", Path: `/nodes/pve/qemu/200/status/start`,
		Act: func() {
			acted++
			srv.Modify(200, func(v *VM) { v.Config["name"] = "taken-over" })
		}})
	a := doReq(t, srv, "POST", "/nodes/pve/qemu/200/status/start", nil)
	if ex := waitTask(t, srv, a.data().(string)); ex != "OK" {
		t.Fatalf("start after the actor: %q", ex)
	}
	if vm, _ := srv.VM(200); vm.Name() != "taken-over" || !vm.Running || acted != 1 || h.Fired() != 1 {
		t.Errorf("actor: name %q running %v acted %d fired %d", vm.Name(), vm.Running, acted, h.Fired())
	}

	srv.InjectFault(Fault{Kind: FaultHTTPError, Status: 503, Method: "POST", Path: `/nodes/pve/qemu/200/status/stop`,
		Act: func() { srv.Modify(200, func(v *VM) { v.Config["tags"] = "moved" }) }})
	if a := doReq(t, srv, "POST", "/nodes/pve/qemu/200/status/stop", nil); a.status != 503 {
		t.Errorf("fault with an actor answered %d", a.status)
	}
	if vm, _ := srv.VM(200); vm.Config["tags"] != "moved" || !vm.Running {
		t.Errorf("after a 503 with an actor: tags %q running %v", vm.Config["tags"], vm.Running)
	}

	var logged []string
	for _, r := range srv.Requests() {
		if r.Fault != "" {
			logged = append(logged, r.Fault)
		}
	}
	if strings.Join(logged, " ") != "actor http-error" {
		t.Errorf("logged faults %q", logged)
	}
}
