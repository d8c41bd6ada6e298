// VM power endpoints: GET .../status/current and POST .../status/{start,stop,shutdown}.

package pvesim

import (
	"strconv"
	"strings"
)

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
		if msg := s.checkCustomCloudinit(v); msg != "" {
			return nil, failTask("%s", msg)
		}
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
