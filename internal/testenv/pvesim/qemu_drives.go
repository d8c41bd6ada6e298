// Drive handling of the qemu endpoints: checking and allocating disk volumes, resizing and
// reassigning disks (qemu-server PVE/API2/Qemu.pm, PVE/QemuServer/Drive.pm).

package pvesim

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

var (
	rxNewDisk   = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9\-_.]*[a-zA-Z0-9]):(\d+(?:\.\d+)?)$`)
	rxCloudinit = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9\-_.]*[a-zA-Z0-9]):cloudinit$`)
)

// checkDrive validates a drive value against the VM and the storage state (s.mu held) before
// a task allocates anything. The parameter checks PVE makes before that are in
// drive_params.go and drive_storage.go.
func (s *Server) checkDrive(v *VM, key, val string) *apiError {
	d := parseDriveString(val)
	file := d.get("file")
	if file == "" || file == "none" || file == "cdrom" || strings.HasPrefix(file, "/") {
		return nil
	}
	if m := rxCloudinit.FindStringSubmatch(file); m != nil {
		// No content check: create_disks allocates the cloud-init volume with vdisk_alloc,
		// which does not look at the storage's content types (qemu-server PVE/API2/Qemu.pm).
		if s.storages[m[1]] == nil {
			return err500("storage '%s' does not exist\n", m[1])
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
		if s.storages[m[1]] == nil {
			return err500("storage '%s' does not exist\n", m[1])
		}
		if imp := d.get("import-from"); imp != "" {
			if strings.HasPrefix(imp, "/") {
				return nil
			}
			if s.volumes[imp] == nil {
				return err500("volume '%s' does not exist\n", imp)
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
