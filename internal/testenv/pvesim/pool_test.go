package pvesim

import (
	"net/url"
	"strings"
	"testing"
)

// TestPoolsScopeATokenLikePVE: a VM created with pool=<p> joins it; a token whose VM
// privileges are granted on /pool/<p> creates VMs only into that pool, sees and changes only
// their members, and an unknown pool is refused.
func TestPoolsScopeATokenLikePVE(t *testing.T) {
	o := fastOptions(optSchema(t, 9))
	o.Pools = []string{"k8s"}
	const id, secret = "talforge@pve!pool", "9d3c4b1e-0000-4000-8000-000000000001"
	o.Tokens = []Token{
		{ID: DefaultTokenID, Secret: DefaultTokenSecret, ACL: AdminACL()},
		{ID: id, Secret: secret, ACL: PoolACL("k8s", "local-lvm", "local", "pve", "vmbr0")},
	}
	s := New(o)
	t.Cleanup(s.Close)
	pool := func(method, path string, params url.Values) answer {
		return doReqAuth(t, s, method, path, params, "PVEAPIToken="+id+"="+secret)
	}
	create := func(vmid, name, p string, as func(string, string, url.Values) answer) answer {
		v := url.Values{"vmid": {vmid}, "name": {name}, "memory": {"64"}}
		if p != "" {
			v.Set("pool", p)
		}
		return as("POST", "/nodes/pve/qemu", v)
	}
	admin := func(method, path string, params url.Values) answer { return doReq(t, s, method, path, params) }

	if a := create("300", "outside", "", admin); a.status != 200 {
		t.Fatalf("admin create: %d %s", a.status, a.raw)
	} else {
		waitTask(t, s, a.data().(string))
	}
	// create_vm: raise_perm_exc() without a path when VM.Allocate is missing on /vms/<vmid>
	// and the pool; check_pool_exist's refusal is a permission error too
	if a := create("301", "nopool", "", pool); a.status != 403 || a.reason != "Permission check failed" {
		t.Errorf("pool token creating outside its pool: %d %q, want 403 %q", a.status, a.reason, "Permission check failed")
	}
	if a := create("302", "other", "dev", pool); a.status != 403 || a.reason != "Permission check failed (pool 'dev' does not exist)" {
		t.Errorf("unknown pool: %d %q", a.status, a.reason)
	}
	a := create("303", "member", "k8s", pool)
	if a.status != 200 {
		t.Fatalf("pool token creating into its pool: %d %s", a.status, a.raw)
	}
	waitTask(t, s, a.data().(string))
	if s.PoolOf(303) != "k8s" {
		t.Errorf("VM 303 is in pool %q", s.PoolOf(303))
	}

	list := pool("GET", "/cluster/resources", url.Values{"type": {"vm"}})
	var seen []string
	for _, r := range list.data().([]any) {
		seen = append(seen, r.(map[string]any)["name"].(string))
	}
	if strings.Join(seen, ",") != "member" {
		t.Errorf("the pool token sees %v, want only its pool's member", seen)
	}
	if a := pool("PUT", "/nodes/pve/qemu/300/config", url.Values{"memory": {"128"}}); a.status != 403 {
		t.Errorf("changing a VM outside the pool: %d %s", a.status, a.raw)
	}
	if a := pool("PUT", "/nodes/pve/qemu/303/config", url.Values{"memory": {"128"}}); a.status != 200 {
		t.Errorf("changing its pool's member: %d %s", a.status, a.raw)
	}
	if a := pool("DELETE", "/nodes/pve/qemu/303", nil); a.status != 200 {
		t.Fatalf("deleting its pool's member: %d %s", a.status, a.raw)
	} else {
		waitTask(t, s, a.data().(string))
	}
	if s.PoolOf(303) != "" {
		t.Error("a deleted VM stays in its pool")
	}
}

// TestFaultsFireOnlyOnValidRequests: a request the schema refuses gets PVE's 400, even when a
// fault waits for it; the fault fires on the next valid one.
func TestFaultsFireOnlyOnValidRequests(t *testing.T) {
	s := New(fastOptions(testSchema(t, 9)))
	t.Cleanup(s.Close)
	h := s.InjectFault(Fault{Kind: FaultHTTPError, Method: "POST", Path: `/nodes/[^/]+/qemu`, Status: 503, Message: "Service Unavailable"})
	if a := doReq(t, s, "POST", "/nodes/pve/qemu", url.Values{"vmid": {"300"}, "cores": {"lots"}}); a.status != 400 || a.errs()["cores"] == "" {
		t.Fatalf("invalid create with a fault pending: %d %s, want the schema's 400", a.status, a.raw)
	}
	if h.Fired() != 0 {
		t.Fatal("the fault fired on a request PVE refuses")
	}
	if a := doReq(t, s, "POST", "/nodes/pve/qemu", url.Values{"vmid": {"300"}, "memory": {"64"}}); a.status != 503 || h.Fired() != 1 {
		t.Fatalf("valid create: %d %s, fired %d; want the fault", a.status, a.raw, h.Fired())
	}
}
