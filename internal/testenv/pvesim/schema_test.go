package pvesim

import (
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func vals(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

// createBase is a valid create request other cases modify.
func createBase(extra ...string) url.Values {
	v := vals("vmid", "200", "name", "cp-1", "cores", "2", "memory", "2048", "cpu", "host",
		"scsihw", "virtio-scsi-pci", "scsi0", "local-lvm:8", "net0", "virtio=BC:24:11:00:00:01,bridge=vmbr0,tag=10",
		"ide2", "local-lvm:cloudinit", "ipconfig0", "ip=10.0.0.21/24,gw=10.0.0.1", "nameserver", "1.1.1.1 9.9.9.9",
		"searchdomain", "lab", "serial0", "socket", "tags", "talforge;talforge-lab;controlplane", "onboot", "1",
		"boot", "order=scsi0;ide0", "balloon", "0", "agent", "enabled=1")
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "<del>" {
			v.Del(extra[i])
			continue
		}
		v.Set(extra[i], extra[i+1])
	}
	return v
}

// TestSchemaRejectsLikePVE checks parameter verification against the real
// PVE 9 schema: status 400, reason "Parameter verification failed." and
// PVE's exact per-parameter messages.
func TestSchemaRejectsLikePVE(t *testing.T) {
	srv := New(fastOptions(testSchema(t, 9)))
	defer srv.Close()
	cases := []struct {
		name   string
		method string
		path   string
		params url.Values
		errors map[string]string
	}{
		{"unknown parameter", "POST", "/nodes/pve/qemu", createBase("bogus", "1"),
			map[string]string{"bogus": "property is not defined in schema and the schema does not allow additional properties"}},
		{"missing required vmid", "POST", "/nodes/pve/qemu", createBase("vmid", "<del>"),
			map[string]string{"vmid": "property is missing and it is not optional"}},
		{"vmid not integer", "POST", "/nodes/pve/qemu", createBase("vmid", "abc"),
			map[string]string{"vmid": "type check ('integer') failed - got 'abc'"}},
		{"vmid below minimum", "POST", "/nodes/pve/qemu", createBase("vmid", "99"),
			map[string]string{"vmid": "invalid format - value does not look like a valid VM ID\n"}},
		{"boolean as string true", "POST", "/nodes/pve/qemu", createBase("onboot", "true"),
			map[string]string{"onboot": "type check ('boolean') failed - got 'true'"}},
		{"enum", "POST", "/nodes/pve/qemu", createBase("scsihw", "virtio"),
			map[string]string{"scsihw": "value 'virtio' does not have a value in the enumeration 'lsi, lsi53c810, virtio-scsi-pci, virtio-scsi-single, megasas, pvscsi'"}},
		{"dns-name", "POST", "/nodes/pve/qemu", createBase("name", "cp_1"),
			map[string]string{"name": "invalid format - value does not look like a valid DNS name\n"}},
		{"mac inside net", "POST", "/nodes/pve/qemu", createBase("net0", "virtio=01:24:11:00:00:01,bridge=vmbr0"),
			map[string]string{"net0": "invalid format - format error\nnet0.macaddr: invalid format - value does not look like a valid unicast MAC address\n\n"}},
		{"vlan tag range inside net", "POST", "/nodes/pve/qemu", createBase("net0", "virtio,bridge=vmbr0,tag=0"),
			map[string]string{"net0": "invalid format - format error\nnet0.tag: value must have a minimum value of 1\n"}},
		{"unknown key in property string", "POST", "/nodes/pve/qemu", createBase("scsi0", "local-lvm:8,speed=9"),
			map[string]string{"scsi0": "invalid format - invalid key in comma-separated list property: speed\n"}},
		{"bad disk size", "POST", "/nodes/pve/qemu", createBase("scsi0", "local-lvm:vm-200-disk-0,size=8X"),
			map[string]string{"scsi0": "invalid format - format error\nscsi0.size: invalid format - value does not look like a valid disk size: 8X\n\n"}},
		{"ipconfig without key", "POST", "/nodes/pve/qemu", createBase("ipconfig0", "10.0.0.21/24"),
			map[string]string{"ipconfig0": "invalid format - value without key, but schema does not define a default key\n"}},
		{"ipconfig bad cidr", "POST", "/nodes/pve/qemu", createBase("ipconfig0", "ip=10.0.0.21,gw=10.0.0.1"),
			map[string]string{"ipconfig0": "invalid format - format error\nipconfig0.ip: invalid format - value does not look like a valid ipv4 network configuration\n\n"}},
		{"address-list", "POST", "/nodes/pve/qemu", createBase("nameserver", "1.1.1.1 not_an_address"),
			map[string]string{"nameserver": "invalid format - value does not look like a valid address: not_an_address\n"}},
		{"tag list", "POST", "/nodes/pve/qemu", createBase("tags", "talforge;bad tag!"),
			map[string]string{"tags": "invalid format - invalid characters in tag\n"}},
		{"serial pattern", "POST", "/nodes/pve/qemu", createBase("serial0", "tcp"),
			map[string]string{"serial0": "value does not match the regex pattern"}},
		{"boot order device", "POST", "/nodes/pve/qemu", createBase("boot", "order=scsi0;floppy0"),
			map[string]string{"boot": "invalid format - format error\nboot.order: invalid format - invalid boot device 'floppy0'\n\n"}},
		{"cpu type", "POST", "/nodes/pve/qemu", createBase("cpu", "kvm65"),
			map[string]string{"cpu": "invalid format - Built-in cputype 'kvm65' is not defined (missing 'custom-' prefix?)\n"}},
		{"index out of range", "POST", "/nodes/pve/qemu", createBase("scsi31", "local-lvm:1"),
			map[string]string{"scsi31": "property is not defined in schema and the schema does not allow additional properties"}},
		{"memory minimum", "POST", "/nodes/pve/qemu", createBase("memory", "8"),
			map[string]string{"memory": "invalid format - format error\nmemory.current: value must have a minimum value of 16\n"}},
		{"storage id in query of content", "GET", "/nodes/pve/storage/local/content", vals("content", "isos"),
			map[string]string{"content": "invalid format - invalid content type 'isos'\n"}},
		{"resources type enum", "GET", "/cluster/resources", vals("type", "qemu"),
			map[string]string{"type": "value 'qemu' does not have a value in the enumeration 'vm, storage, node, sdn'"}},
		// Telmate's ShutdownForce sends force=1 (docs/proxmox.md#telmate-client).
		{"ShutdownForce sends force=1", "POST", "/nodes/pve/qemu/100/status/shutdown", vals("force", "1"),
			map[string]string{"force": "property is not defined in schema and the schema does not allow additional properties"}},
		{"download-url url pattern", "POST", "/nodes/pve/storage/local/download-url",
			vals("content", "iso", "filename", "talos.iso", "url", "ftp://x/y.iso"),
			map[string]string{"url": "value does not match the regex pattern"}},
		{"checksum requires algorithm", "POST", "/nodes/pve/storage/local/download-url",
			vals("content", "iso", "filename", "talos.iso", "url", "https://x/y.iso", "checksum", "abc"),
			map[string]string{"checksum-algorithm": "missing property - 'checksum' requires this property"}},
		{"delete list of config ids", "PUT", "/nodes/pve/qemu/100/config", vals("delete", "scsi1,9bad"),
			map[string]string{"delete": "invalid format - invalid configuration ID '9bad'\n"}},
		{"resize size pattern", "PUT", "/nodes/pve/qemu/100/resize", vals("disk", "scsi0", "size", "10GB"),
			map[string]string{"size": "value does not match the regex pattern"}},
		{"conflicting URI parameter", "POST", "/nodes/pve/qemu/100/status/start", vals("vmid", "101"),
			map[string]string{"vmid": "duplicate parameter (already defined in URI) with conflicting values"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := doReq(t, srv, tc.method, tc.path, tc.params)
			if a.status != 400 || a.reason != "Parameter verification failed." {
				t.Fatalf("status %d %q (body %s), want 400 Parameter verification failed.", a.status, a.reason, a.raw)
			}
			if a.body["data"] != nil {
				t.Errorf("data = %v, want null", a.body["data"])
			}
			if a.body["message"] != "Parameter verification failed.\n" {
				t.Errorf("message = %q", a.body["message"])
			}
			if got := a.errs(); !reflect.DeepEqual(got, tc.errors) {
				t.Errorf("errors:\n got  %q\n want %q", got, tc.errors)
			}
		})
	}
	if n := len(srv.VMs()); n != 0 {
		t.Errorf("rejected requests created %d VMs", n)
	}
}

// TestSchemaAcceptsAndRoundTrips creates a VM with every parameter talforge
// sends and reads the values back as PVE stores them.
func TestSchemaAcceptsAndRoundTrips(t *testing.T) {
	srv := New(fastOptions(testSchema(t, 9)))
	defer srv.Close()
	srv.SeedVolume(Volume{VolID: "local:iso/talos-nocloud-amd64.iso", Content: "iso", Format: "iso", Size: 100 << 20})
	p := createBase("ide0", "local:iso/talos-nocloud-amd64.iso,media=cdrom",
		"scsi1", "local-lvm:16,serial=talforge-cp-1-data,discard=on,ssd=1,backup=1",
		"scsi0", "local-lvm:8,discard=on,ssd=1,iothread=1,backup=1")
	a := doReq(t, srv, "POST", "/nodes/pve/qemu", p)
	if a.status != 200 {
		t.Fatalf("create: %d %s %v", a.status, a.reason, a.errs())
	}
	upid := a.data().(string)
	if !strings.HasPrefix(upid, "UPID:pve:") || !strings.HasSuffix(upid, ":qmcreate:200:"+DefaultTokenID+":") {
		t.Errorf("UPID %q", upid)
	}
	if st := waitTask(t, srv, upid); st != "OK" {
		t.Fatalf("create task: %s", st)
	}
	cfg := doReq(t, srv, "GET", "/nodes/pve/qemu/200/config", nil).data().(map[string]any)
	want := map[string]any{
		"name": "cp-1", "cores": float64(2), "memory": "2048", "cpu": "host", "scsihw": "virtio-scsi-pci",
		"scsi0":      "local-lvm:vm-200-disk-0,backup=1,discard=on,iothread=1,size=8G,ssd=1",
		"scsi1":      "local-lvm:vm-200-disk-1,backup=1,discard=on,serial=talforge-cp-1-data,size=16G,ssd=1",
		"ide0":       "local:iso/talos-nocloud-amd64.iso,media=cdrom,size=100M",
		"ide2":       "local-lvm:vm-200-cloudinit,media=cdrom",
		"net0":       "virtio=BC:24:11:00:00:01,bridge=vmbr0,tag=10",
		"ipconfig0":  "ip=10.0.0.21/24,gw=10.0.0.1",
		"nameserver": "1.1.1.1 9.9.9.9", "searchdomain": "lab", "serial0": "socket",
		"tags": "controlplane;talforge;talforge-lab", "onboot": float64(1), "boot": "order=scsi0;ide0",
		"balloon": float64(0), "agent": "enabled=1",
	}
	for k, w := range want {
		if cfg[k] != w {
			t.Errorf("config %s = %#v, want %#v", k, cfg[k], w)
		}
	}
	if _, ok := cfg["digest"].(string); !ok {
		t.Errorf("config has no digest")
	}
	net := doReq(t, srv, "GET", "/nodes/pve/qemu/200/cloudinit/dump", vals("type", "network")).data().(string)
	wantNet := `version: 1
config:
    - type: physical
      name: eth0
      mac_address: 'bc:24:11:00:00:01'
      subnets:
      - type: static
        address: '10.0.0.21'
        netmask: '255.255.255.0'
        gateway: '10.0.0.1'
    - type: nameserver
      address:
      - '1.1.1.1'
      - '9.9.9.9'
      search:
      - 'lab'
`
	if net != wantNet {
		t.Errorf("network-config:\n%s\nwant:\n%s", net, wantNet)
	}
}

// TestSchemaVersions checks that the pve8 schema is selectable and differs
// where PVE 9 added parameters.
func TestSchemaVersions(t *testing.T) {
	s8 := testSchema(t, 8)
	srv := New(fastOptions(s8))
	defer srv.Close()
	v := doReq(t, srv, "GET", "/version", nil).data().(map[string]any)
	if v["release"] != "8.4" {
		t.Errorf("pve8 release = %v", v["release"])
	}
	a := doReq(t, srv, "POST", "/nodes/pve/qemu", createBase("allow-ksm", "1"))
	if a.status != 400 || a.errs()["allow-ksm"] == "" {
		t.Errorf("pve8 accepted allow-ksm (PVE 9 only): %d %v", a.status, a.errs())
	}
	srv9 := New(fastOptions(testSchema(t, 9)))
	defer srv9.Close()
	if a := doReq(t, srv9, "POST", "/nodes/pve/qemu", createBase("allow-ksm", "1")); a.status != 200 {
		t.Errorf("pve9 rejected allow-ksm: %d %v", a.status, a.errs())
	}
}

// TestWithoutSchema checks the emulator still serves without a schema.
func TestWithoutSchema(t *testing.T) {
	srv := New(fastOptions(nil))
	defer srv.Close()
	a := doReq(t, srv, "POST", "/nodes/pve/qemu", createBase())
	if a.status != 200 {
		t.Fatalf("create without schema: %d %s", a.status, a.reason)
	}
	if st := waitTask(t, srv, a.data().(string)); st != "OK" {
		t.Fatalf("task: %s", st)
	}
}

// recordTB records what SchemaForTest reports instead of ending the test.
type recordTB struct {
	testing.TB
	fatal, logged string
}

func (r *recordTB) Helper()                        {}
func (r *recordTB) Fatalf(format string, a ...any) { r.fatal = fmt.Sprintf(format, a...) }
func (r *recordTB) Logf(format string, a ...any)   { r.logged = fmt.Sprintf(format, a...) }

// TestMissingSchemaFailsWhenRequired: without a fixture the emulator runs unchecked and says
// so, unless TALFORGE_REQUIRE_PVE_SCHEMA=1 (CI), which fails the test.
func TestMissingSchemaFailsWhenRequired(t *testing.T) {
	const absent = 5 // no PVE 5 schema among the fixtures
	t.Setenv(EnvRequireSchema, "")
	r := &recordTB{TB: t}
	if s := SchemaForTest(r, absent); s != nil || r.fatal != "" || !strings.Contains(r.logged, "checks no parameters") {
		t.Fatalf("without the requirement: schema %v, fatal %q, log %q", s, r.fatal, r.logged)
	}
	t.Setenv(EnvRequireSchema, "1")
	r = &recordTB{TB: t}
	if s := SchemaForTest(r, absent); s != nil || !strings.Contains(r.fatal, "pve5-apischema.json") {
		t.Fatalf("with the requirement: schema %v, fatal %q", s, r.fatal)
	}
	// The real fixture, where it exists, loads (required or not).
	if _, err := FindSchema(9); err == nil {
		if s := SchemaForTest(t, 9); s == nil {
			t.Fatal("the PVE 9 schema fixture did not load")
		}
	}
}
