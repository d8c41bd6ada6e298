package pvesim

import (
	"net/url"
	"slices"
	"testing"
)

// reassignEnv is a server with source VM 200 and target VM 950 for move_disk cases.
func reassignEnv(t *testing.T, setup func(s *Server)) *Server {
	t.Helper()
	o := fastOptions(optSchema(t, 9))
	o.Nodes = []string{"pve", "pve2"}
	o.Storages = append(defaultStorages("9.1.1"), Storage{ID: "san", Type: "zfs", Content: []string{"images"}})
	s := New(o)
	t.Cleanup(s.Close)
	s.SeedVolume(Volume{VolID: "local:iso/talos.iso", Content: "iso", Format: "iso", Size: 100 << 20})
	s.Seed(
		SeedVM{ID: 200, Config: map[string]string{"name": "src", "memory": "64", "boot": "order=scsi0;scsi1;ide2",
			"scsi0": "local-lvm:vm-200-disk-0,size=8G", "scsi1": "local-lvm:vm-200-disk-1,size=16G,ssd=1",
			"scsi2": "san:vm-200-disk-2,size=1G", "scsi3": "local-lvm:base-200-disk-3,size=1G",
			"ide2": "local:iso/talos.iso,media=cdrom", "unused0": "local-lvm:vm-200-disk-4"}},
		SeedVM{ID: 950, Config: map[string]string{"name": "holder", "memory": "16", "scsi0": "local-lvm:vm-950-disk-0,size=1G"}},
	)
	s.SeedVolume(Volume{VolID: "local-lvm:vm-200-disk-4", Content: "images", Format: "raw", Size: 2 << 30})
	if setup != nil {
		setup(s)
	}
	return s
}

// TestMoveDiskReassignLikePVE: move_disk with target-vmid refuses what qemu-server
// PVE/API2/Qemu.pm move_vm_disk and $load_and_check_reassign_configs refuse, with their
// messages; a running target VM is no reason to refuse.
func TestMoveDiskReassignLikePVE(t *testing.T) {
	either := "either set 'storage' or 'target-vmid', but not both"
	neither := "both 'storage' and 'target-vmid' missing, either needs to be set"
	cases := []struct {
		name   string
		setup  func(s *Server)
		params url.Values
		status int
		reason string
		errs   map[string]string
		// a successful move: the task's exit, a log line, and configs afterwards
		logLine string
		source  map[string]string
		target  map[string]string
	}{
		{name: "target-vmid and storage", params: vals("disk", "scsi1", "target-vmid", "950", "storage", "local-lvm"),
			status: 400, reason: paramFailed, errs: map[string]string{"target-vmid": either, "storage": either}},
		{name: "neither target-vmid nor storage", params: vals("disk", "scsi1"),
			status: 400, reason: paramFailed, errs: map[string]string{"target-vmid": neither, "storage": neither}},
		{name: "same VM", params: vals("disk", "scsi1", "target-vmid", "200"),
			status: 400, reason: paramFailed, errs: map[string]string{"target-vmid": "must be different than source VMID to reassign disk"}},
		{name: "unknown target", params: vals("disk", "scsi1", "target-vmid", "999"),
			status: 500, reason: "could not find target VM 999"},
		{name: "target on another node", setup: func(s *Server) { s.Seed(SeedVM{ID: 951, Node: "pve2", Config: map[string]string{"name": "far"}}) },
			params: vals("disk", "scsi1", "target-vmid", "951"), status: 500, reason: "Both VMs need to be on the same node (pve != pve2)"},
		{name: "target is a container", setup: func(s *Server) { s.AddContainer(Container{ID: 952, Node: "pve", Name: "ct"}) },
			params: vals("disk", "scsi1", "target-vmid", "952"), status: 500, reason: "Configuration file 'nodes/pve/qemu-server/952.conf' does not exist"},
		{name: "target locked", setup: func(s *Server) { s.Modify(950, func(v *VM) { v.Config["lock"] = "backup" }) },
			params: vals("disk", "scsi1", "target-vmid", "950"), status: 500, reason: "VM is locked (backup)"},
		{name: "target is a template", setup: func(s *Server) { s.Modify(950, func(v *VM) { v.Config["template"] = "1" }) },
			params: vals("disk", "scsi1", "target-vmid", "950"), status: 500, reason: "Can't move disks from or to template VMs"},
		{name: "no such disk", params: vals("disk", "scsi9", "target-vmid", "950"),
			status: 500, reason: "Disk 'scsi9' for VM '200' does not exist"},
		{name: "target key in use", params: vals("disk", "scsi1", "target-vmid", "950", "target-disk", "scsi0"),
			status: 500, reason: "Target disk key 'scsi0' is already in use for VM '950'"},
		{name: "cdrom", params: vals("disk", "ide2", "target-vmid", "950"),
			status: 500, reason: "CD drive contents can't be moved to another VM"},
		{name: "used by a snapshot", setup: func(s *Server) {
			s.Modify(200, func(v *VM) {
				v.Snapshots = map[string]map[string]string{"before-upgrade": {"scsi1": "local-lvm:vm-200-disk-1,size=16G"}}
			})
		}, params: vals("disk", "scsi1", "target-vmid", "950"), status: 500, reason: "Can't move disk used by a snapshot to another VM"},
		{name: "ZFS over iSCSI cannot rename", params: vals("disk", "scsi2", "target-vmid", "950"),
			status: 500, reason: "Storage does not support moving of this disk to another VM"},
		{name: "a base volume cannot be renamed", params: vals("disk", "scsi3", "target-vmid", "950"),
			status: 500, reason: "Storage does not support moving of this disk to another VM"},
		{name: "running source", setup: func(s *Server) { s.Modify(200, func(v *VM) { v.Running = true }) },
			params: vals("disk", "scsi1", "target-vmid", "950"), status: 500,
			reason: "Cannot move disk to another VM while the source VM is running - detach first"},
		{name: "target slot refuses the options", params: vals("disk", "scsi1", "target-vmid", "950", "target-disk", "virtio1"),
			status: 500, reason: "failed to parse source disk for target disk format - invalid key in comma-separated list property: ssd"},
		{name: "unused disk of a running source", setup: func(s *Server) { s.Modify(200, func(v *VM) { v.Running = true }) },
			params: vals("disk", "unused0", "target-vmid", "950", "target-disk", "unused3"), status: 200, reason: "OK",
			logLine: "reassign disk 'unused0' from VM '200' as 'unused3' to VM '950'",
			target:  map[string]string{"unused3": "local-lvm:vm-950-disk-1"}},
		{name: "running target", setup: func(s *Server) { s.Modify(950, func(v *VM) { v.Running = true }) },
			params: vals("disk", "scsi1", "target-vmid", "950"), status: 200, reason: "OK",
			logLine: "removing disk 'scsi1' from boot order config",
			source:  map[string]string{"boot": "order=scsi0;ide2", "scsi1": ""},
			target:  map[string]string{"scsi1": "local-lvm:vm-950-disk-1,size=16G,ssd=1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := reassignEnv(t, tc.setup)
			a := doReq(t, s, "POST", "/nodes/pve/qemu/200/move_disk", tc.params)
			if a.status != tc.status || a.reason != tc.reason {
				t.Fatalf("got %d %q %v, want %d %q", a.status, a.reason, a.errs(), tc.status, tc.reason)
			}
			if got := a.errs(); len(got) != len(tc.errs) || got["target-vmid"] != tc.errs["target-vmid"] || got["storage"] != tc.errs["storage"] {
				t.Errorf("errors %v, want %v", got, tc.errs)
			}
			if a.status != 200 {
				return
			}
			upid := a.data().(string)
			if ex := waitTask(t, s, upid); ex != "OK" {
				t.Fatalf("task: %s", ex)
			}
			checkTaskLog(t, s, upid, tc.logLine)
			checkConfig(t, s, 200, tc.source)
			checkConfig(t, s, 950, tc.target)
		})
	}
}

func checkTaskLog(t *testing.T, s *Server, upid, line string) {
	t.Helper()
	for _, ti := range s.Tasks() {
		if ti.UPID == upid {
			if !slices.Contains(ti.Log, line) {
				t.Errorf("task log %q lacks %q", ti.Log, line)
			}
			return
		}
	}
	t.Errorf("no task %s", upid)
}

// checkConfig compares config keys of a VM ("" for an absent key).
func checkConfig(t *testing.T, s *Server, vmid int, want map[string]string) {
	t.Helper()
	vm, _ := s.VM(vmid)
	for k, w := range want {
		if vm.Config[k] != w {
			t.Errorf("VM %d %s = %q, want %q", vmid, k, vm.Config[k], w)
		}
	}
}
