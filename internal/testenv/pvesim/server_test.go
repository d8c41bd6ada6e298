package pvesim

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

func createVM(t *testing.T, srv *Server, extra ...string) {
	t.Helper()
	a := doReq(t, srv, "POST", "/nodes/pve/qemu", createBase(extra...))
	if a.status != 200 {
		t.Fatalf("create: %d %s %v", a.status, a.reason, a.errs())
	}
	if st := waitTask(t, srv, a.data().(string)); st != "OK" {
		t.Fatalf("create task: %s", st)
	}
}

func TestEnvelopeAndErrors(t *testing.T) {
	srv := New(fastOptions(optSchema(t, 9)))
	defer srv.Close()
	cases := []struct {
		name       string
		method     string
		path       string
		params     url.Values
		status     int
		reason     string
		bodyPrefix string
	}{
		{"version", "GET", "/version", nil, 200, "OK", `{"data":{`},
		{"nextid is a JSON string", "GET", "/cluster/nextid", nil, 200, "OK", `{"data":"100"}`},
		{"unknown path", "GET", "/nodes/pve/bogus", nil, 501, "Method 'GET /nodes/pve/bogus' not implemented", ""},
		{"missing VM", "GET", "/nodes/pve/qemu/777/config", nil, 500, "Configuration file 'nodes/pve/qemu-server/777.conf' does not exist",
			`{"data":null,"message":"Configuration file 'nodes/pve/qemu-server/777.conf' does not exist\n"}`},
		{"unknown node", "GET", "/nodes/nope/qemu", nil, 500, "hostname lookup 'nope' failed - failed to get address info for: nope: Name or service not known", ""},
		{"destroy missing VM", "DELETE", "/nodes/pve/qemu/777", vals("purge", "1"), 500, "Configuration file 'nodes/pve/qemu-server/777.conf' does not exist", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := doReq(t, srv, tc.method, tc.path, tc.params)
			if a.status != tc.status || a.reason != tc.reason {
				t.Fatalf("got %d %q, want %d %q", a.status, a.reason, tc.status, tc.reason)
			}
			if !strings.HasPrefix(a.raw, tc.bodyPrefix) {
				t.Errorf("body %q, want prefix %q", a.raw, tc.bodyPrefix)
			}
		})
	}
}

func TestLegacyErrorBody(t *testing.T) {
	o := fastOptions(optSchema(t, 8))
	o.LegacyErrorBody = true
	srv := New(o)
	defer srv.Close()
	a := doReq(t, srv, "GET", "/nodes/pve/qemu/777/config", nil)
	if a.raw != `{"data":null}` || a.reason != "Configuration file 'nodes/pve/qemu-server/777.conf' does not exist" {
		t.Errorf("legacy body %q reason %q", a.raw, a.reason)
	}
}

func TestAuth(t *testing.T) {
	srv := New(fastOptions(optSchema(t, 9)))
	defer srv.Close()
	cases := []struct {
		name   string
		auth   string
		status int
		reason string
	}{
		{"no header", "", 401, "No ticket"},
		{"wrong secret", "PVEAPIToken=" + DefaultTokenID + "=wrong", 401, "invalid token value!"},
		{"unknown token", "PVEAPIToken=root@pam!other=" + DefaultTokenSecret, 401, "no such token 'other' for user 'root@pam'"},
		{"malformed", "PVEAPIToken=garbage", 401, "invalid token value!"},
		{"space form accepted", "PVEAPIToken " + DefaultTokenID + "=" + DefaultTokenSecret, 200, "OK"},
		{"valid", "PVEAPIToken=" + DefaultTokenID + "=" + DefaultTokenSecret, 200, "OK"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := doReqAuth(t, srv, "GET", "/version", nil, tc.auth)
			if a.status != tc.status || a.reason != tc.reason {
				t.Fatalf("got %d %q, want %d %q", a.status, a.reason, tc.status, tc.reason)
			}
			if tc.status == 401 && a.raw != "" {
				t.Errorf("401 has a body: %q", a.raw)
			}
		})
	}
	for _, r := range srv.Requests() {
		for _, v := range r.Params {
			if strings.Contains(v, DefaultTokenSecret) {
				t.Errorf("request log holds the token secret")
			}
		}
	}
}

func TestPrivileges(t *testing.T) {
	srv := New(fastOptions(optSchema(t, 9)))
	defer srv.Close()
	const limited = "talforge@pve!ci"
	auth := "PVEAPIToken=" + limited + "=s3cret"
	srv.SetACL(limited, "s3cret", MinimalACL("local-lvm", "local", "pve", "vmbr0"))
	srv.SeedVolume(Volume{VolID: "local:iso/talos.iso", Content: "iso", Format: "iso", Size: 1 << 20})
	srv.Seed(SeedVM{ID: 900, Config: map[string]string{"name": "foreign"}})

	// the documented minimal role can create what talforge creates
	p := createBase("ide0", "local:iso/talos.iso,media=cdrom")
	a := doReqAuth(t, srv, "POST", "/nodes/pve/qemu", p, auth)
	if a.status != 200 {
		t.Fatalf("minimal role cannot create: %d %q", a.status, a.reason)
	}
	cases := []struct {
		name   string
		acl    map[string][]string
		method string
		path   string
		params url.Values
		reason string
	}{
		{"create without VM.Allocate", map[string][]string{"/vms": {"VM.Audit"}}, "POST", "/nodes/pve/qemu", createBase("vmid", "300"),
			"Permission check failed"},
		{"cpu without VM.Config.CPU", map[string][]string{"/vms": {"VM.Allocate", "VM.Config.Disk", "VM.Config.Memory"}}, "POST", "/nodes/pve/qemu",
			vals("vmid", "301", "cores", "2"), "Permission check failed (/vms/301, VM.Config.CPU)"},
		{"bridge without SDN.Use", func() map[string][]string {
			m := MinimalACL("local-lvm", "local", "pve", "vmbr0")
			delete(m, "/sdn/zones/localnetwork/vmbr0")
			return m
		}(), "POST", "/nodes/pve/qemu", createBase("vmid", "302"), "Permission check failed (/sdn/zones/localnetwork/vmbr0/10, SDN.Use)"},
		{"disk without Datastore.AllocateSpace", map[string][]string{"/vms": {"VM.Allocate", "VM.Config.Disk"}}, "POST", "/nodes/pve/qemu",
			vals("vmid", "303", "scsi0", "local-lvm:8"), "Permission check failed (/storage/local-lvm, Datastore.AllocateSpace)"},
		{"args is root only", AdminACL(), "POST", "/nodes/pve/qemu", vals("vmid", "304", "args", "-no-reboot"),
			"Permission check failed (only root can set 'args' config)"},
		{"start without VM.PowerMgmt", map[string][]string{"/vms": {"VM.Audit"}}, "POST", "/nodes/pve/qemu/900/status/start", nil,
			"Permission check failed (/vms/900, VM.PowerMgmt)"},
		{"destroy without VM.Allocate", map[string][]string{"/vms": {"VM.Audit"}}, "DELETE", "/nodes/pve/qemu/900", nil,
			"Permission check failed (/vms/900, VM.Allocate)"},
		{"download without Sys.AccessNetwork", map[string][]string{"/storage/local": {"Datastore.AllocateTemplate"}}, "POST",
			"/nodes/pve/storage/local/download-url", vals("content", "iso", "filename", "x.iso", "url", "https://f/x.iso"), "Permission check failed"},
		{"HA read needs Sys.Audit", MinimalACL("local-lvm", "local", "pve", "vmbr0"), "GET", "/cluster/ha/resources/900", nil,
			"Permission check failed (/, Sys.Audit)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv.SetACL("limited@pve!t", "x", tc.acl)
			a := doReqAuth(t, srv, tc.method, tc.path, tc.params, "PVEAPIToken=limited@pve!t=x")
			if a.status != 403 || a.reason != tc.reason {
				t.Fatalf("got %d %q, want 403 %q", a.status, a.reason, tc.reason)
			}
		})
	}
	// resources are filtered by VM.Audit
	srv.SetACL("audit@pve!t", "x", map[string][]string{"/vms/900": {"VM.Audit"}})
	list := doReqAuth(t, srv, "GET", "/cluster/resources", vals("type", "vm"), "PVEAPIToken=audit@pve!t=x").data().([]any)
	if len(list) != 1 || list[0].(map[string]any)["vmid"] != float64(900) {
		t.Errorf("filtered resources = %v", list)
	}
}

func TestTasksAndLocks(t *testing.T) {
	o := fastOptions(optSchema(t, 9))
	o.Latency = map[string]time.Duration{"qmstart": 1500 * time.Millisecond} // the lock window the requests below land in, with room for a loaded CI machine
	o.LockTimeout = 50 * time.Millisecond
	srv := New(o)
	defer srv.Close()
	createVM(t, srv)

	start := doReq(t, srv, "POST", "/nodes/pve/qemu/200/status/start", nil)
	upid := start.data().(string)
	if !regexp.MustCompile(`^UPID:pve:[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:qmstart:200:root@pam!talforge:$`).MatchString(upid) {
		t.Fatalf("UPID format: %q", upid)
	}
	st := doReq(t, srv, "GET", "/nodes/pve/tasks/"+upid+"/status", nil).data().(map[string]any)
	if st["status"] != "running" {
		t.Errorf("status = %v", st["status"])
	}
	if _, has := st["exitstatus"]; has {
		t.Errorf("running task has exitstatus (Telmate panics on null)")
	}
	if st["user"] != "root@pam" || st["tokenid"] != "talforge" || st["type"] != "qmstart" {
		t.Errorf("status fields = %v", st)
	}
	// a synchronous config change while the start task holds the lock
	a := doReq(t, srv, "PUT", "/nodes/pve/qemu/200/config", vals("description", "x"))
	if a.status != 500 || a.reason != "can't lock file '/var/lock/qemu-server/lock-200.conf' - got timeout" {
		t.Errorf("locked PUT: %d %q", a.status, a.reason)
	}
	// an async one fails in its task
	a = doReq(t, srv, "POST", "/nodes/pve/qemu/200/config", vals("description", "x"))
	if ex := waitTask(t, srv, a.data().(string)); ex != "can't lock file '/var/lock/qemu-server/lock-200.conf' - got timeout" {
		t.Errorf("locked POST task exit %q", ex)
	}
	if ex := waitTask(t, srv, upid); ex != "OK" {
		t.Fatalf("start: %s", ex)
	}
	log := doReq(t, srv, "GET", "/nodes/pve/tasks/"+upid+"/log", nil)
	lines := log.data().([]any)
	last := lines[len(lines)-1].(map[string]any)
	if last["t"] != "TASK OK" || log.body["total"] != float64(len(lines)) {
		t.Errorf("log = %v total %v", lines, log.body["total"])
	}
	// starting again fails in the task
	a = doReq(t, srv, "POST", "/nodes/pve/qemu/200/status/start", nil)
	if ex := waitTask(t, srv, a.data().(string)); ex != "VM 200 already running" {
		t.Errorf("second start exit %q", ex)
	}
	// a running VM cannot be destroyed
	a = doReq(t, srv, "DELETE", "/nodes/pve/qemu/200", vals("purge", "1"))
	if a.status != 500 || a.reason != "VM 200 is running - destroy failed" {
		t.Errorf("destroy running: %d %q", a.status, a.reason)
	}
	// memory change on a running VM goes to pending and applies on stop
	a = doReq(t, srv, "PUT", "/nodes/pve/qemu/200/config", vals("memory", "4096", "tags", "b;a"))
	if a.status != 200 {
		t.Fatalf("PUT: %d %q %v", a.status, a.reason, a.errs())
	}
	vm, _ := srv.VM(200)
	if vm.Config["memory"] != "2048" || vm.Pending["memory"] != "4096" || vm.Config["tags"] != "a;b" {
		t.Errorf("config %v pending %v", vm.Config, vm.Pending)
	}
	pend := doReq(t, srv, "GET", "/nodes/pve/qemu/200/pending", nil).data().([]any)
	found := false
	for _, e := range pend {
		m := e.(map[string]any)
		if m["key"] == "memory" && m["value"] == "2048" && m["pending"] == "4096" {
			found = true
		}
	}
	if !found {
		t.Errorf("pending list %v", pend)
	}
	a = doReq(t, srv, "POST", "/nodes/pve/qemu/200/status/stop", nil)
	waitTask(t, srv, a.data().(string))
	vm, _ = srv.VM(200)
	if vm.Running || vm.Config["memory"] != "4096" || len(vm.Pending) != 0 {
		t.Errorf("after stop: running=%v config memory %q pending %v", vm.Running, vm.Config["memory"], vm.Pending)
	}
}

func TestCreateConflictsAndRollback(t *testing.T) {
	o := fastOptions(optSchema(t, 9))
	o.Latency = map[string]time.Duration{"qmcreate": time.Second} // long enough to be seen locked on a loaded machine
	srv := New(o)
	defer srv.Close()
	a := doReq(t, srv, "POST", "/nodes/pve/qemu", createBase())
	// during creation the VM exists with lock=create
	res := doReq(t, srv, "GET", "/cluster/resources", vals("type", "vm")).data().([]any)
	if len(res) != 1 || res[0].(map[string]any)["lock"] != "create" {
		t.Errorf("resources during create: %v", res)
	}
	b := doReq(t, srv, "POST", "/nodes/pve/qemu", createBase())
	if b.status != 500 || b.reason != "unable to create VM 200 - VM 200 already exists on node 'pve'" {
		t.Errorf("duplicate create: %d %q", b.status, b.reason)
	}
	waitTask(t, srv, a.data().(string))
	if nid := doReq(t, srv, "GET", "/cluster/nextid", vals("vmid", "200")); nid.status != 400 || nid.errs()["vmid"] != "VM 200 already exists" {
		t.Errorf("nextid taken: %d %v", nid.status, nid.errs())
	}
	// a failed create leaves neither VM nor volumes
	srv.InjectFault(Fault{Kind: FaultTaskFailure, Method: "POST", Path: "/nodes/pve/qemu", Message: "lvcreate 'pve/vm-201-disk-0' error: out of space",
		TaskLog: []string{"  Volume group \"pve\" has insufficient free space"}})
	a = doReq(t, srv, "POST", "/nodes/pve/qemu", createBase("vmid", "201"))
	upid := a.data().(string)
	if ex := waitTask(t, srv, upid); ex != "lvcreate 'pve/vm-201-disk-0' error: out of space" {
		t.Errorf("exit %q", ex)
	}
	lines := doReq(t, srv, "GET", "/nodes/pve/tasks/"+upid+"/log", nil).data().([]any)
	if got := lines[len(lines)-1].(map[string]any)["t"]; got != "TASK ERROR: lvcreate 'pve/vm-201-disk-0' error: out of space" {
		t.Errorf("last log line %q", got)
	}
	if _, ok := srv.VM(201); ok {
		t.Errorf("failed create left VM 201")
	}
	for _, v := range srv.Volumes() {
		if v.VMID == 201 {
			t.Errorf("failed create left volume %s", v.VolID)
		}
	}
}

func TestFaults(t *testing.T) {
	srv := New(fastOptions(optSchema(t, 9)))
	defer srv.Close()
	createVM(t, srv)

	h := srv.InjectFault(Fault{Kind: FaultHTTPError, Path: "/cluster/resources", Nth: 2, Status: 503, Message: "Service Unavailable"})
	codes := []int{}
	for i := 0; i < 3; i++ {
		codes = append(codes, doReq(t, srv, "GET", "/cluster/resources", nil).status)
	}
	if codes[0] != 200 || codes[1] != 503 || codes[2] != 200 || h.Fired() != 1 {
		t.Errorf("Nth=2 fault: codes %v fired %d", codes, h.Fired())
	}

	// dropped connection before processing: nothing happens
	srv.InjectFault(Fault{Kind: FaultDropBefore, Method: "POST", Path: `/nodes/pve/qemu/200/status/start`})
	req, _ := http.NewRequest("POST", srv.URL()+"/nodes/pve/qemu/200/status/start", nil)
	req.Header.Set("Authorization", "PVEAPIToken="+DefaultTokenID+"="+DefaultTokenSecret)
	if _, err := srv.HTTPClient().Do(req); err == nil {
		t.Fatalf("dropped connection returned a response")
	}
	srv.WaitIdle(time.Second)
	if vm, _ := srv.VM(200); vm.Running {
		t.Errorf("drop-before request took effect")
	}
	// dropped after processing: the start happened
	srv.InjectFault(Fault{Kind: FaultDropAfter, Method: "POST", Path: `/nodes/pve/qemu/200/status/start`})
	req, _ = http.NewRequest("POST", srv.URL()+"/nodes/pve/qemu/200/status/start", nil)
	req.Header.Set("Authorization", "PVEAPIToken="+DefaultTokenID+"="+DefaultTokenSecret)
	if _, err := srv.HTTPClient().Do(req); err == nil {
		t.Fatalf("dropped connection returned a response")
	}
	srv.WaitIdle(time.Second)
	if vm, _ := srv.VM(200); !vm.Running {
		t.Errorf("drop-after request did not take effect")
	}
	// lock timeout on a task endpoint
	srv.InjectFault(Fault{Kind: FaultLockTimeout, Path: `/nodes/pve/qemu/200/status/stop`})
	a := doReq(t, srv, "POST", "/nodes/pve/qemu/200/status/stop", nil)
	if ex := waitTask(t, srv, a.data().(string)); ex != "can't lock file '/var/lock/qemu-server/lock-200.conf' - got timeout" {
		t.Errorf("lock fault exit %q", ex)
	}
	// warnings
	srv.InjectFault(Fault{Kind: FaultTaskWarnings, Path: `/nodes/pve/qemu/200/status/stop`})
	a = doReq(t, srv, "POST", "/nodes/pve/qemu/200/status/stop", nil)
	if ex := waitTask(t, srv, a.data().(string)); ex != "WARNINGS: 1" {
		t.Errorf("warnings exit %q", ex)
	}
	if vm, _ := srv.VM(200); vm.Running {
		t.Errorf("stop with warnings did not stop")
	}
	// every request is logged with its fault
	var faults []string
	for _, r := range srv.Requests() {
		if r.Fault != "" {
			faults = append(faults, r.Fault)
		}
	}
	want := "http-error drop-before drop-after lock-timeout task-warnings"
	if strings.Join(faults, " ") != want {
		t.Errorf("logged faults %q, want %q", faults, want)
	}
}

func TestDisksDetachDestroyReassign(t *testing.T) {
	srv := New(fastOptions(optSchema(t, 9)))
	defer srv.Close()
	createVM(t, srv, "scsi1", "local-lvm:16,serial=data-cp-1")
	srv.Seed(SeedVM{ID: 950, Config: map[string]string{"name": "parking", "memory": "16"}})

	// detaching makes the disk unused
	a := doReq(t, srv, "PUT", "/nodes/pve/qemu/200/config", vals("delete", "scsi1"))
	if a.status != 200 {
		t.Fatalf("detach: %d %q", a.status, a.reason)
	}
	vm, _ := srv.VM(200)
	if vm.Config["unused0"] != "local-lvm:vm-200-disk-1" {
		t.Fatalf("after detach: %v", vm.Config)
	}
	// reassigning the unused disk to another VM keeps it alive
	a = doReq(t, srv, "POST", "/nodes/pve/qemu/200/move_disk", vals("disk", "unused0", "target-vmid", "950", "target-disk", "scsi3"))
	if a.status != 200 {
		t.Fatalf("move_disk: %d %q %v", a.status, a.reason, a.errs())
	}
	if ex := waitTask(t, srv, a.data().(string)); ex != "OK" {
		t.Fatalf("move_disk: %s", ex)
	}
	park, _ := srv.VM(950)
	if park.Config["scsi3"] != "local-lvm:vm-950-disk-0,size=16G" {
		t.Errorf("parked disk: %v", park.Config)
	}
	// destroying with purge frees the owned disks, unused ones included
	createVM(t, srv, "vmid", "201", "scsi1", "local-lvm:4")
	doReq(t, srv, "PUT", "/nodes/pve/qemu/201/config", vals("delete", "scsi1"))
	a = doReq(t, srv, "DELETE", "/nodes/pve/qemu/201", vals("purge", "1", "destroy-unreferenced-disks", "1"))
	if ex := waitTask(t, srv, a.data().(string)); ex != "OK" {
		t.Fatalf("destroy: %s", ex)
	}
	for _, v := range srv.Volumes() {
		if v.VMID == 201 {
			t.Errorf("volume %s survived destroy", v.VolID)
		}
	}
	if !hasVolume(srv, "local-lvm:vm-950-disk-0") {
		t.Errorf("parked volume lost")
	}
	// resize grows, never shrinks
	a = doReq(t, srv, "PUT", "/nodes/pve/qemu/200/resize", vals("disk", "scsi0", "size", "+2G"))
	if ex := waitTask(t, srv, a.data().(string)); ex != "OK" {
		t.Fatalf("resize: %s", ex)
	}
	a = doReq(t, srv, "PUT", "/nodes/pve/qemu/200/resize", vals("disk", "scsi0", "size", "4G"))
	if ex := waitTask(t, srv, a.data().(string)); ex != "shrinking disks is not supported" {
		t.Errorf("shrink exit %q", ex)
	}
	vm, _ = srv.VM(200)
	if !strings.Contains(vm.Config["scsi0"], "size=10G") {
		t.Errorf("after resize: %s", vm.Config["scsi0"])
	}
}

func hasVolume(srv *Server, volid string) bool {
	for _, v := range srv.Volumes() {
		if v.VolID == volid {
			return true
		}
	}
	return false
}

func TestDownloadURL(t *testing.T) {
	o := fastOptions(optSchema(t, 9))
	o.Download = func(u string) (int64, error) {
		if strings.Contains(u, "missing") {
			return 0, errStatus(404, "404 Not Found")
		}
		return 123 << 20, nil
	}
	srv := New(o)
	defer srv.Close()
	p := vals("content", "iso", "filename", "talos-abc-v1.14.1-nocloud-amd64.iso", "url", "https://factory.talos.dev/image/abc/v1.14.1/nocloud-amd64.iso")
	a := doReq(t, srv, "POST", "/nodes/pve/storage/local/download-url", p)
	if ex := waitTask(t, srv, a.data().(string)); ex != "OK" {
		t.Fatalf("download: %s", ex)
	}
	list := doReq(t, srv, "GET", "/nodes/pve/storage/local/content", vals("content", "iso")).data().([]any)
	if len(list) != 1 || list[0].(map[string]any)["volid"] != "local:iso/talos-abc-v1.14.1-nocloud-amd64.iso" || list[0].(map[string]any)["size"] != float64(123<<20) {
		t.Errorf("content = %v", list)
	}
	// PVE refuses to overwrite
	a = doReq(t, srv, "POST", "/nodes/pve/storage/local/download-url", p)
	if ex := waitTask(t, srv, a.data().(string)); ex != "refusing to override existing file '/var/lib/vz/template/iso/talos-abc-v1.14.1-nocloud-amd64.iso'" {
		t.Errorf("overwrite exit %q", ex)
	}
	// the synchronous refusals are in TestDownloadURLChecksLikePVE
	a = doReq(t, srv, "POST", "/nodes/pve/storage/local/download-url", vals("content", "iso", "filename", "m.iso", "url", "https://x/missing.iso"))
	if ex := waitTask(t, srv, a.data().(string)); !strings.HasPrefix(ex, "download failed:") {
		t.Errorf("failed download exit %q", ex)
	}
}
