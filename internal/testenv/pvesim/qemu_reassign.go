// Reassigning a disk to another VM: POST /nodes/{node}/qemu/{vmid}/move_disk with target-vmid
// (qm disk move), as qemu-server PVE/API2/Qemu.pm move_vm_disk and its
// $load_and_check_reassign_configs do it.

package pvesim

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// rxCloudinitVolume is qemu-server's drive_is_cloudinit (PVE/QemuServer/Drive.pm).
var rxCloudinitVolume = regexp.MustCompile(`[:/](?:vm-\d+-)?cloudinit(?:\.(?:raw|qcow|qcow2|qed|vmdk|cloop))?$`)

// reassign is one move_disk request with target-vmid.
type reassign struct {
	node                 string
	vmid, target         int
	disk, targetDisk     string
	digest, targetDigest string
}

func vmPath(vmid int) string { return "/vms/" + strconv.Itoa(vmid) }

// digestMismatch is PVE::Tools::assert_if_modified as move_vm_disk reports it: a digest sent
// by the client that differs from the VM's current config digest ("" when it matches or none
// was sent).
func digestMismatch(vmid int, want string, v *VM) string {
	if want == "" || want == v.digest() {
		return ""
	}
	return fmt.Sprintf("VM %d: detected modified configuration - file changed by other user? Try again.", vmid)
}

// POST /nodes/{node}/qemu/{vmid}/move_disk: only the reassign form (target-vmid) is emulated.
// The checks run before the task starts and again under both config locks, as
// $load_and_check_reassign_configs does.
func (s *Server) moveDisk(c *call) (any, *apiError) {
	vmid := c.vmid()
	if aerr := c.require(vmPath(vmid), "VM.Config.Disk"); aerr != nil {
		return nil, aerr
	}
	switch hasTarget, hasStorage := c.params.Has("target-vmid"), c.params.Has("storage"); {
	case hasTarget && hasStorage:
		msg := "either set 'storage' or 'target-vmid', but not both"
		return nil, paramError(map[string]string{"target-vmid": msg, "storage": msg})
	case !hasTarget && !hasStorage:
		msg := "both 'storage' and 'target-vmid' missing, either needs to be set"
		return nil, paramError(map[string]string{"target-vmid": msg, "storage": msg})
	case hasStorage:
		return nil, err500("pvesim: moving disks between storages is not emulated\n")
	}
	r := reassign{node: c.uri["node"], vmid: vmid, disk: c.params.Get("disk"),
		digest: c.params.Get("digest"), targetDigest: c.params.Get("target-digest")}
	r.target, _ = strconv.Atoi(c.params.Get("target-vmid"))
	r.targetDisk = c.params.Get("target-disk")
	if r.targetDisk == "" {
		r.targetDisk = r.disk
	}
	if aerr := c.require(vmPath(r.target), "VM.Config.Disk"); aerr != nil {
		return nil, aerr
	}
	if r.target == vmid {
		return nil, paramError(map[string]string{"target-vmid": "must be different than source VMID to reassign disk"})
	}
	s.mu.Lock()
	_, _, d, msg := s.checkReassign(r)
	s.mu.Unlock()
	if msg != "" {
		return nil, err500("%s\n", msg)
	}
	storage, _, _ := strings.Cut(d.get("file"), ":")
	if aerr := c.require("/storage/"+storage, "Datastore.AllocateSpace"); aerr != nil {
		return nil, aerr
	}
	return s.startTask(c, taskSpec{typ: "qmmove", id: strconv.Itoa(vmid), vmid: vmid, extraLocks: []int{r.target},
		work: func() ([]string, *taskError) { return s.reassignDisk(r) }}), nil
}

// checkReassign is $load_and_check_reassign_configs (s.mu held): it returns both VMs and the
// source drive, or PVE's refusal.
func (s *Server) checkReassign(r reassign) (src, tv *VM, d *propString, msg string) {
	src, tv, msg = s.loadReassignConfigs(r)
	if msg != "" {
		return nil, nil, nil, msg
	}
	if m := digestMismatch(r.vmid, r.digest, src); m != "" {
		return nil, nil, nil, m
	}
	if m := digestMismatch(r.target, r.targetDigest, tv); m != "" {
		return nil, nil, nil, m
	}
	cur, ok := src.Config[r.disk]
	if !ok {
		return nil, nil, nil, fmt.Sprintf("Disk '%s' for VM '%d' does not exist", r.disk, r.vmid)
	}
	if _, busy := tv.Config[r.targetDisk]; busy {
		return nil, nil, nil, fmt.Sprintf("Target disk key '%s' is already in use for VM '%d'", r.targetDisk, r.target)
	}
	d = parseDriveString(cur)
	if msg = s.checkReassignVolume(r, src, d); msg != "" {
		return nil, nil, nil, msg
	}
	if msg = s.checkTargetDiskFormat(r.targetDisk, cur); msg != "" {
		return nil, nil, nil, msg
	}
	return src, tv, d, ""
}

// loadReassignConfigs: both VMs must exist (PVE looks them up in the cluster's VM list, which
// also holds containers), share a node, be QEMU VMs on the node the request went to, be
// unlocked and not be templates (s.mu held).
func (s *Server) loadReassignConfigs(r reassign) (src, tv *VM, msg string) {
	srcNode, ok := s.guestNode(r.vmid)
	if !ok {
		return nil, nil, fmt.Sprintf("could not find VM %d", r.vmid)
	}
	targetNode, ok := s.guestNode(r.target)
	if !ok {
		return nil, nil, fmt.Sprintf("could not find target VM %d", r.target)
	}
	if srcNode != targetNode {
		return nil, nil, fmt.Sprintf("Both VMs need to be on the same node (%s != %s)", srcNode, targetNode)
	}
	for _, id := range []int{r.vmid, r.target} {
		v := s.vms[id]
		if v == nil || v.Node != r.node {
			return nil, nil, strings.TrimSpace(configMissing(r.node, id).Msg)
		}
		if l := v.Config["lock"]; l != "" {
			return nil, nil, fmt.Sprintf("VM is locked (%s)", l)
		}
	}
	src, tv = s.vms[r.vmid], s.vms[r.target]
	if src.Config["template"] == "1" || tv.Config["template"] == "1" {
		return nil, nil, "Can't move disks from or to template VMs"
	}
	return src, tv, ""
}

// guestNode is the node of a VM or container, as PVE::Cluster::get_vmlist lists it (s.mu held).
func (s *Server) guestNode(id int) (string, bool) {
	if v, ok := s.vms[id]; ok {
		return v.Node, true
	}
	if ct, ok := s.cts[id]; ok {
		return ct.Node, true
	}
	return "", false
}

// checkReassignVolume: the drive must have a PVE-managed volume that is not a CD's (a
// cloud-init drive is not excluded), that no snapshot and no other drive uses, on a storage
// that can rename it; a running VM gives away only unused disks (s.mu held).
func (s *Server) checkReassignVolume(r reassign, src *VM, d *propString) string {
	volid := d.get("file")
	switch {
	case volid == "":
		return fmt.Sprintf("disk '%s' has no associated volume", r.disk)
	case d.get("media") == "cdrom" && !rxCloudinitVolume.MatchString(volid):
		return "CD drive contents can't be moved to another VM"
	case !rxVolumeID.MatchString(volid):
		return fmt.Sprintf("Volume '%s' not managed by PVE", volid)
	case volumeInUse(src, r.disk, volid):
		return "Can't move disk used by a snapshot to another VM"
	case !s.canRename(volid):
		return "Storage does not support moving of this disk to another VM"
	case src.Running && !rxUnusedKey.MatchString(r.disk):
		return "Cannot move disk to another VM while the source VM is running - detach first"
	}
	return ""
}

// volumeInUse is qemu-server PVE/QemuServer/Drive.pm is_volume_in_use: another non-CD drive
// of the VM, or any drive of one of its snapshots, uses the volume.
func volumeInUse(v *VM, skip, volid string) bool {
	uses := func(conf map[string]string, skip string) bool {
		for k, val := range conf {
			if !isDriveKey(k) || k == skip {
				continue
			}
			d := parseDriveString(val)
			if d.get("media") != "cdrom" && d.get("file") == volid {
				return true
			}
		}
		return false
	}
	if uses(v.Config, skip) {
		return true
	}
	for _, snap := range v.Snapshots {
		if uses(snap, "") {
			return true
		}
	}
	return false
}

// checkTargetDiskFormat: the source drive's options must be valid for the target drive key
// ($load_and_check_reassign_configs re-parses it "using target disk slot format", e.g. ssd=1
// has no place on a VirtIO disk). Unused targets take the bare volume. Without a schema
// nothing is checked.
func (s *Server) checkTargetDiskFormat(targetDisk, value string) string {
	if s.schema == nil || rxUnusedKey.MatchString(targetDisk) {
		return ""
	}
	m := s.schema.Method("/nodes/{node}/qemu/{vmid}/config", "PUT")
	if m == nil {
		return ""
	}
	p := m.Param(targetDisk)
	if p == nil || p.FormatProps == nil {
		return ""
	}
	if _, msg := parsePropertyString(p.FormatProps, value, ""); msg != "" {
		return "failed to parse source disk for target disk format - " + strings.TrimSpace(msg)
	}
	if driveUnparsable(targetDisk, parseDriveString(value)) {
		return "failed to parse source disk for target disk format - "
	}
	return ""
}

// reassignDisk is the worker of the reassign: the checks again under both locks, the volume
// renamed to the target VM, the disk dropped from the source's boot order and config and
// written to the target's (s.mu held).
func (s *Server) reassignDisk(r reassign) ([]string, *taskError) {
	src, tv, d, msg := s.checkReassign(r)
	if msg != "" {
		return nil, failTask("%s", msg)
	}
	lines := []string{fmt.Sprintf("reassign disk '%s' from VM '%d' as '%s' to VM '%d'", r.disk, r.vmid, r.targetDisk, r.target)}
	old := s.volumes[d.get("file")]
	if old == nil {
		return lines, failTask("volume '%s' does not exist", d.get("file"))
	}
	newID := s.allocName(old.Storage, r.target, "", old.Format)
	nv := *old
	nv.VolID, nv.VMID = newID, r.target
	delete(s.volumes, old.VolID)
	s.volumes[newID] = &nv
	if removeFromBootOrder(src, r.disk) {
		lines = append(lines, fmt.Sprintf("removing disk '%s' from boot order config", r.disk))
	}
	delete(src.Config, r.disk)
	lines = append(lines, fmt.Sprintf("removing disk '%s' from VM '%d' config", r.disk, r.vmid))
	d.set("file", newID)
	if d.get("size") == "" && nv.Size > 0 {
		d.set("size", FormatSize(nv.Size))
	}
	if rxUnusedKey.MatchString(r.targetDisk) {
		tv.Config[r.targetDisk] = newID
	} else {
		tv.Config[r.targetDisk] = printDrive(d)
	}
	return lines, nil
}

// removeFromBootOrder drops a disk from the VM's boot order (order=...) and reports whether it
// was there. An emptied order is rendered "" by print_bootorder, a line parse_vm_config does
// not read back, so the key goes. Emulator choice: the legacy boot settings are not converted.
func removeFromBootOrder(v *VM, disk string) bool {
	devs := splitList(parsePropString(v.Config["boot"], "legacy").get("order"))
	i := slices.Index(devs, disk)
	if i < 0 {
		return false
	}
	devs = slices.Delete(devs, i, i+1)
	if len(devs) == 0 {
		delete(v.Config, "boot")
	} else {
		v.Config["boot"] = "order=" + strings.Join(devs, ";")
	}
	return true
}
