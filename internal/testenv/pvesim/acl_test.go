package pvesim

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// TestACLNoAccessAndMostSpecificPath: an ACL entry replaces what the entries above it grant
// (the most specific path wins), NoAccess on /vms/<id> or on a VM's pool takes away what "/"
// grants, and a pool's ACL does not undo a NoAccess on the VM itself
// (pve-access-control PVE/AccessControl.pm roles, PVE/RPCEnvironment.pm $compile_acl_path,
// check_vm_perm).
func TestACLNoAccessAndMostSpecificPath(t *testing.T) {
	o := fastOptions(optSchema(t, 9))
	o.Pools = []string{"k8s"}
	s := New(o)
	t.Cleanup(s.Close)
	for _, id := range []int{300, 301, 302} {
		s.Seed(SeedVM{ID: id, Config: map[string]string{"name": fmt.Sprintf("vm%d", id), "memory": "64"}})
	}
	s.setPool(300, "k8s")

	const tokenID, secret = "ops@pve!t", "x"
	vmAdminOnRoot := func(extra map[string][]string) map[string][]string {
		acl := map[string][]string{"/": PVEVMAdmin}
		for p, e := range extra {
			acl[p] = e
		}
		return acl
	}
	cases := []struct {
		name           string
		acl            map[string][]string
		method, path   string
		params         url.Values
		status         int
		reason         string
		visibleVMIDs   string
		listVisibility bool
	}{
		{name: "VMAdmin on / reaches a pool member", acl: vmAdminOnRoot(nil),
			method: "GET", path: "/nodes/pve/qemu/300/config", status: 200, reason: "OK"},
		{name: "NoAccess on the pool hides its member", acl: vmAdminOnRoot(map[string][]string{"/pool/k8s": {NoAccess}}),
			method: "GET", path: "/nodes/pve/qemu/300/config", status: 403, reason: "Permission check failed (/vms/300, VM.Audit)"},
		{name: "NoAccess on the pool: no change to its member", acl: vmAdminOnRoot(map[string][]string{"/pool/k8s": {NoAccess}}),
			method: "PUT", path: "/nodes/pve/qemu/300/config", params: vals("memory", "128"),
			status: 403, reason: "Permission check failed (/vms/300, VM.Config.Memory)"},
		{name: "NoAccess on the pool alone: no VM created into it", acl: map[string][]string{"/pool/k8s": {NoAccess}},
			method: "POST", path: "/nodes/pve/qemu", params: vals("vmid", "304", "pool", "k8s", "memory", "64"),
			status: 403, reason: "Permission check failed"},
		// create_vm needs VM.Allocate on /vms/<vmid> or on the pool: the new VM is no member yet
		{name: "NoAccess on the pool does not stop a create into it", acl: vmAdminOnRoot(map[string][]string{"/pool/k8s": {NoAccess}}),
			method: "POST", path: "/nodes/pve/qemu", params: vals("vmid", "303", "pool", "k8s", "memory", "64"),
			status: 200, reason: "OK"},
		{name: "NoAccess on the pool leaves VMs outside it", acl: vmAdminOnRoot(map[string][]string{"/pool/k8s": {NoAccess}}),
			method: "PUT", path: "/nodes/pve/qemu/301/config", params: vals("memory", "128"), status: 200, reason: "OK"},
		{name: "NoAccess on /vms/<id>", acl: vmAdminOnRoot(map[string][]string{"/vms/301": {NoAccess}}),
			method: "GET", path: "/nodes/pve/qemu/301/config", status: 403, reason: "Permission check failed (/vms/301, VM.Audit)"},
		{name: "a pool ACL does not trump NoAccess on the VM", acl: map[string][]string{"/pool/k8s": PVEVMAdmin, "/vms/300": {NoAccess}},
			method: "GET", path: "/nodes/pve/qemu/300/config", status: 403, reason: "Permission check failed (/vms/300, VM.Audit)"},
		{name: "a more specific entry replaces the inherited one", acl: vmAdminOnRoot(map[string][]string{"/vms/302": {"VM.Audit"}}),
			method: "PUT", path: "/nodes/pve/qemu/302/config", params: vals("memory", "128"),
			status: 403, reason: "Permission check failed (/vms/302, VM.Config.Memory)"},
		{name: "resources leave out what NoAccess hides", acl: vmAdminOnRoot(map[string][]string{"/pool/k8s": {NoAccess}, "/vms/301": {NoAccess}}),
			method: "GET", path: "/cluster/resources", params: vals("type", "vm"), status: 200, reason: "OK",
			listVisibility: true, visibleVMIDs: "302"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.SetACL(tokenID, secret, tc.acl)
			a := doReqAuth(t, s, tc.method, tc.path, tc.params, "PVEAPIToken="+tokenID+"="+secret)
			if a.status != tc.status || a.reason != tc.reason {
				t.Fatalf("got %d %q, want %d %q", a.status, a.reason, tc.status, tc.reason)
			}
			if a.status == 200 && a.data() != nil {
				if upid, ok := a.data().(string); ok {
					waitTask(t, s, upid)
				}
			}
			if !tc.listVisibility {
				return
			}
			var seen []string
			for _, r := range a.data().([]any) {
				seen = append(seen, fmt.Sprint(r.(map[string]any)["vmid"]))
			}
			if strings.Join(seen, ",") != tc.visibleVMIDs {
				t.Errorf("visible VMs %q, want %q", seen, tc.visibleVMIDs)
			}
		})
	}
}
