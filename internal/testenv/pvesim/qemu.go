// VM endpoints: lookup, listing, creation, cloning and destruction of qemu VMs
// (qemu-server PVE/API2/Qemu.pm).

package pvesim

import (
	"crypto/sha1" // instance-id like PVE
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

func (c *call) vmid() int {
	id, _ := strconv.Atoi(c.params.Get("vmid"))
	return id
}

func configMissing(node string, vmid int) *apiError {
	return err500("Configuration file 'nodes/%s/qemu-server/%d.conf' does not exist\n", node, vmid)
}

// lookupVM returns the VM of the request (s.mu must be held).
func (s *Server) lookupVM(c *call) (*VM, *apiError) {
	id := c.vmid()
	v, ok := s.vms[id]
	if !ok || v.Node != c.uri["node"] {
		return nil, configMissing(c.uri["node"], id)
	}
	return v, nil
}

// auditVM serves a read of one VM: it checks VM.Audit on the VM, holds the server lock and
// looks the VM up on the requested node before calling read.
func (s *Server) auditVM(c *call, read func(v *VM) (any, *apiError)) (any, *apiError) {
	if aerr := c.require("/vms/"+strconv.Itoa(c.vmid()), "VM.Audit"); aerr != nil {
		return nil, aerr
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	v, aerr := s.lookupVM(c)
	if aerr != nil {
		return nil, aerr
	}

	return read(v)
}

func checkLock(v *VM) *apiError {
	if l := v.Config["lock"]; l != "" {
		return err500("VM is locked (%s)\n", l)
	}
	return nil
}

// GET /nodes/{node}/qemu
func (s *Server) listQemu(c *call) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	ids := make([]int, 0)
	for id, v := range s.vms {
		if v.Node == c.uri["node"] {
			ids = append(ids, id)
		}
	}
	sort.Ints(ids)
	for _, id := range ids {
		if !c.can("/vms/"+strconv.Itoa(id), "VM.Audit") {
			continue
		}
		r := s.vmResource(s.vms[id])
		delete(r, "id")
		delete(r, "type")
		delete(r, "node")
		out = append(out, r)
	}
	return out, nil
}

// POST /nodes/{node}/qemu
func (s *Server) createVM(c *call) (any, *apiError) {
	vmid := c.vmid()
	pool := c.params.Get("pool")
	// create_vm checks that the pool exists before it checks VM.Allocate
	if aerr := s.checkPoolExists(pool); aerr != nil {
		return nil, aerr
	}
	if aerr := c.checkAllocate(pool, vmid); aerr != nil {
		return nil, aerr
	}
	if c.params.Has("archive") {
		return nil, err500("pvesim: restore from archive is not emulated\n")
	}
	// create_vm's order (qemu-server PVE/API2/Qemu.pm): storage access, then the config
	// privileges, then the drive parameters.
	keys := configKeys(c.params)
	if aerr := s.checkStorageAccess(c, vmid, keys, c.params, c.params.Get("storage")); aerr != nil {
		return nil, aerr
	}
	if aerr := s.checkConfigPerms(c, vmid, keys, c.params); aerr != nil {
		return nil, aerr
	}
	if aerr := s.checkDriveParams(keys, c.params); aerr != nil {
		return nil, aerr
	}
	node := c.uri["node"]
	s.mu.Lock()
	if taken := s.vmidTaken(vmid); taken != "" {
		s.mu.Unlock()
		return nil, err500("unable to create VM %d - %s\n", vmid, taken)
	}
	probe := &VM{ID: vmid, Config: map[string]string{}}
	cloudinit := ""
	for _, k := range keys {
		if !isDriveKey(k) {
			continue
		}
		if aerr := s.checkDrive(probe, k, c.params.Get(k)); aerr != nil {
			s.mu.Unlock()
			return nil, aerr
		}
		if rxCloudinit.MatchString(parseDriveString(c.params.Get(k)).get("file")) {
			if cloudinit != "" {
				s.mu.Unlock()
				return nil, err500("cloud-init drive is already attached at '%s'\n", cloudinit)
			}
			cloudinit = k
		}
	}
	v := &VM{ID: vmid, Node: node, Config: map[string]string{"lock": "create"}, Pending: map[string]string{}, PendingDelete: map[string]bool{}}
	s.vms[vmid] = v
	s.mu.Unlock()
	s.setPool(vmid, pool)

	params := c.params
	start := params.Bool("start")
	upid := s.startTask(c, taskSpec{typ: "qmcreate", id: strconv.Itoa(vmid), vmid: vmid,
		work: func() ([]string, *taskError) {
			var lines []string
			for _, k := range keys {
				l, terr := s.applyKey(v, k, params.Get(k))
				lines = append(lines, l...)
				if terr != nil {
					return lines, terr
				}
			}
			if _, ok := v.Config["smbios1"]; !ok {
				v.Config["smbios1"] = "uuid=" + fakeUUID(vmid, 1)
			}
			if _, ok := v.Config["vmgenid"]; !ok {
				v.Config["vmgenid"] = fakeUUID(vmid, 2)
			}
			v.Config["meta"] = fmt.Sprintf("creation-qemu=9.2.0,ctime=%d", s.opts.Now().Unix())
			delete(v.Config, "lock")
			if start {
				s.applyPending(v)
				v.Running = true
				v.StartedAt = s.opts.Now()
			}
			return lines, nil
		},
		onFail: func() {
			// create_vm destroys the half-created VM and its volumes on error
			for id, vol := range s.volumes {
				if vol.VMID == vmid && vol.Content == "images" && s.vms[vmid] == v {
					delete(s.volumes, id)
				}
			}
			if s.vms[vmid] == v {
				delete(s.vms, vmid)
				s.setPool(vmid, "")
			}
		},
	})
	return upid, nil
}

func fakeUUID(vmid, n int) string {
	h := sha1.Sum([]byte(fmt.Sprintf("pvesim-%d-%d", vmid, n)))
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-4" + x[13:16] + "-8" + x[17:20] + "-" + x[20:32]
}

// DELETE /nodes/{node}/qemu/{vmid}
func (s *Server) destroy(c *call) (any, *apiError) {
	vmid := c.vmid()
	if aerr := c.require("/vms/"+strconv.Itoa(vmid), "VM.Allocate"); aerr != nil {
		return nil, aerr
	}
	if c.params.Has("skiplock") {
		return nil, permError("/", "only root can use skiplock")
	}
	purge, unref := c.params.Bool("purge"), c.params.Bool("destroy-unreferenced-disks")
	s.mu.Lock()
	v, aerr := s.lookupVM(c)
	if aerr == nil {
		switch {
		case v.Running:
			aerr = err500("VM %d is running - destroy failed\n", vmid)
		case v.HA && !purge:
			aerr = err500("unable to remove VM %d - used in HA resources and purge parameter not set.\n", vmid)
		default:
			aerr = checkLock(v)
		}
	}
	s.mu.Unlock()
	if aerr != nil {
		return nil, aerr
	}
	return s.startTask(c, taskSpec{typ: "qmdestroy", id: strconv.Itoa(vmid), vmid: vmid,
		work: func() ([]string, *taskError) {
			v, ok := s.vms[vmid]
			if !ok {
				return nil, failTask("Configuration file 'nodes/%s/qemu-server/%d.conf' does not exist", c.uri["node"], vmid)
			}
			if v.Running {
				return nil, failTask("VM %d is running - destroy failed", vmid)
			}
			var lines []string
			free := func(volid string) {
				vol := s.volumes[volid]
				if vol == nil || vol.VMID != vmid || vol.Content == "iso" {
					return
				}
				delete(s.volumes, volid)
				lines = append(lines, fmt.Sprintf("  Logical volume \"%s\" successfully removed.", volName(volid)))
			}
			keys := make([]string, 0, len(v.Config))
			for k := range v.Config {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if isDriveKey(k) || rxUnusedKey.MatchString(k) {
					free(parseDriveString(v.Config[k]).get("file"))
				}
			}
			for k, val := range v.Pending {
				if isDriveKey(k) {
					free(parseDriveString(val).get("file"))
				}
			}
			if unref {
				ids := make([]string, 0)
				for id, vol := range s.volumes {
					if vol.VMID == vmid {
						ids = append(ids, id)
					}
				}
				sort.Strings(ids)
				for _, id := range ids {
					free(id)
				}
			}
			if purge {
				lines = append(lines, fmt.Sprintf("purging VM %d from related configurations..", vmid))
			}
			delete(s.vms, vmid)
			s.setPool(vmid, "")
			return lines, nil
		}}), nil
}

func volName(volid string) string {
	_, name, _ := strings.Cut(volid, ":")
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	return name
}

// POST /nodes/{node}/qemu/{vmid}/clone (full clones only).
func (s *Server) cloneVM(c *call) (any, *apiError) {
	vmid := c.vmid()
	newid, _ := strconv.Atoi(c.params.Get("newid"))
	if aerr := c.require("/vms/"+strconv.Itoa(vmid), "VM.Clone"); aerr != nil {
		return nil, aerr
	}
	pool := c.params.Get("pool")
	// clone_vm's permission check comes first, its $load_and_check looks for the pool
	if aerr := c.checkAllocate(pool, newid); aerr != nil {
		return nil, aerr
	}
	if aerr := s.checkPoolExists(pool); aerr != nil {
		return nil, aerr
	}
	targetStorage := c.params.Get("storage")
	target := c.params.Get("target")
	s.mu.Lock()
	src, aerr := s.lookupVM(c)
	if aerr == nil {
		aerr = s.checkClone(src, c.params, target, targetStorage)
	}
	if aerr == nil {
		if taken := s.vmidTaken(newid); taken != "" {
			aerr = err500("unable to create VM %d - %s\n", newid, taken)
		} else if targetStorage != "" && s.storages[targetStorage] == nil {
			aerr = err500("storage '%s' does not exist\n", targetStorage)
		}
	}
	var nv *VM
	if aerr == nil {
		node := src.Node
		if target != "" {
			node = target
		}
		nv = &VM{ID: newid, Node: node, Config: map[string]string{"lock": "clone"}, Pending: map[string]string{}, PendingDelete: map[string]bool{}}
		s.vms[newid] = nv
	}
	s.mu.Unlock()
	if aerr != nil {
		return nil, aerr
	}
	s.setPool(newid, pool)
	name, description := c.params.Get("name"), c.params.Get("description")
	return s.startTask(c, taskSpec{typ: "qmclone", id: strconv.Itoa(vmid), vmid: vmid,
		work: func() ([]string, *taskError) {
			src, ok := s.vms[vmid]
			if !ok {
				return nil, failTask("source VM vanished")
			}
			var lines []string
			for k, val := range src.Config {
				switch {
				case k == "lock" || k == "template" || rxUnusedKey.MatchString(k) || k == "vmgenid" || k == "meta":
				case rxNetKey.MatchString(k):
					model, _, opts := parseNet(val)
					nv.Config[k] = printNet(model, s.nextMAC(), opts)
				case isDriveKey(k):
					d := parseDriveString(val)
					vol := s.volumes[d.get("file")]
					if vol == nil || d.get("media") == "cdrom" && !strings.Contains(d.get("file"), "cloudinit") {
						nv.Config[k] = val
						continue
					}
					st := vol.Storage
					if targetStorage != "" {
						st = targetStorage
					}
					suffix := ""
					if strings.Contains(vol.VolID, "cloudinit") {
						suffix = "cloudinit"
					}
					id := s.allocName(st, newid, suffix, vol.Format)
					cp := *vol
					cp.VolID, cp.Storage, cp.VMID = id, st, newid
					s.volumes[id] = &cp
					d.set("file", id)
					nv.Config[k] = printDrive(d)
					lines = append(lines, fmt.Sprintf("create full clone of drive %s (%s)", k, vol.VolID))
				default:
					nv.Config[k] = val
				}
			}
			if name != "" {
				nv.Config["name"] = name
			}
			if description != "" {
				nv.Config["description"] = description
			}
			nv.Config["vmgenid"] = fakeUUID(newid, 2)
			delete(nv.Config, "lock")
			return lines, nil
		},
		onFail: func() {
			if s.vms[newid] == nv {
				delete(s.vms, newid)
				s.setPool(newid, "")
			}
		}}), nil
}

// checkClone applies qemu-server's clone_vm rules (PVE/API2/Qemu.pm): a template is linked-
// cloned unless full=1, and a linked clone takes no target storage; a clone to another node
// (target) must be full, and without a target storage every disk must be on shared storage.
// s.mu held.
func (s *Server) checkClone(src *VM, params Params, target, storage string) *apiError {
	full := params.Bool("full") || src.Config["template"] != "1"
	if storage != "" && !full {
		return paramError(map[string]string{"storage": "parameter 'storage' not allowed for linked clones"})
	}
	if target == "" || target == src.Node {
		return nil
	}
	if !slices.Contains(s.opts.Nodes, target) {
		return paramError(map[string]string{"target": fmt.Sprintf("no such cluster node '%s'", target)})
	}
	if !full {
		// Emulator choice: the wording; PVE refuses a linked clone to another node.
		return err500("Linked clone feature for VM %d is not available on another node\n", src.ID)
	}
	if storage != "" {
		return nil
	}
	for k, val := range src.Config {
		if !isDriveKey(k) {
			continue
		}
		if vol := s.volumes[parseDriveString(val).get("file")]; vol != nil {
			if st := s.storages[vol.Storage]; st != nil && !st.Shared {
				return err500("can't clone VM to node '%s' (VM uses local storage)\n", target)
			}
		}
	}
	return nil
}

// checkPoolExists is PVE::RPCEnvironment::check_pool_exist (pve-access-control): a pool not
// in Options.Pools is a permission error.
func (s *Server) checkPoolExists(pool string) *apiError {
	if pool == "" || slices.Contains(s.opts.Pools, pool) {
		return nil
	}
	return &apiError{Status: 403, Msg: "Permission check failed (pool '" + pool + "' does not exist)\n"}
}

// checkAllocate is the VM.Allocate check of a create or clone: on /vms/<vmid> or, when the VM
// joins a pool, on /pool/<pool>. PVE's refusal names no path: create_vm calls raise_perm_exc()
// without one (qemu-server PVE/API2/Qemu.pm), clone_vm's 'or' check does the same
// (pve-access-control PVE/RPCEnvironment.pm exec_api2_perm_check). The pool also counts for the
// VM's later checks (see call.privileges).
func (c *call) checkAllocate(pool string, vmid int) *apiError {
	if pool != "" {
		c.joins, c.joinsVMID = pool, vmid
	}
	if c.can(vmPath(vmid), "VM.Allocate") {
		return nil
	}
	return &apiError{Status: 403, Msg: "Permission check failed\n"}
}

// setPool records a VM's pool membership ("" removes it).
func (s *Server) setPool(vmid int, pool string) {
	s.poolMu.Lock()
	defer s.poolMu.Unlock()
	if pool == "" {
		delete(s.vmPools, vmid)
		return
	}
	s.vmPools[vmid] = pool
}

// poolOf is the pool a VM is a member of ("" for none). It has its own lock: permission
// checks run with and without s.mu held.
func (s *Server) poolOf(vmid int) string {
	s.poolMu.Lock()
	defer s.poolMu.Unlock()
	return s.vmPools[vmid]
}

// PoolOf is the resource pool VM vmid is a member of ("" for none).
func (s *Server) PoolOf(vmid int) string { return s.poolOf(vmid) }
