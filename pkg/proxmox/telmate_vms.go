// The version call and the API methods on VMs: listing, config, create/clone/update/resize,
// power, delete and disk moves.

package proxmox

import (
	"context"
	"errors"
	"net/url"
	"strconv"

	pxapi "github.com/Telmate/proxmox-api-go/proxmox"
)

// Version implements API.
func (t *Telmate) Version(ctx context.Context) (string, error) {
	return guard("version", func() (string, error) {
		v, err := t.c.GetVersion(ctx)
		if err != nil {
			return "", err
		}

		return v.String(), nil
	})
}

// ListVMs implements API.
func (t *Telmate) ListVMs(ctx context.Context) ([]VMResource, error) {
	return guard("list VMs", func() ([]VMResource, error) {
		raws, err := pxapi.ListGuests(ctx, t.c)
		if err != nil {
			return nil, err
		}

		out := make([]VMResource, 0, len(raws))

		for _, raw := range raws {
			r := raw.Get()
			if r.Type != pxapi.GuestQemu && r.Type != pxapi.GuestLxc {
				continue
			}

			vm := VMResource{VMID: int(r.ID), Node: string(r.Node), Name: string(r.Name), Running: r.Status == pxapi.PowerStateRunning,
				Locked: r.Locked, Template: r.Template, Container: r.Type == pxapi.GuestLxc}
			for _, tag := range r.Tags {
				vm.Tags = append(vm.Tags, string(tag))
			}

			out = append(out, vm)
		}

		return out, nil
	})
}

// NextID implements API.
func (t *Telmate) NextID(ctx context.Context) (int, error) {
	return guard("nextid", func() (int, error) {
		id, err := t.c.GetNextID(ctx, nil)
		return int(id), err
	})
}

// IsFreeID implements API.
func (t *Telmate) IsFreeID(ctx context.Context, vmid int) (bool, error) {
	return guard("nextid", func() (bool, error) {
		_, err := t.c.GetItemConfigString(ctx, "/cluster/nextid?vmid="+strconv.Itoa(vmid), "API", "cluster/nextid")
		if err == nil {
			return true, nil
		}

		var ae *pxapi.ApiError
		if errors.As(err, &ae) && ae.Code == "400" {
			return false, nil
		}

		return false, err
	})
}

// VMConfig implements API.
func (t *Telmate) VMConfig(ctx context.Context, node string, vmid int) (map[string]string, error) {
	return guard("read config", func() (map[string]string, error) {
		raw, err := t.c.GetVmConfig(ctx, vmRef(node, vmid))
		if err != nil {
			return nil, err
		}

		out := make(map[string]string, len(raw))
		for k, v := range raw {
			out[k] = stringify(v)
		}

		return out, nil
	})
}

// PendingKeys implements API.
func (t *Telmate) PendingKeys(ctx context.Context, node string, vmid int) ([]string, error) {
	return guard("read pending config", func() ([]string, error) {
		list, err := t.c.GetItemListInterfaceArray(ctx, qemuPath(node, vmid)+"/pending")
		if err != nil {
			return nil, err
		}

		var keys []string

		for _, e := range list {
			m := e.(map[string]any)
			_, pending := m["pending"]
			_, del := m["delete"]

			if pending || del {
				keys = append(keys, m["key"].(string))
			}
		}

		return keys, nil
	})
}

// CreateVM implements API.
func (t *Telmate) CreateVM(ctx context.Context, node string, vmid int, params Params) (string, error) {
	p := Params{"vmid": strconv.Itoa(vmid)}
	for k, v := range params {
		p[k] = v
	}

	return t.post(ctx, "create VM", "/nodes/"+node+"/qemu", p)
}

// CloneVM implements API.
func (t *Telmate) CloneVM(ctx context.Context, node string, template, newID int, params Params) (string, error) {
	p := Params{"newid": strconv.Itoa(newID), "full": "1"}
	for k, v := range params {
		p[k] = v
	}

	return t.post(ctx, "clone VM", qemuPath(node, template)+"/clone", p)
}

// UpdateVM implements API.
func (t *Telmate) UpdateVM(ctx context.Context, node string, vmid int, params Params) (string, error) {
	return t.post(ctx, "update VM config", qemuPath(node, vmid)+"/config", params)
}

// ResizeDisk implements API.
func (t *Telmate) ResizeDisk(ctx context.Context, node string, vmid int, disk, size, digest string) (string, error) {
	p := Params{"disk": disk, "size": size}
	if digest != "" {
		p["digest"] = digest
	}

	return t.put(ctx, "resize disk", qemuPath(node, vmid)+"/resize", p)
}

// StartVM implements API.
func (t *Telmate) StartVM(ctx context.Context, node string, vmid int) (string, error) {
	return t.post(ctx, "start VM", qemuPath(node, vmid)+"/status/start", nil)
}

// StopVM implements API.
func (t *Telmate) StopVM(ctx context.Context, node string, vmid int) (string, error) {
	return t.post(ctx, "stop VM", qemuPath(node, vmid)+"/status/stop", nil)
}

// DeleteVM implements API. Telmate's DeleteVmParams waits for the task itself (polling every
// 2 s); on failure the task log is looked up through the node's task list.
func (t *Telmate) DeleteVM(ctx context.Context, node string, vmid int, purge, destroyUnreferenced bool) error {
	params := map[string]any{}
	if purge {
		params["purge"] = 1
	}

	if destroyUnreferenced {
		params["destroy-unreferenced-disks"] = 1
	}

	_, err := guard("delete VM", func() (struct{}, error) {
		_, err := t.c.DeleteVmParams(ctx, vmRef(node, vmid), params)
		return struct{}{}, err
	})
	if err == nil {
		return nil
	}

	var ae *APIError
	if errors.As(err, &ae) || errors.Is(err, ErrConnection) || errors.Is(err, ErrClientPanic) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	// What remains is the task's exit status.
	te := &TaskError{ExitStatus: err.Error()}
	if upid, lerr := t.lastTask(ctx, node, vmid, "qmdestroy"); lerr == nil && upid != "" {
		te.UPID = upid
		te.LogTail, _ = t.TaskLog(ctx, upid, 10)
	}

	return te
}

// lastTask finds the newest task of a type for a VM (GET /nodes/{node}/tasks).
func (t *Telmate) lastTask(ctx context.Context, node string, vmid int, typ string) (string, error) {
	return guard("list tasks", func() (string, error) {
		q := url.Values{"vmid": {strconv.Itoa(vmid)}, "typefilter": {typ}, "limit": {"1"}}
		list, err := t.c.GetItemListInterfaceArray(ctx, "/nodes/"+node+"/tasks?"+q.Encode())
		if err != nil || len(list) == 0 {
			return "", err
		}

		return list[0].(map[string]any)["upid"].(string), nil
	})
}

// MoveDisk implements API.
func (t *Telmate) MoveDisk(ctx context.Context, node string, vmid int, req MoveDiskRequest) (string, error) {
	p := Params{"disk": req.Disk, "target-vmid": strconv.Itoa(req.TargetVMID), "target-disk": req.TargetDisk}
	if req.Digest != "" {
		p["digest"] = req.Digest
	}

	if req.TargetDigest != "" {
		p["target-digest"] = req.TargetDigest
	}

	return t.post(ctx, "move disk", qemuPath(node, vmid)+"/move_disk", p)
}
