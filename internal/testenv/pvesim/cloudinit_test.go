package pvesim

import (
	"strconv"
	"testing"
)

// TestCustomCloudinitNeedsSnippets: starting a VM with a cloud-init drive reads the cicustom
// files, which must be existing volumes of content type snippets (qemu-server
// PVE/QemuServer/Cloudinit.pm read_cloudinit_snippets_file); the start task fails otherwise.
func TestCustomCloudinitNeedsSnippets(t *testing.T) {
	s := New(fastOptions(optSchema(t, 9)))
	t.Cleanup(s.Close)
	s.SeedVolume(Volume{VolID: "local:snippets/user.yaml", Content: "snippets", Format: "raw", Size: 1 << 10})
	s.SeedVolume(Volume{VolID: "local:iso/talos.iso", Content: "iso", Format: "iso", Size: 100 << 20})
	cases := []struct {
		name, cicustom string
		noCloudinit    bool
		exit           string
	}{
		{name: "a snippet", cicustom: "user=local:snippets/user.yaml", exit: "OK"},
		{name: "an iso", cicustom: "user=local:iso/talos.iso", exit: "local:iso/talos.iso is not in the snippets directory"},
		{name: "a disk image", cicustom: "vendor=local-lvm:vm-900-disk-0", exit: "local-lvm:vm-900-disk-0 is not in the snippets directory"},
		{name: "a missing snippet", cicustom: "user=local:snippets/missing.yaml",
			exit: "can't open '/var/lib/vz/snippets/missing.yaml' - No such file or directory"},
		{name: "an unknown storage", cicustom: "network=nope:snippets/net.yaml", exit: "storage 'nope' does not exist"},
		{name: "without a cloud-init drive nothing is read", cicustom: "user=local:iso/talos.iso", noCloudinit: true, exit: "OK"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := 500 + i
			conf := map[string]string{"name": "ci", "memory": "64", "cicustom": tc.cicustom}
			if !tc.noCloudinit {
				conf["ide2"] = "local-lvm:vm-" + strconv.Itoa(id) + "-cloudinit,media=cdrom"
			}
			s.Seed(SeedVM{ID: id, Config: conf})
			a := doReq(t, s, "POST", "/nodes/pve/qemu/"+strconv.Itoa(id)+"/status/start", nil)
			if a.status != 200 {
				t.Fatalf("start: %d %q", a.status, a.reason)
			}
			if ex := waitTask(t, s, a.data().(string)); ex != tc.exit {
				t.Errorf("start exit %q, want %q", ex, tc.exit)
			}
		})
	}
}
