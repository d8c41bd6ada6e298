// Volume names as pve-storage's plugins parse them, and the storage features that depend on
// them (pve-storage PVE/Storage.pm parse_volname, PVE/Storage/*Plugin.pm parse_volname and
// volume_has_feature).

package pvesim

import (
	"regexp"
	"strconv"
	"strings"
)

// volInfo is what parse_volname returns: the content type (vtype), the owning VM (0: none),
// whether the volume is a template's base volume, and its format.
type volInfo struct {
	vtype  string
	owner  int
	isBase bool
	format string
}

// Volume name patterns of pve-storage PVE/Storage/Plugin.pm parse_volname / parse_name_dir
// (directory storages) and $ISO_EXT_RE_0, $VZTMPL_EXT_RE_1, $BACKUP_EXT_RE_2,
// $IMPORT_EXT_RE_1, $OVA_CONTENT_RE_1 of PVE/Storage.pm.
var (
	rxDirLinked   = regexp.MustCompile(`^(\d+)/(\S+)/(\d+)/(\S+)$`)
	rxDirImage    = regexp.MustCompile(`^(\d+)/(\S+)$`)
	rxDirISO      = regexp.MustCompile(`(?i)^iso/[^/]+\.(?:iso|img)$`)
	rxDirVztmpl   = regexp.MustCompile(`(?i)^vztmpl/[^/]+\.(?:tar|tar\.(?:gz|xz|zst|bz2))$`)
	rxDirBackup   = regexp.MustCompile(`^backup/([^/]+\.(?:tgz|(?:tar|vma)(?:\.(?:gz|lzo|zst|bz2))?))$`)
	rxDirSnippets = regexp.MustCompile(`^snippets/[^/]+$`)
	rxDirOVA      = regexp.MustCompile(`^import/[ a-zA-Z0-9\-.+=_]+\.ova/[ a-zA-Z0-9\-.+=_]+\.(qcow2|raw|vmdk)$`)
	rxDirImport   = regexp.MustCompile(`^import/[ a-zA-Z0-9\-.+=_]+\.(ova|ovf|qcow2|raw|vmdk)$`)
	rxNameDir     = regexp.MustCompile(`^(vm-|base-|subvol-)(\d+)-[^/\s]+\.(raw|qcow2|vmdk|subvol)$`)
	rxNameDirAny  = regexp.MustCompile(`^(base-)?[^/\s]+\.(raw|qcow2|vmdk|subvol)$`)
	rxBackupOwner = regexp.MustCompile(`^vzdump-(?:openvz|lxc|qemu)-(\d+)-`)
	rxLVMName     = regexp.MustCompile(`(?i)^[a-z0-9][a-z0-9\-_.]*[a-z0-9]$`)
	rxLVMThinVol  = regexp.MustCompile(`^(vm|base)-(\d+)-\S+$`)
	rxLVMVol      = regexp.MustCompile(`^vm-(\d+)-\S+$`)
	rxZFSVol      = regexp.MustCompile(`^(?:(?:base|basevol)-\d+-\S+/)?(base|basevol|vm|subvol)-(\d+)-\S+$`)
	rxRBDVol      = regexp.MustCompile(`^(?:base-\d+-\S+/)?(base)?(?:vm)?-(\d+)-\S+$`)
)

// parseVolname is PVE::Storage::parse_volname: the storage must exist and its plugin must
// recognise the name; msg is PVE's die message otherwise (s.mu held).
func (s *Server) parseVolname(volid string) (volInfo, string) {
	m := rxVolumeID.FindStringSubmatch(volid)
	if m == nil {
		return volInfo{}, "unable to parse volume ID '" + volid + "'"
	}
	st := s.storages[m[1]]
	if st == nil {
		return volInfo{}, "storage '" + m[1] + "' does not exist"
	}
	name := m[2]
	switch {
	case st.fileBased():
		return parseDirVolname(name)
	case st.Type == "lvmthin", st.Type == "lvm":
		return parseLVMVolname(st.Type, name)
	case st.Type == "zfspool":
		if v := rxZFSVol.FindStringSubmatch(name); v != nil {
			format := "raw"
			if v[1] == "subvol" || v[1] == "basevol" {
				format = "subvol"
			}
			return volInfo{vtype: "images", owner: atoi(v[2]), isBase: strings.HasPrefix(v[1], "base"), format: format}, ""
		}
		return volInfo{}, "unable to parse zfs volume name '" + name + "'"
	case st.Type == "rbd":
		if v := rxRBDVol.FindStringSubmatch(name); v != nil {
			return volInfo{vtype: "images", owner: atoi(v[2]), isBase: v[1] != "", format: "raw"}, ""
		}
		return volInfo{}, "unable to parse rbd volume name '" + name + "'"
	}
	// Emulator choice: other plugins (iSCSI, ZFS over iSCSI, PBS, ...) are not modelled.
	return volInfo{vtype: "images", owner: volumeOwner(volid), format: "raw"}, ""
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// parseDirVolname is pve-storage PVE/Storage/Plugin.pm parse_volname of directory storages.
func parseDirVolname(name string) (volInfo, string) {
	switch {
	case rxDirLinked.MatchString(name):
		v := rxDirLinked.FindStringSubmatch(name)
		return parseNameDir(v[3], v[4])
	case rxDirImage.MatchString(name):
		v := rxDirImage.FindStringSubmatch(name)
		return parseNameDir(v[1], v[2])
	case rxDirISO.MatchString(name):
		return volInfo{vtype: "iso", format: "raw"}, ""
	case rxDirVztmpl.MatchString(name):
		return volInfo{vtype: "vztmpl", format: "raw"}, ""
	case rxDirBackup.MatchString(name):
		fn := rxDirBackup.FindStringSubmatch(name)[1]
		owner := 0
		if o := rxBackupOwner.FindStringSubmatch(fn); o != nil {
			owner = atoi(o[1])
		}
		return volInfo{vtype: "backup", owner: owner, format: "raw"}, ""
	case rxDirSnippets.MatchString(name):
		return volInfo{vtype: "snippets", format: "raw"}, ""
	case rxDirOVA.MatchString(name):
		return volInfo{vtype: "import", format: "ova+" + rxDirOVA.FindStringSubmatch(name)[1]}, ""
	case rxDirImport.MatchString(name):
		return volInfo{vtype: "import", format: rxDirImport.FindStringSubmatch(name)[1]}, ""
	}
	return volInfo{}, "unable to parse directory volume name '" + name + "'"
}

// parseNameDir is pve-storage PVE/Storage/Plugin.pm parse_name_dir for an image of VM vmid.
func parseNameDir(vmid, file string) (volInfo, string) {
	if v := rxNameDir.FindStringSubmatch(file); v != nil {
		return volInfo{vtype: "images", owner: atoi(vmid), isBase: v[1] == "base-", format: v[3]}, ""
	}
	if strings.HasPrefix(file, "snap-") && strings.HasSuffix(file, ".qcow2") {
		return volInfo{}, "'" + file + "' is a snapshot filename, not a volume!"
	}
	if v := rxNameDirAny.FindStringSubmatch(file); v != nil {
		return volInfo{vtype: "images", owner: atoi(vmid), isBase: v[1] != "", format: v[2]}, ""
	}
	return volInfo{}, "unable to parse volume filename '" + file + "'"
}

// parseLVMVolname is parse_volname of pve-storage PVE/Storage/LvmThinPlugin.pm and
// LVMPlugin.pm, after Plugin.pm parse_lvm_name.
func parseLVMVolname(typ, name string) (volInfo, string) {
	if !rxLVMName.MatchString(name) {
		return volInfo{}, "lvm name '" + name + "' contains illegal characters"
	}
	if typ == "lvmthin" {
		if v := rxLVMThinVol.FindStringSubmatch(name); v != nil {
			return volInfo{vtype: "images", owner: atoi(v[2]), isBase: v[1] == "base", format: "raw"}, ""
		}
	} else if v := rxLVMVol.FindStringSubmatch(name); v != nil {
		format := "raw"
		if strings.HasSuffix(name, ".qcow2") {
			format = "qcow2"
		}
		return volInfo{vtype: "images", owner: atoi(v[1]), format: format}, ""
	}
	return volInfo{}, "unable to parse lvm volume name '" + name + "'"
}

// canRename is PVE::Storage::volume_has_feature($cfg, 'rename', $volid): the "current" (not
// base) volumes of directory-like storages and btrfs in qcow2, raw or vmdk (Plugin.pm,
// BTRFSPlugin.pm), of LVM in raw or qcow2 (LVMPlugin.pm), and of LVM-thin, ZFS pools and RBD
// in any format (LvmThinPlugin.pm, ZFSPoolPlugin.pm, RBDPlugin.pm); ZFS over iSCSI, iSCSI,
// PBS and ESXi storages cannot rename (s.mu held).
func (s *Server) canRename(volid string) bool {
	info, msg := s.parseVolname(volid)
	if msg != "" || info.isBase {
		return false
	}
	st := s.storages[strings.SplitN(volid, ":", 2)[0]]
	switch {
	case st.fileBased():
		return info.format == "qcow2" || info.format == "raw" || info.format == "vmdk"
	case st.Type == "lvm":
		return info.format == "qcow2" || info.format == "raw"
	case st.Type == "lvmthin", st.Type == "zfspool", st.Type == "rbd":
		return true
	}
	return false
}
