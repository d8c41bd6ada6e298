// Privilege resolution of API tokens: ACL propagation, NoAccess and resource pools, as
// pve-access-control computes them (PVE/AccessControl.pm roles, PVE/RPCEnvironment.pm
// $compile_acl_path and get_effective_permissions).

package pvesim

import (
	"slices"
	"sort"
	"strconv"
	"strings"
)

// NoAccess is PVE's NoAccess role (pve-access-control PVE/AccessControl.pm $special_roles:
// "no privileges"). An ACL entry listing it grants nothing and, being the most specific entry
// on a path, ends every privilege inherited from above; on /pool/<name> it also takes the
// privileges of the pool's VMs granted elsewhere.
const NoAccess = "NoAccess"

// PVEVMAdmin lists the privileges of PVE 9's PVEVMAdmin role: the admin, user and audit
// privileges of the VM group (pve-access-control PVE/AccessControl.pm $privgroups, create_roles).
var PVEVMAdmin = []string{
	"VM.Config.Disk", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network", "VM.Config.HWType",
	"VM.Config.Options", "VM.Allocate", "VM.Clone", "VM.GuestAgent.Unrestricted", "VM.Migrate",
	"VM.Replicate", "VM.Snapshot", "VM.Snapshot.Rollback",
	"VM.Config.CDROM", "VM.Config.Cloudinit", "VM.Console", "VM.Backup", "VM.GuestAgent.FileRead",
	"VM.GuestAgent.FileSystemMgmt", "VM.GuestAgent.FileWrite", "VM.PowerMgmt",
	"VM.Audit", "VM.GuestAgent.Audit",
}

// roles is the ACL entry in force on path: the one of the most specific ACL path that is path
// or one of its ancestors (nil when none applies). pve-access-control PVE/AccessControl.pm
// roles walks the tree from "/" down and each level's entry of the token replaces ("overwrite
// previous settings") what the levels above gave, so privileges are never merged along the
// path.
func (t *Token) roles(path string) []string {
	var in []string
	depth := -1
	for p, e := range t.ACL {
		norm := "/" + strings.Trim(p, "/")
		applies := norm == "/" || path == norm || strings.HasPrefix(path, norm+"/")
		if applies && len(norm) > depth {
			in, depth = e, len(norm)
		}
	}
	return in
}

// can reports whether the token's own ACL (pools aside) grants priv on path.
func (t *Token) can(path, priv string) bool {
	e := t.roles(path)
	return !slices.Contains(e, NoAccess) && slices.Contains(e, priv)
}

// ownPrivileges are the privileges the token's own ACL grants on path: none under NoAccess.
func (t *Token) ownPrivileges(path string) map[string]bool {
	out := map[string]bool{}
	e := t.roles(path)
	if slices.Contains(e, NoAccess) {
		return out
	}
	for _, p := range e {
		out[p] = true
	}
	return out
}

// vmOf is the VMID of a /vms/<vmid> path.
func vmOf(path string) (int, bool) {
	id, ok := strings.CutPrefix(path, "/vms/")
	if !ok {
		return 0, false
	}
	vmid, err := strconv.Atoi(id)
	return vmid, err == nil
}

// privileges is the set of privileges the token holds on path, pools included.
//
// A VM this call creates into a pool is no member yet: create_vm and clone_vm check
// check_vm_perm with the pool, which passes on /pool/<pool> or else on /vms/<vmid>
// (pve-access-control PVE/RPCEnvironment.pm check_vm_perm), so either grant counts.
//
// For a pool member PVE/RPCEnvironment.pm $compile_acl_path adds the roles of /pool/<pool>
// to the VM's own, but a NoAccess on the VM itself is never trumped by the pool's ACL, while
// a NoAccess on the pool trumps the VM's own ACL.
func (c *call) privileges(path string) map[string]bool {
	own := c.token.ownPrivileges(path)
	vmid, isVM := vmOf(path)
	if !isVM {
		return own
	}
	if c.joins != "" && vmid == c.joinsVMID {
		for p := range c.token.ownPrivileges("/pool/" + c.joins) {
			own[p] = true
		}
		return own
	}
	pool := c.s.poolOf(vmid)
	if pool == "" || slices.Contains(c.token.roles(path), NoAccess) {
		return own
	}
	pr := c.token.roles("/pool/" + pool)
	if slices.Contains(pr, NoAccess) {
		return map[string]bool{}
	}
	for _, p := range pr {
		own[p] = true
	}
	return own
}

// can is the token's privilege on path, with the ACLs of a VM's resource pool.
func (c *call) can(path, priv string) bool { return c.privileges(path)[priv] }

// effectivePermissions renders GET /access/permissions without a path like PVE's
// get_effective_permissions (pve-access-control PVE/RPCEnvironment.pm): the top-level paths,
// every ACL path and the VMs of pools, each with its privileges; paths without any are left out.
func (c *call) effectivePermissions() map[string]map[string]int {
	paths := map[string]bool{"/": true, "/access": true, "/access/groups": true, "/nodes": true,
		"/pool": true, "/sdn": true, "/storage": true, "/vms": true}
	for p := range c.token.ACL {
		paths[p] = true
	}
	c.s.poolMu.Lock()
	for vmid := range c.s.vmPools {
		paths["/vms/"+strconv.Itoa(vmid)] = true
	}
	c.s.poolMu.Unlock()
	sorted := make([]string, 0, len(paths))
	for p := range paths {
		sorted = append(sorted, p)
	}
	sort.Strings(sorted)
	out := map[string]map[string]int{}
	for _, p := range sorted {
		if m := c.permissionsAt(p); len(m) > 0 {
			out[p] = m
		}
	}
	return out
}

// permissionsAt renders the privileges on one path as GET /access/permissions does (priv -> 1).
func (c *call) permissionsAt(path string) map[string]int {
	out := map[string]int{}
	for p := range c.privileges(path) {
		out[p] = 1
	}
	return out
}
