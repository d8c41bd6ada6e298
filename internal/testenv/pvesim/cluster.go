package pvesim

import (
	"sort"
	"strconv"
	"strings"
)

func (s *Server) buildRoutes() []route {
	rs := []route{
		{method: "GET", template: "/version", handler: s.version},
		{method: "GET", template: "/nodes", handler: s.nodes},
		{method: "GET", template: "/cluster/resources", handler: s.resources},
		{method: "GET", template: "/cluster/nextid", handler: s.nextID},
		{method: "GET", template: "/access/permissions", handler: s.permissions},
		{method: "GET", template: "/cluster/ha/resources/{sid}", handler: s.haResource},
		{method: "GET", template: "/nodes/{node}/qemu", handler: s.listQemu},
		{method: "POST", template: "/nodes/{node}/qemu", async: true, handler: s.createVM},
		{method: "GET", template: "/nodes/{node}/qemu/{vmid}/config", handler: s.getConfig},
		{method: "PUT", template: "/nodes/{node}/qemu/{vmid}/config", handler: s.putConfig},
		{method: "POST", template: "/nodes/{node}/qemu/{vmid}/config", async: true, handler: s.postConfig},
		{method: "GET", template: "/nodes/{node}/qemu/{vmid}/pending", handler: s.pending},
		{method: "PUT", template: "/nodes/{node}/qemu/{vmid}/resize", async: true, handler: s.resize},
		{method: "GET", template: "/nodes/{node}/qemu/{vmid}/status/current", handler: s.statusCurrent},
		{method: "POST", template: "/nodes/{node}/qemu/{vmid}/status/start", async: true, handler: s.start},
		{method: "POST", template: "/nodes/{node}/qemu/{vmid}/status/stop", async: true, handler: s.stop},
		{method: "POST", template: "/nodes/{node}/qemu/{vmid}/status/shutdown", async: true, handler: s.shutdown},
		{method: "DELETE", template: "/nodes/{node}/qemu/{vmid}", async: true, handler: s.destroy},
		{method: "POST", template: "/nodes/{node}/qemu/{vmid}/move_disk", async: true, handler: s.moveDisk},
		{method: "POST", template: "/nodes/{node}/qemu/{vmid}/clone", async: true, handler: s.cloneVM},
		{method: "GET", template: "/nodes/{node}/qemu/{vmid}/cloudinit/dump", handler: s.cloudinitDump},
		{method: "GET", template: "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces", handler: s.agentNetworkInterfaces},
		{method: "GET", template: "/nodes/{node}/storage", handler: s.listStorage},
		{method: "GET", template: "/nodes/{node}/storage/{storage}/content", handler: s.storageContent},
		{method: "POST", template: "/nodes/{node}/storage/{storage}/download-url", async: true, handler: s.downloadURL},
		{method: "GET", template: "/nodes/{node}/tasks", handler: s.taskList},
		{method: "GET", template: "/nodes/{node}/tasks/{upid}/status", handler: s.taskStatus},
		{method: "GET", template: "/nodes/{node}/tasks/{upid}/log", handler: s.taskLog},
	}
	for i := range rs {
		rs[i].segs = strings.Split(strings.Trim(rs[i].template, "/"), "/")
	}
	return rs
}

func (s *Server) version(*call) (any, *apiError) {
	v := s.opts.Version
	parts := strings.SplitN(v, ".", 3)
	release := v
	if len(parts) >= 2 {
		release = parts[0] + "." + parts[1]
	}
	return map[string]any{"version": v, "release": release, "repoid": "pvesim"}, nil
}

func (s *Server) nodes(*call) (any, *apiError) {
	out := []map[string]any{}
	for _, n := range s.opts.Nodes {
		out = append(out, map[string]any{"node": n, "id": "node/" + n, "type": "node", "status": "online",
			"maxcpu": 16, "maxmem": int64(64) << 30, "mem": int64(8) << 30, "cpu": 0.05, "uptime": 86400,
			"level": "", "ssl_fingerprint": "00:11"})
	}
	return out, nil
}

// resources answers GET /cluster/resources, filtering by privileges like PVE.
func (s *Server) resources(c *call) (any, *apiError) {
	typ := c.params.Get("type")
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	if typ == "" || typ == "vm" {
		ids := make([]int, 0, len(s.vms))
		for id := range s.vms {
			ids = append(ids, id)
		}
		sort.Ints(ids)
		for _, id := range ids {
			v := s.vms[id]
			if !c.can("/vms/"+strconv.Itoa(id), "VM.Audit") {
				continue
			}
			out = append(out, s.vmResource(v))
		}
		cts := make([]int, 0, len(s.cts))
		for id := range s.cts {
			cts = append(cts, id)
		}
		sort.Ints(cts)
		for _, id := range cts {
			if !c.can("/vms/"+strconv.Itoa(id), "VM.Audit") {
				continue
			}
			ct := s.cts[id]
			r := map[string]any{"id": "lxc/" + strconv.Itoa(id), "type": "lxc", "vmid": id, "node": ct.Node, "name": ct.Name,
				"status": "running", "template": 0, "maxmem": int64(512) << 20, "maxcpu": 1, "maxdisk": int64(8) << 30}
			if ct.Tags != "" {
				r["tags"] = ct.Tags
			}
			out = append(out, r)
		}
	}
	if typ == "" || typ == "node" {
		for _, n := range s.opts.Nodes {
			if !c.token.can("/nodes/"+n, "Sys.Audit") {
				continue
			}
			out = append(out, map[string]any{"id": "node/" + n, "type": "node", "node": n, "status": "online",
				"maxcpu": 16, "maxmem": int64(64) << 30, "maxdisk": int64(100) << 30, "uptime": 86400})
		}
	}
	if typ == "" || typ == "storage" {
		for _, n := range s.opts.Nodes {
			for _, st := range s.sortedStorages() {
				if !c.token.can("/storage/"+st.ID, "Datastore.Audit") && !c.token.can("/storage/"+st.ID, "Datastore.AllocateSpace") {
					continue
				}
				shared := 0
				if st.Shared {
					shared = 1
				}
				out = append(out, map[string]any{"id": "storage/" + n + "/" + st.ID, "type": "storage", "node": n,
					"storage": st.ID, "status": "available", "plugintype": st.Type, "content": strings.Join(st.Content, ","),
					"shared": shared, "maxdisk": s.storageTotal(st), "disk": s.storageUsed(st.ID)})
			}
		}
	}
	return out, nil
}

func (s *Server) sortedStorages() []*Storage {
	out := make([]*Storage, 0, len(s.storages))
	for _, st := range s.storages {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (s *Server) storageTotal(st *Storage) int64 {
	if st.Total > 0 {
		return st.Total
	}
	return 1 << 40
}

func (s *Server) storageUsed(id string) int64 {
	var n int64
	for _, v := range s.volumes {
		if v.Storage == id {
			n += v.Size
		}
	}
	return n
}

// vmResource renders one VM entry of /cluster/resources (s.mu held).
func (s *Server) vmResource(v *VM) map[string]any {
	status := "stopped"
	uptime := 0
	if v.Running {
		status = "running"
		uptime = int(s.opts.Now().Sub(v.StartedAt).Seconds())
	}
	mem, _ := strconv.Atoi(strings.TrimPrefix(v.Config["memory"], "current="))
	if mem == 0 {
		mem = 512
	}
	cores, _ := strconv.Atoi(v.Config["cores"])
	if cores == 0 {
		cores = 1
	}
	var maxdisk int64
	for k, val := range v.Config {
		if isDriveKey(k) {
			d := parseDriveString(val)
			if d.get("media") != "cdrom" {
				if sz, ok := ParseSize(d.get("size")); ok && maxdisk == 0 {
					maxdisk = sz
				}
			}
		}
	}
	r := map[string]any{
		"id": "qemu/" + strconv.Itoa(v.ID), "type": "qemu", "vmid": v.ID, "node": v.Node, "status": status,
		"template": 0, "maxmem": int64(mem) << 20, "maxcpu": cores, "maxdisk": maxdisk, "mem": 0, "cpu": 0,
		"disk": 0, "uptime": uptime, "diskread": 0, "diskwrite": 0, "netin": 0, "netout": 0,
	}
	if n := v.Config["name"]; n != "" {
		r["name"] = n
	}
	if t := v.Config["tags"]; t != "" {
		r["tags"] = t
	}
	if l := v.Config["lock"]; l != "" {
		r["lock"] = l
	}
	if v.Config["template"] == "1" {
		r["template"] = 1
	}
	if v.HA {
		r["hastate"] = "started"
	}
	return r
}

// nextID answers GET /cluster/nextid; PVE returns the id as a JSON string.
func (s *Server) nextID(c *call) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := c.params.Get("vmid"); v != "" {
		id, _ := strconv.Atoi(v)
		if s.vmidTaken(id) != "" {
			return nil, paramError(map[string]string{"vmid": "VM " + v + " already exists"})
		}
		return v, nil
	}
	for id := 100; ; id++ {
		if s.vmidTaken(id) == "" {
			return strconv.Itoa(id), nil
		}
	}
}

func (s *Server) permissions(c *call) (any, *apiError) {
	if u := c.params.Get("userid"); u != "" && u != c.token.ID {
		if aerr := c.require("/access", "Sys.Audit"); aerr != nil {
			return nil, aerr
		}
	}
	if p := c.params.Get("path"); p != "" {
		return map[string]any{p: c.permissionsAt(p)}, nil
	}
	return c.effectivePermissions(), nil
}

// haResource answers GET /cluster/ha/resources/{sid}: 500 "no such
// resource" for VMs not managed by HA, as PVE's HA API does.
func (s *Server) haResource(c *call) (any, *apiError) {
	if aerr := c.require("/", "Sys.Audit"); aerr != nil {
		return nil, aerr
	}
	sid := c.uri["sid"]
	id, err := strconv.Atoi(strings.TrimPrefix(strings.TrimPrefix(sid, "vm:"), "ct:"))
	if err != nil {
		return nil, paramError(map[string]string{"sid": "unable to parse service id '" + sid + "'"})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vms[id]
	if !ok || !v.HA {
		return nil, err500("no such resource 'vm:%d'\n", id)
	}
	return map[string]any{"sid": "vm:" + strconv.Itoa(id), "type": "vm", "state": "started", "digest": v.digest()}, nil
}
