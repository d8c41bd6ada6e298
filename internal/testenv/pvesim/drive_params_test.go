package pvesim

import (
	"net/url"
	"strconv"
	"testing"
)

// driveCase is one create or update request with a drive option and PVE's answer to it.
type driveCase struct {
	name   string
	update bool // PUT .../config of VM 950 instead of creating a VM
	params url.Values
	status int
	reason string            // the HTTP reason phrase
	errs   map[string]string // the per-parameter errors of a 400
	config map[string]string // config the VM has afterwards (200 only)
}

const paramFailed = "Parameter verification failed."

// TestDriveParamsLikePVE: the semantic checks of drive options qemu-server makes before any
// task starts (PVE/API2/Qemu.pm $check_drive_param, $check_storage_access; Drive.pm
// parse_drive; QemuServer.pm cleanup_drive_path; pve-storage check_volume_access), with
// PVE's status, reason and per-parameter errors.
func TestDriveParamsLikePVE(t *testing.T) {
	o := fastOptions(optSchema(t, 9))
	o.Storages = append(defaultStorages("9.1.1"), Storage{ID: "isos", Type: "nfs", Content: []string{"iso"}, Path: "/mnt/pve/isos"})
	s := New(o)
	t.Cleanup(s.Close)
	for _, v := range []Volume{
		{VolID: "local:iso/talos.iso", Content: "iso", Format: "iso", Size: 100 << 20},
		{VolID: "local:vztmpl/debian.tar.zst", Content: "vztmpl", Format: "tzst", Size: 100 << 20},
		{VolID: "local:import/disk.qcow2", Content: "import", Format: "qcow2", Size: 1 << 30},
		{VolID: "local:import/appliance.ova", Content: "import", Format: "ova", Size: 1 << 30},
		{VolID: "local:import/appliance.ova/disk-1.vmdk", Content: "import", Format: "ova+vmdk", Size: 1 << 30},
	} {
		s.SeedVolume(v)
	}
	s.Seed(SeedVM{ID: 950, Config: map[string]string{"name": "stopped", "memory": "64"}})

	const iso = "local:iso/talos.iso"
	const imp = "local:import/disk.qcow2"
	badImport := map[string]string{"scsi0": "'import-from' requires special syntax - use <storage ID>:0,import-from=<source>"}
	cases := []driveCase{
		// media=cdrom misuse (parse_drive, $check_drive_param, cleanup_drive_path)
		{name: "cdrom with a format", params: vals("ide2", iso+",media=cdrom,format=raw"),
			status: 400, reason: paramFailed, errs: map[string]string{"ide2": "unable to parse drive options"}},
		{name: "cdrom as a snapshot", params: vals("ide2", iso+",media=cdrom,snapshot=1"),
			status: 400, reason: paramFailed, errs: map[string]string{"ide2": "unable to parse drive options"}},
		{name: "VirtIO has no cdrom", params: vals("virtio0", iso+",media=cdrom"),
			status: 400, reason: paramFailed, errs: map[string]string{"virtio0": "unable to parse drive options"}},
		{name: "iso without media=cdrom", params: vals("ide2", iso),
			status: 400, reason: paramFailed, errs: map[string]string{"ide2": "explicit 'media=cdrom' is required for iso images"}},
		{name: "cdrom is never a new disk", params: vals("ide2", "local-lvm:4,media=cdrom"),
			status: 500, reason: "lvm name '4' contains illegal characters"},
		{name: "cdrom with a size is accepted", params: vals("ide2", iso+",media=cdrom,size=1G"), status: 200, reason: "OK"},
		{name: "update: path of an iso as a disk", update: true, params: vals("ide2", "/var/lib/vz/template/iso/talos.iso,media=disk"),
			status: 400, reason: paramFailed, errs: map[string]string{"ide2": "unexpected media type (iso != images)"}},
		{name: "update: path outside any storage", update: true, params: vals("scsi2", "/srv/disk.raw"),
			status: 400, reason: paramFailed, errs: map[string]string{"scsi2": "unable to associate path '/srv/disk.raw' to any storage"}},
		{name: "update: path of an iso becomes its volume", update: true, params: vals("ide2", "/var/lib/vz/template/iso/talos.iso"),
			status: 200, reason: "OK", config: map[string]string{"ide2": iso + ",media=cdrom,size=100M"}},
		{name: "update: none gets media=cdrom", update: true, params: vals("ide3", "none"),
			status: 200, reason: "OK", config: map[string]string{"ide3": "none,media=cdrom"}},
		{name: "update: VirtIO cdrom", update: true, params: vals("virtio1", "none,media=cdrom"),
			status: 400, reason: paramFailed, errs: map[string]string{"virtio1": "unable to parse drive options"}},
		// storage content types ($check_storage_access)
		{name: "new disk on a storage without images", params: vals("scsi0", "local:8"),
			status: 400, reason: paramFailed, errs: map[string]string{"storage": "storage 'local' does not support vm images"}},
		{name: "container template as a disk", params: vals("scsi1", "local:vztmpl/debian.tar.zst"),
			status: 400, reason: paramFailed, errs: map[string]string{"scsi1": "content type needs to be 'images' or 'iso'"}},
		{name: "import source as a disk", params: vals("scsi1", imp),
			status: 400, reason: paramFailed, errs: map[string]string{"scsi1": "content type needs to be 'images' or 'iso'"}},
		{name: "new disk on an unknown storage", params: vals("scsi0", "nope:8"),
			status: 500, reason: "storage 'nope' does not exist"},
		// import-from
		{name: "import-from with a size", params: vals("scsi0", "local-lvm:8,import-from="+imp),
			status: 400, reason: paramFailed, errs: badImport},
		{name: "import-from onto an existing volume", params: vals("scsi0", "local-lvm:vm-300-disk-0,import-from="+imp),
			status: 400, reason: paramFailed, errs: badImport},
		{name: "import-from an iso", params: vals("scsi0", "local-lvm:0,import-from="+iso),
			status: 400, reason: paramFailed, errs: map[string]string{"scsi0": iso + " has wrong type 'iso' - needs to be 'images' or 'import'"}},
		{name: "import-from a path", params: vals("scsi0", "local-lvm:0,import-from=/root/disk.qcow2"),
			status: 500, reason: "Only root can pass arbitrary filesystem paths. at /usr/share/perl5/PVE/Storage.pm line 651."},
		{name: "import-from onto a cdrom", params: vals("ide2", "local-lvm:0,media=cdrom,import-from="+imp),
			status: 500, reason: "lvm name '0' contains illegal characters"},
		{name: "import-from a whole OVA", params: vals("scsi0", "local-lvm:0,import-from=local:import/appliance.ova"),
			status: 500, reason: "volume 'local:import/appliance.ova' - not a QEMU image format 'ova'"},
		{name: "OVA member extracted on a storage without images", params: vals("scsi0", "local-lvm:0,import-from=local:import/appliance.ova/disk-1.vmdk"),
			status: 400, reason: paramFailed, errs: map[string]string{"scsi0": "import working storage 'local' does not support 'images' content type or is not file based."}},
		{name: "OVA member with a block working storage", params: vals("scsi0", "local-lvm:0,import-from=local:import/appliance.ova/disk-1.vmdk", "import-working-storage", "local-lvm"),
			status: 400, reason: paramFailed, errs: map[string]string{"import-working-storage": "import working storage 'local-lvm' does not support 'images' content type or is not file based."}},
		{name: "EFI disk import needs efitype", params: vals("efidisk0", "local-lvm:0,import-from="+imp),
			status: 400, reason: paramFailed, errs: map[string]string{"efidisk0": "need to specify 'efitype' when using 'import-from'"}},
		{name: "import-from an import volume", params: vals("scsi0", "local-lvm:0,import-from="+imp), status: 200, reason: "OK"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runDriveCase(t, s, 300+i, tc) })
	}
}

func runDriveCase(t *testing.T, s *Server, vmid int, tc driveCase) {
	t.Helper()
	id := strconv.Itoa(vmid)
	path := "/nodes/pve/qemu"
	if tc.update {
		id, path = "950", "/nodes/pve/qemu/950/config"
	} else {
		tc.params.Set("vmid", id)
		tc.params.Set("memory", "64")
	}
	method := "POST"
	if tc.update {
		method = "PUT"
	}
	a := doReq(t, s, method, path, tc.params)
	if a.status != tc.status || a.reason != tc.reason {
		t.Fatalf("got %d %q %v, want %d %q", a.status, a.reason, a.errs(), tc.status, tc.reason)
	}
	got := a.errs()
	if len(got) != len(tc.errs) {
		t.Errorf("errors %v, want %v", got, tc.errs)
	}
	for k, want := range tc.errs {
		if got[k] != want {
			t.Errorf("errors[%s] = %q, want %q", k, got[k], want)
		}
	}
	if upid, ok := a.data().(string); ok && a.status == 200 {
		if ex := waitTask(t, s, upid); ex != "OK" {
			t.Fatalf("task: %s", ex)
		}
	}
	if len(tc.config) == 0 {
		return
	}
	vm, _ := s.VM(atoi(id))
	for k, want := range tc.config {
		if vm.Config[k] != want {
			t.Errorf("config %s = %q, want %q", k, vm.Config[k], want)
		}
	}
}
