package pvesim

import "strings"

// Token is an API token the emulator accepts.
type Token struct {
	// ID is "user@realm!tokenname".
	ID     string
	Secret string
	// ACL maps ACL paths ("/", "/vms", "/storage/local", "/sdn/zones/
	// localnetwork/vmbr0") to privileges, like ACLs with propagate=1 on a
	// privilege-separated token: an entry propagates to sub-paths until a more
	// specific entry replaces it (see acl.go). An entry listing NoAccess is
	// PVE's NoAccess role.
	ACL map[string][]string
}

// AllPrivileges lists the PVE 9 privileges the emulator knows.
var AllPrivileges = []string{
	"Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate", "Datastore.Audit",
	"Pool.Allocate", "Pool.Audit", "SDN.Allocate", "SDN.Audit", "SDN.Use",
	"Sys.AccessNetwork", "Sys.Audit", "Sys.Console", "Sys.Incoming", "Sys.Modify", "Sys.PowerMgmt", "Sys.Syslog",
	"VM.Allocate", "VM.Audit", "VM.Backup", "VM.Clone", "VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Cloudinit",
	"VM.Config.Disk", "VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options",
	"VM.Console", "VM.GuestAgent.Audit", "VM.Migrate", "VM.PowerMgmt", "VM.Snapshot",
}

// AdminACL grants every privilege on "/" (the Administrator role).
func AdminACL() map[string][]string { return map[string][]string{"/": AllPrivileges} }

// MinimalACL is the least-privilege role documented for talforge
// (docs/proxmox.md#the-api-token, docs/proxmox.md#token-privileges): VM privileges on /vms,
// disk space on the VM storage, templates on the ISO storage, Sys.AccessNetwork for
// download-url and SDN.Use on the bridge.
func MinimalACL(vmStorage, isoStorage, node, bridge string) map[string][]string {
	return map[string][]string{
		"/vms": {"VM.Allocate", "VM.Clone", "VM.Audit", "VM.PowerMgmt", "VM.Config.CDROM", "VM.Config.CPU",
			"VM.Config.Cloudinit", "VM.Config.Disk", "VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network",
			"VM.Config.Options"},
		"/storage/" + vmStorage:             {"Datastore.AllocateSpace", "Datastore.Audit"},
		"/storage/" + isoStorage:            {"Datastore.AllocateTemplate", "Datastore.Audit", "Datastore.Allocate"},
		"/nodes/" + node:                    {"Sys.AccessNetwork"},
		"/sdn/zones/localnetwork/" + bridge: {"SDN.Use"},
	}
}

// PoolACL is MinimalACL with the VM privileges granted on the resource pool instead of /vms
// (the pool-scoped token docs/proxmox.md recommends): the token reaches only the VMs of that
// pool, and creates VMs only into it.
func PoolACL(pool, vmStorage, isoStorage, node, bridge string) map[string][]string {
	acl := MinimalACL(vmStorage, isoStorage, node, bridge)
	acl["/pool/"+pool] = acl["/vms"]
	delete(acl, "/vms")
	return acl
}

// authenticate verifies an Authorization header value.
func (s *Server) authenticate(header string) (*Token, *apiError) {
	m := rxAuth.FindStringSubmatch(header)
	if m == nil {
		return nil, errStatus(401, "No ticket")
	}
	v := m[1]
	i := strings.LastIndexByte(v, '=')
	if i < 0 {
		return nil, errStatus(401, "invalid token value!")
	}
	id, secret := v[:i], v[i+1:]
	bang := strings.IndexByte(id, '!')
	if bang < 0 || !strings.Contains(id[:bang], "@") {
		return nil, errStatus(401, "invalid token value!")
	}
	s.mu.Lock()
	tok := s.tokens[id]
	s.mu.Unlock()
	if tok == nil {
		return nil, errStatus(401, "no such token '%s' for user '%s'", id[bang+1:], id[:bang])
	}
	if tok.Secret != secret {
		return nil, errStatus(401, "invalid token value!")
	}
	return tok, nil
}

// SetACL replaces the privileges of a token (created if missing).
func (s *Server) SetACL(tokenID, secret string, acl map[string][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[tokenID] = &Token{ID: tokenID, Secret: secret, ACL: acl}
}

// require returns the PVE permission error when priv is missing.
func (c *call) require(path, priv string) *apiError {
	if c.can(path, priv) {
		return nil
	}
	return permError(path, priv)
}

// requireAny needs at least one of privs on path.
func (c *call) requireAny(path string, privs ...string) *apiError {
	for _, p := range privs {
		if c.can(path, p) {
			return nil
		}
	}
	return permError(path, strings.Join(privs, "|"))
}

// VM config keys grouped by the privilege PVE's $check_vm_modify_config_perm
// demands (qemu-server API2/Qemu.pm).
var (
	cpuOptions      = set("cores", "cpu", "cpulimit", "cpuunits", "numa", "smp", "sockets", "vcpus", "affinity")
	memoryOptions   = set("memory", "balloon", "shares", "allow-ksm")
	hwtypeOptions   = set("acpi", "hotplug", "kvm", "machine", "scsihw", "smbios1", "tablet", "vga", "watchdog", "audio0", "rng0", "amd-sev", "intel-tdx")
	generalOptions  = set("agent", "autostart", "bios", "description", "keyboard", "localtime", "migrate_downtime", "migrate_speed", "name", "onboot", "ostype", "protection", "reboot", "startdate", "startup", "tdf", "template", "tags", "spice_enhancements", "vmgenid", "meta")
	vmpowerOptions  = set("freeze")
	diskOptions     = set("boot", "bootdisk", "vmstatestorage")
	cloudinitOption = set("cicustom", "cipassword", "citype", "ciuser", "ciupgrade", "nameserver", "searchdomain", "sshkeys")
	// parameters of create/config that are not config keys
	nonConfigParams = set("node", "vmid", "pool", "storage", "start", "archive", "force", "unique", "live-restore",
		"import-working-storage", "bwlimit", "delete", "revert", "digest", "skiplock", "background_delay", "ha-managed")
)

func set(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// configKeyPrivilege returns the privileges (any of) needed to set or delete
// a VM config key; "root" means only root@pam may touch it.
func configKeyPrivilege(key string) []string {
	switch {
	case cpuOptions[key]:
		return []string{"VM.Config.CPU"}
	case memoryOptions[key]:
		return []string{"VM.Config.Memory"}
	case hwtypeOptions[key]:
		return []string{"VM.Config.HWType"}
	case generalOptions[key]:
		return []string{"VM.Config.Options"}
	case vmpowerOptions[key]:
		return []string{"VM.PowerMgmt"}
	case diskOptions[key]:
		return []string{"VM.Config.Disk"}
	case cloudinitOption[key]:
		return []string{"VM.Config.Cloudinit", "VM.Config.Network"}
	case rxIndexedKey("net").MatchString(key):
		return []string{"VM.Config.Network"}
	case rxIndexedKey("ipconfig").MatchString(key):
		return []string{"VM.Config.Cloudinit", "VM.Config.Network"}
	case rxIndexedKey("serial").MatchString(key), rxIndexedKey("usb").MatchString(key), rxIndexedKey("parallel").MatchString(key):
		return []string{"VM.Config.HWType"}
	case isDriveKey(key) || rxIndexedKey("unused").MatchString(key):
		return []string{"VM.Config.Disk"}
	}
	return []string{"root"}
}
