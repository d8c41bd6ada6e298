// VM config endpoints: GET/PUT/POST /nodes/{node}/qemu/{vmid}/config and .../pending, with the
// permission checks and pending-change handling of qemu-server's update_vm_api.

package pvesim

import (
	"slices"
	"sort"
	"strconv"
	"strings"
)

// configKeys lists the VM config keys among request parameters.
func configKeys(p Params) []string {
	var out []string
	for k := range p {
		if !nonConfigParams[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// checkConfigPerms mirrors $check_vm_modify_config_perm plus the storage,
// bridge and serial checks of create_vm/update_vm (s.mu must NOT be held).
func (s *Server) checkConfigPerms(c *call, vmid int, keys []string, values Params) *apiError {
	vmPath := "/vms/" + strconv.Itoa(vmid)
	for _, k := range keys {
		val := values.Get(k)
		switch {
		case isDriveKey(k):
			d := parseDriveString(val)
			file := d.get("file")
			switch {
			case rxCloudinit.MatchString(file):
				if aerr := c.require(vmPath, "VM.Config.Cloudinit"); aerr != nil {
					return aerr
				}
				if aerr := c.require(vmPath, "VM.Config.CDROM"); aerr != nil {
					return aerr
				}
			case d.get("media") == "cdrom" || file == "cdrom" || file == "none":
				if aerr := c.require(vmPath, "VM.Config.CDROM"); aerr != nil {
					return aerr
				}
			default:
				if aerr := c.require(vmPath, "VM.Config.Disk"); aerr != nil {
					return aerr
				}
			}
			if m := rxNewDisk.FindStringSubmatch(file); m != nil && d.get("media") != "cdrom" {
				if aerr := c.require("/storage/"+m[1], "Datastore.AllocateSpace"); aerr != nil {
					return aerr
				}
			} else if m := rxCloudinit.FindStringSubmatch(file); m != nil {
				if aerr := c.require("/storage/"+m[1], "Datastore.AllocateSpace"); aerr != nil {
					return aerr
				}
			} else if st, _, ok := strings.Cut(file, ":"); ok && rxVolumeID.MatchString(file) {
				if aerr := c.requireAny("/storage/"+st, "Datastore.AllocateSpace", "Datastore.Audit"); aerr != nil {
					return aerr
				}
			}
		case rxSerialKey.MatchString(k):
			if val != "socket" {
				return permError(vmPath, "only root can set '"+k+"' config for real devices")
			}
			if aerr := c.require(vmPath, "VM.Config.HWType"); aerr != nil {
				return aerr
			}
		default:
			privs := configKeyPrivilege(k)
			if privs[0] == "root" {
				return &apiError{Status: 403, Msg: "Permission check failed (only root can set '" + k + "' config)\n"}
			}
			if aerr := c.requireAny(vmPath, privs...); aerr != nil {
				return aerr
			}
		}
		if rxNetKey.MatchString(k) {
			_, _, opts := parseNet(val)
			if br := opts.get("bridge"); br != "" {
				p := "/sdn/zones/localnetwork/" + br
				if tag := opts.get("tag"); tag != "" {
					p += "/" + tag
				}
				if aerr := c.require(p, "SDN.Use"); aerr != nil {
					return aerr
				}
			}
		}
	}
	return nil
}

// applyKey stores one config key (s.mu held).
func (s *Server) applyKey(v *VM, key, val string) ([]string, *taskError) {
	switch {
	case isDriveKey(key):
		return s.applyDrive(v, key, val)
	case rxNetKey.MatchString(key):
		model, mac, opts := parseNet(val)
		if mac == "" {
			if old, ok := v.Config[key]; ok {
				_, mac, _ = parseNet(old)
			}
			if mac == "" {
				mac = s.nextMAC()
			}
		}
		if model == "" {
			model = "virtio"
		}
		v.Config[key] = printNet(model, mac, opts)
	case key == "tags":
		v.Config[key] = normalizeTags(val)
	default:
		v.Config[key] = val
	}
	return nil, nil
}

// GET /nodes/{node}/qemu/{vmid}/config
func (s *Server) getConfig(c *call) (any, *apiError) {
	return s.auditVM(c, func(v *VM) (any, *apiError) {
		conf := copyMap(v.Config)
		if !c.params.Bool("current") {
			for k, val := range v.Pending {
				conf[k] = val
			}
			for k := range v.PendingDelete {
				delete(conf, k)
			}
		}
		out := s.typedConfig(conf)
		out["digest"] = v.digest()
		return out, nil
	})
}

// typedConfig converts config strings to the JSON types of the schema's
// return description (integers and booleans as numbers, like PVE).
func (s *Server) typedConfig(conf map[string]string) map[string]any {
	var m *Method
	if s.schema != nil {
		m = s.schema.Method("/nodes/{node}/qemu/{vmid}/config", "GET")
	}
	out := make(map[string]any, len(conf))
	for k, val := range conf {
		typ := ""
		if m != nil {
			if p := m.ReturnProp(k); p != nil {
				typ = p.Type
			}
		} else if intKeys[k] {
			typ = "integer"
		}
		switch typ {
		case "integer", "number", "boolean":
			if b, ok := parseBoolean(val); ok && typ == "boolean" {
				n, _ := strconv.Atoi(b)
				out[k] = n
			} else if f, err := strconv.ParseFloat(val, 64); err == nil {
				out[k] = f
			} else {
				out[k] = val
			}
		default:
			out[k] = val
		}
	}
	return out
}

var intKeys = set("cores", "sockets", "balloon", "onboot", "vcpus", "cpuunits", "protection", "template", "kvm", "acpi", "tablet", "numa")

// GET /nodes/{node}/qemu/{vmid}/pending
func (s *Server) pending(c *call) (any, *apiError) {
	return s.auditVM(c, func(v *VM) (any, *apiError) {
		keys := map[string]bool{}
		for k := range v.Config {
			keys[k] = true
		}
		for k := range v.Pending {
			keys[k] = true
		}
		names := make([]string, 0, len(keys))
		for k := range keys {
			names = append(names, k)
		}
		sort.Strings(names)
		typed := s.typedConfig(v.Config)
		ptyped := s.typedConfig(v.Pending)
		out := []map[string]any{}
		for _, k := range names {
			e := map[string]any{"key": k}
			if _, ok := v.Config[k]; ok {
				e["value"] = typed[k]
			}
			if _, ok := v.Pending[k]; ok {
				e["pending"] = ptyped[k]
			}
			if v.PendingDelete[k] {
				e["delete"] = 1
			}
			out = append(out, e)
		}
		out = append(out, map[string]any{"key": "digest", "value": v.digest()})
		return out, nil
	})
}

// applyPending applies pending changes (on start/stop), s.mu held.
func (s *Server) applyPending(v *VM) {
	for k := range v.PendingDelete {
		delete(v.Config, k)
	}
	for k, val := range v.Pending {
		v.Config[k] = val
	}
	v.Pending = map[string]string{}
	v.PendingDelete = map[string]bool{}
}

// updateChecks are the synchronous checks of update_vm_api.
func (s *Server) updateChecks(c *call) ([]string, []string, *apiError) {
	vmid := c.vmid()
	keys := configKeys(c.params)
	deletes := splitList(c.params.Get("delete"))
	if c.params.Has("skiplock") {
		return nil, nil, permError("/", "only root can use skiplock")
	}
	all := append(append([]string{}, keys...), deletes...)
	if len(all) == 0 && !c.params.Has("revert") {
		return nil, nil, err500("no options specified\n")
	}
	for _, k := range deletes {
		if slices.Contains(keys, k) {
			return nil, nil, paramError(map[string]string{"delete": "you can't use '-" + k + "' and -delete " + k + "' at the same time"})
		}
	}
	// update_vm_api's order (qemu-server PVE/API2/Qemu.pm): drive parameters, then the
	// config privileges, then storage access.
	if aerr := s.checkDriveParams(keys, c.params); aerr != nil {
		return nil, nil, aerr
	}
	vals := Params{}
	for _, k := range keys {
		vals[k] = c.params[k]
	}
	for _, k := range deletes {
		vals[k] = Value{}
	}
	if aerr := s.checkConfigPerms(c, vmid, all, vals); aerr != nil {
		return nil, nil, aerr
	}
	if aerr := s.checkStorageAccess(c, vmid, keys, c.params, ""); aerr != nil {
		return nil, nil, aerr
	}
	return keys, deletes, nil
}

// applyUpdate performs update_vm_api's changes (s.mu held).
func (s *Server) applyUpdate(c *call, v *VM, keys, deletes []string, force bool) ([]string, *taskError) {
	// qemu-server src/PVE/API2/Qemu.pm update_vm_api, $load_and_check_config
	if d := c.params.Get("digest"); d != "" && d != v.digest() {
		return nil, failTask("checksum mismatch (file change by other user?)")
	}
	if l := v.Config["lock"]; l != "" {
		return nil, failTask("VM is locked (%s)", l)
	}
	var lines []string
	for _, k := range deletes {
		cur, set := v.Config[k]
		if !set {
			if _, p := v.Pending[k]; p {
				delete(v.Pending, k)
				continue
			}
			lines = append(lines, "cannot delete '"+k+"' - not set in current configuration!")
			continue
		}
		if v.Running && !hotDeletes(v, k) {
			v.PendingDelete[k] = true
			continue
		}
		switch {
		case isDriveKey(k):
			d := parseDriveString(cur)
			file := d.get("file")
			if strings.Contains(file, "cloudinit") {
				delete(s.volumes, file)
			} else if d.get("media") != "cdrom" && s.volumes[file] != nil {
				if force {
					delete(s.volumes, file)
				} else {
					s.addUnused(v, file)
				}
			}
			delete(v.Config, k)
		case rxUnusedKey.MatchString(k):
			if vol := s.volumes[cur]; vol != nil && vol.VMID == v.ID {
				delete(s.volumes, cur)
			}
			delete(v.Config, k)
		default:
			delete(v.Config, k)
		}
	}
	for _, k := range keys {
		val := c.params.Get(k)
		if isDriveKey(k) {
			if aerr := s.checkDrive(v, k, val); aerr != nil {
				return lines, failTask("%s", strings.TrimSpace(aerr.Msg))
			}
		}
		if v.Running && !hotApplies(v, k, val) {
			if k == "tags" {
				val = normalizeTags(val)
			}
			v.Pending[k] = val
			continue
		}
		l, terr := s.applyKey(v, k, val)
		lines = append(lines, l...)
		if terr != nil {
			return lines, terr
		}
	}
	return lines, nil
}

// PUT /nodes/{node}/qemu/{vmid}/config (synchronous)
func (s *Server) putConfig(c *call) (any, *apiError) {
	keys, deletes, aerr := s.updateChecks(c)
	if aerr != nil {
		return nil, aerr
	}
	aerr = s.withVMLock(c, c.vmid(), func() *apiError {
		s.mu.Lock()
		defer s.mu.Unlock()
		v, aerr := s.lookupVM(c)
		if aerr != nil {
			return aerr
		}
		if _, terr := s.applyUpdate(c, v, keys, deletes, c.params.Bool("force")); terr != nil {
			return err500("%s\n", terr.msg)
		}
		return nil
	})
	return nil, aerr
}

// POST /nodes/{node}/qemu/{vmid}/config (asynchronous)
func (s *Server) postConfig(c *call) (any, *apiError) {
	keys, deletes, aerr := s.updateChecks(c)
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	_, aerr = s.lookupVM(c)
	s.mu.Unlock()
	if aerr != nil {
		return nil, aerr
	}
	vmid := c.vmid()
	return s.startTask(c, taskSpec{typ: "qmconfig", id: strconv.Itoa(vmid), vmid: vmid,
		work: func() ([]string, *taskError) {
			v, aerr := s.lookupVM(c)
			if aerr != nil {
				return nil, failTask("%s", strings.TrimSpace(aerr.Msg))
			}
			return s.applyUpdate(c, v, keys, deletes, false)
		}}), nil
}
