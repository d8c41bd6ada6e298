package pvesim

import (
	"testing"
)

// TestDefaultStoragesOfAFreshInstall: without Options.Storages the emulator has the storages
// of a fresh LVM-thin install (pve-installer Proxmox/Install/StorageConfig.pm), import on
// "local" only from PVE 9 on, snippets nowhere.
func TestDefaultStoragesOfAFreshInstall(t *testing.T) {
	cases := []struct {
		version, local, localLVM string
	}{
		{"8.4.1", "iso,vztmpl,backup", "images,rootdir"},
		{"9.1.1", "iso,vztmpl,backup,import", "images,rootdir"},
	}
	for _, tc := range cases {
		t.Run(tc.version, func(t *testing.T) {
			o := fastOptions(nil)
			o.Version = tc.version
			s := New(o)
			defer s.Close()
			got := map[string]string{}
			for _, e := range doReq(t, s, "GET", "/nodes/pve/storage", nil).data().([]any) {
				m := e.(map[string]any)
				got[m["storage"].(string)] = m["content"].(string)
			}
			want := map[string]string{"local": tc.local, "local-lvm": tc.localLVM}
			if len(got) != len(want) || got["local"] != want["local"] || got["local-lvm"] != want["local-lvm"] {
				t.Errorf("storages %v, want %v", got, want)
			}
		})
	}
}

// TestDownloadURLChecksLikePVE: download-url refuses what pve-storage
// PVE/API2/Storage/Status.pm download_url refuses, with its status and message: a missing or
// not file based storage, a content type the storage is not configured for (500), a filename
// without the content type's extension (400 on "filename"); decompression of anything but an
// ISO fails in the task.
func TestDownloadURLChecksLikePVE(t *testing.T) {
	o := fastOptions(optSchema(t, 9))
	o.Storages = append(defaultStorages("9.1.1"), Storage{ID: "isos", Type: "nfs", Content: []string{"iso"}, Path: "/mnt/pve/isos"})
	s := New(o)
	t.Cleanup(s.Close)
	cases := []struct {
		name, storage, content, filename, compression string
		status                                        int
		reason, filenameErr, taskExit                 string
	}{
		{name: "lvmthin is not file based", storage: "local-lvm", content: "iso", filename: "a.iso",
			status: 500, reason: "can't upload to storage type 'lvmthin', not a file based storage!"},
		{name: "unknown storage", storage: "nope", content: "iso", filename: "a.iso",
			status: 500, reason: "storage 'nope' does not exist"},
		{name: "content type not configured", storage: "isos", content: "vztmpl", filename: "debian.tar.zst",
			status: 500, reason: "storage 'isos' is not configured for content-type 'vztmpl'"},
		{name: "iso needs .iso or .img", storage: "local", content: "iso", filename: "talos.qcow2",
			status: 400, reason: "Parameter verification failed.", filenameErr: "wrong file extension"},
		{name: "iso extension is case-insensitive", storage: "local", content: "iso", filename: "talos.ISO",
			status: 200, reason: "OK", taskExit: "OK"},
		{name: "img is an iso", storage: "isos", content: "iso", filename: "talos.img",
			status: 200, reason: "OK", taskExit: "OK"},
		{name: "vztmpl needs a tarball", storage: "local", content: "vztmpl", filename: "debian.tgz",
			status: 400, reason: "Parameter verification failed.", filenameErr: "wrong file extension"},
		{name: "vztmpl tar.zst", storage: "local", content: "vztmpl", filename: "debian.tar.zst",
			status: 200, reason: "OK", taskExit: "OK"},
		{name: "import needs an image extension", storage: "local", content: "import", filename: "disk.iso",
			status: 400, reason: "Parameter verification failed.", filenameErr: "invalid filename or wrong extension"},
		{name: "import qcow2", storage: "local", content: "import", filename: "disk.qcow2",
			status: 200, reason: "OK", taskExit: "OK"},
		{name: "decompression only for iso", storage: "local", content: "vztmpl", filename: "alpine.tar.xz", compression: "gz",
			status: 200, reason: "OK", taskExit: "decompression not supported for vztmpl"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := vals("content", tc.content, "filename", tc.filename, "url", "https://example.org/"+tc.filename)
			if tc.compression != "" {
				p.Set("compression", tc.compression)
			}
			a := doReq(t, s, "POST", "/nodes/pve/storage/"+tc.storage+"/download-url", p)
			if a.status != tc.status || a.reason != tc.reason {
				t.Fatalf("got %d %q %v, want %d %q", a.status, a.reason, a.errs(), tc.status, tc.reason)
			}
			if got := a.errs()["filename"]; got != tc.filenameErr {
				t.Errorf("filename error %q, want %q", got, tc.filenameErr)
			}
			if tc.taskExit == "" {
				return
			}
			if ex := waitTask(t, s, a.data().(string)); ex != tc.taskExit {
				t.Errorf("task exit %q, want %q", ex, tc.taskExit)
			}
		})
	}
}
