package pvesim

import (
	"crypto/sha1" // instance-id like PVE
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

var (
	rxNewDisk   = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9\-_.]*[a-zA-Z0-9]):(\d+(?:\.\d+)?)$`)
	rxCloudinit = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9\-_.]*[a-zA-Z0-9]):cloudinit$`)
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

// checkDrive validates a drive value semantically (s.mu held) before a task
// allocates anything.
func (s *Server) checkDrive(v *VM, key, val string) *apiError {
	d := parseDriveString(val)
	file := d.get("file")
	if file == "" || file == "none" || file == "cdrom" || strings.HasPrefix(file, "/") {
		return nil
	}
	if m := rxCloudinit.FindStringSubmatch(file); m != nil {
		st := s.storages[m[1]]
		if st == nil {
			return err500("storage '%s' does not exist\n", m[1])
		}
		if !st.hasContent("images") {
			return err500("storage '%s' does not support vm images\n", m[1])
		}
		if v != nil {
			for k, cur := range v.Config {
				if k != key && isDriveKey(k) && strings.Contains(parseDriveString(cur).get("file"), "cloudinit") {
					return err500("cloud-init drive is already attached at '%s'\n", k)
				}
			}
		}
		return nil
	}
	if m := rxNewDisk.FindStringSubmatch(file); m != nil && d.get("media") != "cdrom" {
		st := s.storages[m[1]]
		if st == nil {
			return err500("storage '%s' does not exist\n", m[1])
		}
		if !st.hasContent("images") {
			return err500("storage '%s' does not support vm images\n", m[1])
		}
		if imp := d.get("import-from"); imp != "" {
			if m[2] != "0" {
				return err500("'import-from' requires special syntax - use <storage ID>:0,import-from=<source>\n")
			}
			src := s.volumes[imp]
			if src == nil {
				return err500("volume '%s' does not exist\n", imp)
			}
			if src.Content != "images" && src.Content != "import" {
				return err500("'import-from' volume '%s' has wrong type '%s' - needs to be 'images' or 'import'\n", imp, src.Content)
			}
		} else if f, _ := strconv.ParseFloat(m[2], 64); f <= 0 {
			return err500("unable to create disk with size 0 - use 'import-from' to import an existing volume\n")
		}
		return nil
	}
	vol := s.volumes[file]
	if vol == nil {
		st, _, _ := strings.Cut(file, ":")
		if s.storages[st] == nil {
			return err500("storage '%s' does not exist\n", st)
		}
		return err500("volume '%s' does not exist\n", file)
	}
	if vol.Content == "iso" && d.get("media") != "cdrom" {
		return err500("explicit 'media=cdrom' is required for iso images\n")
	}
	if vol.Content == "images" && v != nil && vol.VMID != 0 && vol.VMID != v.ID {
		return err500("volume '%s' is owned by VM %d - reassign it with 'move_disk' first\n", file, vol.VMID)
	}
	return nil
}

// allocName returns a free volume id for a new disk (s.mu held).
func (s *Server) allocName(storage string, vmid int, suffix, format string) string {
	st := s.storages[storage]
	for n := 0; ; n++ {
		name := fmt.Sprintf("vm-%d-disk-%d", vmid, n)
		if suffix != "" {
			name = fmt.Sprintf("vm-%d-%s", vmid, suffix)
		}
		var volid string
		if st != nil && st.fileBased() {
			ext := format
			if ext == "" {
				ext = "raw"
			}
			if suffix == "cloudinit" {
				ext = "qcow2"
			}
			volid = fmt.Sprintf("%s:%d/%s.%s", storage, vmid, name, ext)
		} else {
			volid = storage + ":" + name
		}
		if s.volumes[volid] == nil || suffix != "" {
			return volid
		}
	}
}

// applyDrive stores a drive value, allocating volumes (s.mu held). It
// returns task log lines.
func (s *Server) applyDrive(v *VM, key, val string) ([]string, *taskError) {
	d := parseDriveString(val)
	file := d.get("file")
	now := s.opts.Now().Unix()
	var lines []string
	switch {
	case file == "" || file == "none" || file == "cdrom" || strings.HasPrefix(file, "/"):
	case rxCloudinit.MatchString(file):
		st := rxCloudinit.FindStringSubmatch(file)[1]
		volid := s.allocName(st, v.ID, "cloudinit", "")
		s.volumes[volid] = &Volume{VolID: volid, Storage: st, Content: "images", Format: "raw", Size: 4 << 20, VMID: v.ID, CTime: now}
		d.set("file", volid)
		d.set("media", "cdrom")
		lines = append(lines, fmt.Sprintf("  Logical volume \"vm-%d-cloudinit\" created.", v.ID))
	case rxNewDisk.MatchString(file) && d.get("media") != "cdrom":
		m := rxNewDisk.FindStringSubmatch(file)
		var size int64
		if imp := d.get("import-from"); imp != "" {
			src := s.volumes[imp]
			if src == nil {
				return nil, failTask("volume '%s' does not exist", imp)
			}
			size = src.Size
			d.del("import-from")
			lines = append(lines, "importing disk '"+imp+"' to VM "+strconv.Itoa(v.ID)+" ...")
		} else {
			gib, _ := strconv.ParseFloat(m[2], 64)
			size = int64(gib * (1 << 30))
		}
		volid := s.allocName(m[1], v.ID, "", d.get("format"))
		s.volumes[volid] = &Volume{VolID: volid, Storage: m[1], Content: "images", Format: "raw", Size: size, VMID: v.ID, CTime: now}
		d.set("file", volid)
		d.set("size", FormatSize(size))
		lines = append(lines, fmt.Sprintf("%s: successfully created disk '%s'", key, printDrive(d)))
	default:
		vol := s.volumes[file]
		if vol == nil {
			return nil, failTask("volume '%s' does not exist", file)
		}
		if vol.Content == "images" {
			for k, cur := range v.Config {
				if rxUnusedKey.MatchString(k) && parseDriveString(cur).get("file") == file {
					delete(v.Config, k)
				}
			}
		}
		if vol.Size > 0 {
			d.set("size", FormatSize(vol.Size))
		}
	}
	// replacing a disk leaves the old volume as unused, like PVE
	if old, ok := v.Config[key]; ok {
		od := parseDriveString(old)
		if of := od.get("file"); of != d.get("file") && od.get("media") != "cdrom" && s.volumes[of] != nil {
			s.addUnused(v, of)
		}
	}
	v.Config[key] = printDrive(d)
	return lines, nil
}

func (s *Server) addUnused(v *VM, volid string) string {
	for i := 0; ; i++ {
		k := "unused" + strconv.Itoa(i)
		if _, used := v.Config[k]; !used {
			v.Config[k] = volid
			return k
		}
	}
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

// fastPlug keys change a running VM's config directly (qemu-server's
// fast_plug_option plus the hot-pluggable devices of the default hotplug
// setting "network,disk,usb" and cloud-init options).
func fastPlug(v *VM, key string) bool {
	switch key {
	case "name", "onboot", "shares", "startup", "description", "protection", "vmstatestorage", "hookscript", "tags":
		return true
	}
	if rxNetKey.MatchString(key) || isDriveKey(key) || rxUnusedKey.MatchString(key) || rxIPConfigKey.MatchString(key) || cloudinitOption[key] {
		return true
	}
	hp := v.Config["hotplug"]
	if hp == "" {
		hp = "network,disk,usb"
	}
	if memoryOptions[key] && strings.Contains(hp, "memory") {
		return true
	}
	if cpuOptions[key] && strings.Contains(hp, "cpu") && key != "cpu" {
		return true
	}
	return false
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
		if !c.token.can("/vms/"+strconv.Itoa(id), "VM.Audit") {
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
	if pool := c.params.Get("pool"); pool != "" {
		if aerr := c.require("/pool/"+pool, "VM.Allocate"); aerr != nil {
			return nil, aerr
		}
	} else if aerr := c.require("/vms/"+strconv.Itoa(vmid), "VM.Allocate"); aerr != nil {
		return nil, aerr
	}
	if c.params.Has("archive") {
		return nil, err500("pvesim: restore from archive is not emulated\n")
	}
	keys := configKeys(c.params)
	if aerr := s.checkConfigPerms(c, vmid, keys, c.params); aerr != nil {
		return nil, aerr
	}
	node := c.uri["node"]
	s.mu.Lock()
	if old, exists := s.vms[vmid]; exists {
		s.mu.Unlock()
		return nil, err500("unable to create VM %d - VM %d already exists on node '%s'\n", vmid, vmid, old.Node)
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
	vals := Params{}
	for _, k := range keys {
		vals[k] = c.params[k]
	}
	for _, k := range deletes {
		if _, ok := vals[k]; ok {
			return nil, nil, paramError(map[string]string{"delete": "you can't use '-" + k + "' and -delete " + k + "' at the same time"})
		}
		vals[k] = Value{}
	}
	if aerr := s.checkConfigPerms(c, vmid, all, vals); aerr != nil {
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
		if v.Running && !fastPlug(v, k) {
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
		if v.Running && !fastPlug(v, k) {
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

// PUT /nodes/{node}/qemu/{vmid}/resize
func (s *Server) resize(c *call) (any, *apiError) {
	vmid := c.vmid()
	if aerr := c.require("/vms/"+strconv.Itoa(vmid), "VM.Config.Disk"); aerr != nil {
		return nil, aerr
	}
	disk, sizeArg := c.params.Get("disk"), c.params.Get("size")
	s.mu.Lock()
	v, aerr := s.lookupVM(c)
	var storage string
	if aerr == nil {
		cur, ok := v.Config[disk]
		switch {
		case !ok:
			aerr = err500("disk '%s' does not exist\n", disk)
		case parseDriveString(cur).get("media") == "cdrom":
			aerr = err500("you can't resize a cdrom\n")
		default:
			storage, _, _ = strings.Cut(parseDriveString(cur).get("file"), ":")
		}
	}
	s.mu.Unlock()
	if aerr != nil {
		return nil, aerr
	}
	if aerr := c.require("/storage/"+storage, "Datastore.AllocateSpace"); aerr != nil {
		return nil, aerr
	}
	return s.startTask(c, taskSpec{typ: "qmresize", id: strconv.Itoa(vmid), vmid: vmid,
		work: func() ([]string, *taskError) {
			v, aerr := s.lookupVM(c)
			if aerr != nil {
				return nil, failTask("%s", strings.TrimSpace(aerr.Msg))
			}
			if l := v.Config["lock"]; l != "" {
				return nil, failTask("VM is locked (%s)", l)
			}
			// qemu-server src/PVE/API2/Qemu.pm resize_vm: the digest is checked under the lock
			if dg := c.params.Get("digest"); dg != "" && dg != v.digest() {
				return nil, failTask("checksum mismatch (file change by other user?)")
			}
			d := parseDriveString(v.Config[disk])
			if d.get("file") == "" {
				return nil, failTask("disk '%s' does not exist", disk)
			}
			vol := s.volumes[d.get("file")]
			if vol == nil {
				return nil, failTask("volume '%s' does not exist", d.get("file"))
			}
			rel := strings.HasPrefix(sizeArg, "+")
			n, _ := ParseSize(strings.TrimPrefix(sizeArg, "+"))
			newSize := n
			if rel {
				newSize = vol.Size + n
			}
			if newSize < vol.Size {
				return nil, failTask("shrinking disks is not supported")
			}
			line := fmt.Sprintf("  Size of logical volume %s changed from %s to %s.", d.get("file"), FormatSize(vol.Size), FormatSize(newSize))
			vol.Size = newSize
			d.set("size", FormatSize(newSize))
			v.Config[disk] = printDrive(d)
			return []string{line}, nil
		}}), nil
}

// GET /nodes/{node}/qemu/{vmid}/status/current
func (s *Server) statusCurrent(c *call) (any, *apiError) {
	return s.auditVM(c, func(v *VM) (any, *apiError) {
		r := s.vmResource(v)
		out := map[string]any{"vmid": v.ID, "status": r["status"], "qmpstatus": r["status"], "uptime": r["uptime"],
			"cpus": r["maxcpu"], "maxmem": r["maxmem"], "maxdisk": r["maxdisk"], "cpu": 0, "mem": 0,
			"diskread": 0, "diskwrite": 0, "netin": 0, "netout": 0, "ha": map[string]any{"managed": 0}}
		if v.HA {
			out["ha"] = map[string]any{"managed": 1, "state": "started"}
		}
		if n := v.Config["name"]; n != "" {
			out["name"] = n
		}
		if t := v.Config["tags"]; t != "" {
			out["tags"] = t
		}
		if l := v.Config["lock"]; l != "" {
			out["lock"] = l
		}
		if v.Running {
			out["pid"] = 10000 + v.ID
			out["running-qemu"] = "9.2.0"
			out["running-machine"] = "pc-i440fx-9.2+pve1"
		}
		if a := v.Config["agent"]; a != "" {
			en := parsePropString(a, "enabled").get("enabled")
			if b, _ := parseBoolean(en); b == "1" {
				out["agent"] = 1
			}
		}
		return out, nil
	})
}

func (s *Server) powerTask(c *call, typ string, fn func(v *VM) ([]string, *taskError)) (any, *apiError) {
	vmid := c.vmid()
	if aerr := c.require("/vms/"+strconv.Itoa(vmid), "VM.PowerMgmt"); aerr != nil {
		return nil, aerr
	}
	if c.params.Has("skiplock") {
		return nil, permError("/", "only root can use skiplock")
	}
	s.mu.Lock()
	_, aerr := s.lookupVM(c)
	s.mu.Unlock()
	if aerr != nil {
		return nil, aerr
	}
	return s.startTask(c, taskSpec{typ: typ, id: strconv.Itoa(vmid), vmid: vmid,
		work: func() ([]string, *taskError) {
			v, aerr := s.lookupVM(c)
			if aerr != nil {
				return nil, failTask("%s", strings.TrimSpace(aerr.Msg))
			}
			return fn(v)
		}}), nil
}

// POST .../status/start
func (s *Server) start(c *call) (any, *apiError) {
	return s.powerTask(c, "qmstart", func(v *VM) ([]string, *taskError) {
		if l := v.Config["lock"]; l != "" {
			return nil, failTask("VM is locked (%s)", l)
		}
		if v.Running {
			return nil, failTask("VM %d already running", v.ID)
		}
		s.applyPending(v)
		var lines []string
		for k, val := range v.Config {
			if isDriveKey(k) && strings.Contains(parseDriveString(val).get("file"), "cloudinit") {
				lines = append(lines, "generating cloud-init ISO")
			}
		}
		v.Running = true
		v.StartedAt = s.opts.Now()
		return lines, nil
	})
}

// POST .../status/stop
func (s *Server) stop(c *call) (any, *apiError) {
	return s.powerTask(c, "qmstop", func(v *VM) ([]string, *taskError) {
		if l := v.Config["lock"]; l != "" && l != "backup" {
			return nil, failTask("VM is locked (%s)", l)
		}
		v.Running = false
		s.applyPending(v)
		return nil, nil
	})
}

// POST .../status/shutdown
func (s *Server) shutdown(c *call) (any, *apiError) {
	return s.powerTask(c, "qmshutdown", func(v *VM) ([]string, *taskError) {
		if l := v.Config["lock"]; l != "" {
			return nil, failTask("VM is locked (%s)", l)
		}
		if !v.Running {
			return nil, failTask("VM %d not running", v.ID)
		}
		v.Running = false
		s.applyPending(v)
		return nil, nil
	})
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

// digestMismatch mirrors PVE::Tools::assert_if_modified as move_vm_disk reports it
// (qemu-server src/PVE/API2/Qemu.pm, $load_and_check_reassign_configs): a digest sent by the
// client that differs from the VM's current config digest. An empty digest is not checked.
func digestMismatch(vmid int, want string, v *VM) string {
	if want == "" || want == v.digest() {
		return ""
	}
	return fmt.Sprintf("VM %d: detected modified configuration - file changed by other user? Try again.", vmid)
}

// POST /nodes/{node}/qemu/{vmid}/move_disk: only the reassign form
// (target-vmid) is emulated. digest and target-digest are checked before the task starts and
// again under both config locks, as $load_and_check_reassign_configs runs in both places.
func (s *Server) moveDisk(c *call) (any, *apiError) {
	vmid := c.vmid()
	disk := c.params.Get("disk")
	if aerr := c.require("/vms/"+strconv.Itoa(vmid), "VM.Config.Disk"); aerr != nil {
		return nil, aerr
	}
	if !c.params.Has("target-vmid") {
		return nil, err500("pvesim: moving disks between storages is not emulated\n")
	}
	if c.params.Has("storage") {
		return nil, paramError(map[string]string{"storage": "option conflicts with option 'target-vmid'"})
	}
	target, _ := strconv.Atoi(c.params.Get("target-vmid"))
	targetDisk := c.params.Get("target-disk")
	if targetDisk == "" {
		targetDisk = disk
	}
	if target == vmid {
		return nil, paramError(map[string]string{"target-vmid": "must be different than source VMID to reassign disk"})
	}
	if aerr := c.require("/vms/"+strconv.Itoa(target), "VM.Config.Disk"); aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	src, aerr := s.lookupVM(c)
	var storage string
	if aerr == nil {
		tv, ok := s.vms[target]
		cur, has := src.Config[disk]
		switch {
		case !ok:
			aerr = err500("target VM %d does not exist\n", target)
		case digestMismatch(vmid, c.params.Get("digest"), src) != "":
			aerr = err500("%s\n", digestMismatch(vmid, c.params.Get("digest"), src))
		case digestMismatch(target, c.params.Get("target-digest"), tv) != "":
			aerr = err500("%s\n", digestMismatch(target, c.params.Get("target-digest"), tv))
		case !has:
			aerr = err500("disk '%s' does not exist\n", disk)
		case tv.Node != src.Node:
			aerr = err500("VM %d is not on the same node as VM %d\n", target, vmid)
		case parseDriveString(cur).get("media") == "cdrom":
			aerr = err500("can't reassign a cdrom drive\n")
		case src.Running && !rxUnusedKey.MatchString(disk):
			aerr = err500("cannot move disk '%s' of a running VM to another VM\n", disk)
		default:
			if _, busy := tv.Config[targetDisk]; busy {
				aerr = err500("target drive '%s' already exists on VM %d\n", targetDisk, target)
			}
			storage, _, _ = strings.Cut(parseDriveString(cur).get("file"), ":")
		}
		if aerr == nil {
			aerr = checkLock(src)
		}
	}
	s.mu.Unlock()
	if aerr != nil {
		return nil, aerr
	}
	if aerr := c.require("/storage/"+storage, "Datastore.AllocateSpace"); aerr != nil {
		return nil, aerr
	}
	return s.startTask(c, taskSpec{typ: "qmmove", id: strconv.Itoa(vmid), vmid: vmid, extraLocks: []int{target},
		work: func() ([]string, *taskError) {
			src, ok1 := s.vms[vmid]
			tv, ok2 := s.vms[target]
			if !ok1 || !ok2 {
				return nil, failTask("VM vanished during reassign")
			}
			if m := digestMismatch(vmid, c.params.Get("digest"), src); m != "" {
				return nil, failTask("%s", m)
			}
			if m := digestMismatch(target, c.params.Get("target-digest"), tv); m != "" {
				return nil, failTask("%s", m)
			}
			cur, ok := src.Config[disk]
			if !ok {
				return nil, failTask("disk '%s' does not exist", disk)
			}
			if _, busy := tv.Config[targetDisk]; busy {
				return nil, failTask("target drive '%s' already exists", targetDisk)
			}
			d := parseDriveString(cur)
			old := s.volumes[d.get("file")]
			if old == nil {
				return nil, failTask("volume '%s' does not exist", d.get("file"))
			}
			newID := s.allocName(old.Storage, target, "", old.Format)
			nv := *old
			nv.VolID, nv.VMID = newID, target
			delete(s.volumes, old.VolID)
			s.volumes[newID] = &nv
			delete(src.Config, disk)
			d.set("file", newID)
			if d.get("size") == "" && nv.Size > 0 {
				d.set("size", FormatSize(nv.Size))
			}
			if rxUnusedKey.MatchString(targetDisk) {
				tv.Config[targetDisk] = newID
			} else {
				tv.Config[targetDisk] = printDrive(d)
			}
			return []string{fmt.Sprintf("renamed volume '%s' to '%s'", old.VolID, newID)}, nil
		}}), nil
}

// POST /nodes/{node}/qemu/{vmid}/clone (full clones only).
func (s *Server) cloneVM(c *call) (any, *apiError) {
	vmid := c.vmid()
	newid, _ := strconv.Atoi(c.params.Get("newid"))
	if aerr := c.require("/vms/"+strconv.Itoa(vmid), "VM.Clone"); aerr != nil {
		return nil, aerr
	}
	if pool := c.params.Get("pool"); pool != "" {
		if aerr := c.require("/pool/"+pool, "VM.Allocate"); aerr != nil {
			return nil, aerr
		}
	} else if aerr := c.require("/vms/"+strconv.Itoa(newid), "VM.Allocate"); aerr != nil {
		return nil, aerr
	}
	targetStorage := c.params.Get("storage")
	s.mu.Lock()
	src, aerr := s.lookupVM(c)
	if aerr == nil {
		if _, exists := s.vms[newid]; exists {
			aerr = err500("unable to create VM %d: config file already exists\n", newid)
		} else if targetStorage != "" && s.storages[targetStorage] == nil {
			aerr = err500("storage '%s' does not exist\n", targetStorage)
		}
	}
	var nv *VM
	if aerr == nil {
		nv = &VM{ID: newid, Node: src.Node, Config: map[string]string{"lock": "clone"}, Pending: map[string]string{}, PendingDelete: map[string]bool{}}
		s.vms[newid] = nv
	}
	s.mu.Unlock()
	if aerr != nil {
		return nil, aerr
	}
	name := c.params.Get("name")
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
			nv.Config["vmgenid"] = fakeUUID(newid, 2)
			delete(nv.Config, "lock")
			return lines, nil
		},
		onFail: func() {
			if s.vms[newid] == nv {
				delete(s.vms, newid)
			}
		}}), nil
}
