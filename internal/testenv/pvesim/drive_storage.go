// Storage checks of drive options before any task starts: qemu-server PVE/API2/Qemu.pm
// $check_storage_access with pve-storage PVE/Storage.pm check_volume_access. They decide
// whether a new disk may be allocated on a storage (its content must include images), whether
// an existing volume may back a drive (images or iso only) and whether an import-from source
// may be imported.

package pvesim

import (
	"fmt"
	"strings"
)

// checkStorageAccess is $check_storage_access for the drive keys of a create (defaultStorage:
// its storage parameter) or an update. Like $foreach_volume_with_alloc it skips drives
// parse_drive refuses: $check_drive_param reports those. s.mu must NOT be held.
func (s *Server) checkStorageAccess(c *call, vmid int, keys []string, params Params, defaultStorage string) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range sortedDriveKeys(keys) {
		d := parseDriveString(params.Get(k))
		if driveUnparsable(k, d) {
			continue
		}
		if aerr := s.checkDriveStorage(c, vmid, k, d, defaultStorage); aerr != nil {
			return aerr
		}
		if src := d.get("import-from"); src != "" {
			if aerr := s.checkImportSource(c, vmid, k, src, params.Get("import-working-storage")); aerr != nil {
				return aerr
			}
		}
	}
	return nil
}

// checkDriveStorage checks the volume behind one drive (s.mu held): nothing for an empty
// drive or a cloud-init drive; Sys.Console for the host's CD-ROM; for a new disk
// Datastore.AllocateSpace and a storage whose content includes images; otherwise the access
// to the volume, which must hold images or an ISO. A media=cdrom drive is never a new disk,
// so its STORAGE:SIZE is parsed as a volume name.
func (s *Server) checkDriveStorage(c *call, vmid int, key string, d *propString, defaultStorage string) *apiError {
	file := d.get("file")
	cdrom := d.get("media") == "cdrom"
	vm := rxVolumeID.FindStringSubmatch(file)
	switch {
	case file == "" || file == "none" || file == "cloudinit" || vm != nil && vm[2] == "cloudinit":
		return nil
	case cdrom && file == "cdrom":
		return c.require("/", "Sys.Console")
	case !cdrom && rxNewDiskPVE.MatchString(file):
		return s.checkNewDiskStorage(c, rxNewDiskPVE.FindStringSubmatch(file)[2], defaultStorage)
	}
	if aerr := s.checkVolumeAccess(c, vmid, file, ""); aerr != nil {
		return aerr
	}
	if vm == nil {
		return nil
	}
	if info, _ := s.parseVolname(file); info.vtype != "images" && info.vtype != "iso" {
		return paramError(map[string]string{key: "content type needs to be 'images' or 'iso'"})
	}
	return nil
}

// checkNewDiskStorage: a new disk needs Datastore.AllocateSpace on a storage that exists and
// is configured for images ($check_storage_access: "storage '...' does not support vm
// images", reported on the storage parameter).
func (s *Server) checkNewDiskStorage(c *call, storage, defaultStorage string) *apiError {
	if storage == "" {
		storage = defaultStorage
	}
	if storage == "" {
		return err500("no storage ID specified (and no default storage)\n")
	}
	if aerr := c.require("/storage/"+storage, "Datastore.AllocateSpace"); aerr != nil {
		return aerr
	}
	st := s.storages[storage]
	if st == nil {
		return err500("storage '%s' does not exist\n", storage)
	}
	if !st.hasContent("images") {
		return paramError(map[string]string{"storage": fmt.Sprintf("storage '%s' does not support vm images", storage)})
	}
	return nil
}

// onlyRootPaths is check_volume_access's refusal of a file system path to anyone but
// root@pam (an API token never is). Its die has no trailing newline, so Perl appends the
// location: line 651 of PVE/Storage.pm in pve-storage 9.1.7, line 581 on its stable-8 branch.
func (s *Server) onlyRootPaths() *apiError {
	line := 651
	if strings.HasPrefix(s.opts.Version, "8.") {
		line = 581
	}
	return err500("Only root can pass arbitrary filesystem paths. at /usr/share/perl5/PVE/Storage.pm line %d.\n", line)
}

// checkVolumeAccess is pve-storage PVE/Storage.pm check_volume_access: the volume must parse
// (and be of wantType when given); Datastore.Allocate on its storage allows everything, ISOs,
// templates and import sources need Datastore.AllocateSpace or Datastore.Audit, a VM's own
// volumes are free, a backup needs VM.Backup on its guest and another VM's disk
// VM.Config.Disk on it (s.mu held).
func (s *Server) checkVolumeAccess(c *call, vmid int, volid, wantType string) *apiError {
	m := rxVolumeID.FindStringSubmatch(volid)
	if m == nil {
		return s.onlyRootPaths()
	}
	info, msg := s.parseVolname(volid)
	if msg != "" {
		return err500("%s\n", msg)
	}
	if wantType != "" && info.vtype != wantType && (wantType != "rootdir" || info.vtype != "images") {
		return err500("unable to use volume %s - content type needs to be '%s'\n", volid, wantType)
	}
	storage := "/storage/" + m[1]
	if c.can(storage, "Datastore.Allocate") {
		return nil
	}
	owner := fmt.Sprintf("/vms/%d", info.owner)
	switch {
	case info.vtype == "iso" || info.vtype == "vztmpl" || info.vtype == "import":
		return c.requireAny(storage, "Datastore.AllocateSpace", "Datastore.Audit")
	case info.owner != 0 && info.owner == vmid:
		return nil
	case info.vtype == "backup" && info.owner != 0:
		return firstErr(c.require(storage, "Datastore.AllocateSpace"), c.require(owner, "VM.Backup"))
	case (info.vtype == "images" || info.vtype == "rootdir") && info.owner != 0:
		return firstErr(c.require(storage, "Datastore.Audit"), c.require(owner, "VM.Config.Disk"))
	}
	return err500("missing privileges to access %s\n", volid)
}

func firstErr(errs ...*apiError) *apiError {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// checkImportSource is the import-from part of $check_storage_access: a volume source must
// hold images or import content; an OVA member needs a working storage (the source's, or
// import-working-storage) that holds images and is file based; a disk of a VM needs VM.Clone
// on it, anything else access to the volume (s.mu held).
func (s *Server) checkImportSource(c *call, vmid int, key, src, workingStorage string) *apiError {
	m := rxVolumeID.FindStringSubmatch(src)
	if m == nil {
		return s.checkVolumeAccess(c, vmid, src, "")
	}
	if s.storages[m[1]] == nil {
		return err500("storage '%s' does not exist\n", m[1])
	}
	info, msg := s.checkedParseVolname(src)
	if msg != "" {
		return err500("%s\n", msg)
	}
	if info.vtype != "images" && info.vtype != "import" {
		return paramError(map[string]string{key: fmt.Sprintf("%s has wrong type '%s' - needs to be 'images' or 'import'", src, info.vtype)})
	}
	if info.vtype == "import" && strings.HasPrefix(info.format, "ova+") {
		if aerr := s.checkExtractionStorage(c, key, m[1], workingStorage); aerr != nil {
			return aerr
		}
	}
	if info.owner != 0 {
		return c.require(fmt.Sprintf("/vms/%d", info.owner), "VM.Clone")
	}
	return s.checkVolumeAccess(c, vmid, src, "")
}

// checkExtractionStorage: the storage an OVA's disk is extracted to must hold images and be
// file based, and the caller needs Datastore.AllocateSpace on it (s.mu held).
func (s *Server) checkExtractionStorage(c *call, key, sourceStorage, workingStorage string) *apiError {
	id, param := sourceStorage, key
	if workingStorage != "" {
		id, param = workingStorage, "import-working-storage"
	}
	st := s.storages[id]
	if st == nil {
		return err500("storage '%s' does not exist\n", id)
	}
	if !st.hasContent("images") || !st.fileBased() {
		return paramError(map[string]string{param: fmt.Sprintf("import working storage '%s' does not support 'images' content type or is not file based.", id)})
	}
	return c.require("/storage/"+id, "Datastore.AllocateSpace")
}

// checkedParseVolname is qemu-server PVE/QemuServer/Drive.pm checked_parse_volname: the
// volume's format must be one QEMU reads, an OVA member's one too (s.mu held).
func (s *Server) checkedParseVolname(volid string) (volInfo, string) {
	info, msg := s.parseVolname(volid)
	if msg != "" {
		return info, msg
	}
	if info.vtype == "import" {
		if info.format == "" {
			return info, fmt.Sprintf("unable to parse format for import volume '%s'", volid)
		}
		if inner, ok := strings.CutPrefix(info.format, "ova+"); ok {
			if !rxQemuFormat.MatchString(inner) {
				return info, fmt.Sprintf("volume '%s' - unknown import format '%s'", volid, info.format)
			}
			return info, ""
		}
	}
	if info.format == "" {
		info.format = "raw"
	}
	if !rxQemuFormat.MatchString(info.format) {
		return info, fmt.Sprintf("volume '%s' - not a QEMU image format '%s'", volid, info.format)
	}
	return info, ""
}
