// Parameter checks of drive options beyond the schema, before any task starts: qemu-server
// PVE/API2/Qemu.pm $check_drive_param (with PVE/QemuServer/Drive.pm parse_drive and
// PVE/QemuServer.pm cleanup_drive_path). They answer HTTP 400 "Parameter verification failed."
// with the per-parameter message, like PVE's raise_param_exc. The storage side of these
// checks is in drive_storage.go.

package pvesim

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

var (
	// rxNewDiskPVE is qemu-server's $NEW_DISK_RE (PVE/QemuServer/Drive.pm): [STORAGE:]SIZE_IN_GiB.
	rxNewDiskPVE = regexp.MustCompile(`^(([^/:\s]+):)?(\d+(\.\d+)?)$`)
	// rxKeepPath are the drive files cleanup_drive_path leaves alone: special CD-ROM values,
	// block devices, volume IDs and bare sizes.
	rxKeepPath = regexp.MustCompile(`^(?:cdrom|none|/dev/.+|[^:]+:.+|\d+)$`)
	// rxQemuFormat is qemu-server's $QEMU_FORMAT_RE (PVE/QemuServer/Drive.pm).
	rxQemuFormat = regexp.MustCompile(`^(?:raw|qcow|qcow2|qed|vmdk|cloop)$`)
)

// driveUnparsable reports the drives PVE/QemuServer/Drive.pm parse_drive refuses although the
// schema accepts them: a CD-ROM with snapshot or format, and a VirtIO CD-ROM.
func driveUnparsable(key string, d *propString) bool {
	if d.get("media") != "cdrom" {
		return false
	}
	snap, _ := parseBoolean(d.get("snapshot"))
	return snap == "1" || d.get("format") != "" || strings.HasPrefix(key, "virtio")
}

// sortedDriveKeys are the drive keys among keys, sorted as $check_drive_param walks them.
func sortedDriveKeys(keys []string) []string {
	var out []string
	for _, k := range keys {
		if isDriveKey(k) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// checkDriveParams is qemu-server PVE/API2/Qemu.pm $check_drive_param for the drive keys of
// a create or update; like PVE it writes the cleaned-up drive back into params (a path turned
// into its volume ID, media=cdrom added where PVE adds it).
func (s *Server) checkDriveParams(keys []string, params Params) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range sortedDriveKeys(keys) {
		d := parseDriveString(params.Get(k))
		if driveUnparsable(k, d) {
			return paramError(map[string]string{k: "unable to parse drive options"})
		}
		if aerr := checkImportFromSyntax(k, d); aerr != nil {
			return aerr
		}
		changed, aerr := s.cleanupDrivePath(k, d)
		if aerr != nil {
			return aerr
		}
		if aerr := s.checkISOMedia(k, d); aerr != nil {
			return aerr
		}
		if changed {
			params[k] = Value{S: printDrive(d)}
		}
	}
	return nil
}

// checkImportFromSyntax: import-from only creates a new volume, written STORAGE:0; an EFI disk
// needs its efitype and pre-enrolled-keys, a TPM state its version ($check_drive_param).
func checkImportFromSyntax(key string, d *propString) *apiError {
	if d.get("import-from") == "" {
		return nil
	}
	m := rxNewDiskPVE.FindStringSubmatch(d.get("file"))
	if size, _ := strconv.ParseFloat(safeIndex(m, 3), 64); m == nil || size != 0 {
		return paramError(map[string]string{key: "'import-from' requires special syntax - use <storage ID>:0,import-from=<source>"})
	}
	var required []string
	switch key {
	case "efidisk0":
		required = []string{"efitype", "pre-enrolled-keys"}
	case "tpmstate0":
		required = []string{"version"}
	}
	for _, r := range required {
		if _, ok := d.vals[r]; !ok {
			return paramError(map[string]string{key: fmt.Sprintf("need to specify '%s' when using 'import-from'", r)})
		}
	}
	return nil
}

func safeIndex(m []string, i int) string {
	if i < len(m) {
		return m[i]
	}
	return ""
}

// cleanupDrivePath is qemu-server PVE/QemuServer.pm cleanup_drive_path: a file system path
// becomes the volume ID of the storage that holds it (an ISO defaulting to media=cdrom), and
// must match the drive's media (verify_media_type); "cdrom" and "none" get media=cdrom. It
// reports whether it changed the drive (s.mu held).
func (s *Server) cleanupDrivePath(key string, d *propString) (bool, *apiError) {
	changed := false
	if file := d.get("file"); !rxKeepPath.MatchString(file) {
		vtype, volid := s.pathToVolumeID(file)
		if vtype == "" {
			return false, paramError(map[string]string{key: "unable to associate path '" + file + "' to any storage"})
		}
		if d.get("media") == "" && vtype == "iso" {
			d.set("media", "cdrom")
		}
		if media := d.get("media"); media != "" {
			want := "images"
			if media == "cdrom" {
				want = "iso"
			}
			if vtype != want {
				return false, paramError(map[string]string{key: fmt.Sprintf("unexpected media type (%s != %s)", vtype, want)})
			}
		}
		d.set("file", volid)
		changed = true
	}
	if f := d.get("file"); d.get("media") == "" && (f == "cdrom" || f == "none") {
		d.set("media", "cdrom")
		changed = true
	}
	return changed, nil
}

// checkISOMedia: an ISO volume is attached only as a CD-ROM ($check_drive_param: "explicit
// 'media=cdrom' is required for iso images"). A volume its storage cannot parse fails as
// PVE::Storage::parse_volname dies (s.mu held).
func (s *Server) checkISOMedia(key string, d *propString) *apiError {
	file := d.get("file")
	m := rxVolumeID.FindStringSubmatch(file)
	if m == nil || rxNewDiskPVE.MatchString(file) || m[2] == "cloudinit" {
		return nil
	}
	info, msg := s.parseVolname(file)
	if msg != "" {
		return err500("%s\n", msg)
	}
	if info.vtype == "iso" && d.get("media") != "cdrom" {
		return paramError(map[string]string{key: "explicit 'media=cdrom' is required for iso images"})
	}
	return nil
}

// contentDirs are the subdirectories of a directory storage per content type
// (pve-storage PVE/Storage/Plugin.pm $vtype_subdirs).
var contentDirs = map[string]string{"images": "images", "iso": "template/iso", "vztmpl": "template/cache",
	"backup": "dump", "snippets": "snippets", "import": "import"}

// pathToVolumeID is pve-storage PVE/Storage.pm path_to_volume_id for absolute paths: the
// content type and volume ID of a file in a directory storage's content directory (an image
// only when that volume exists), or "" (s.mu held).
func (s *Server) pathToVolumeID(path string) (string, string) {
	for _, st := range s.sortedStorages() {
		if !st.fileBased() || st.Path == "" {
			continue
		}
		for vtype, sub := range contentDirs {
			rel, ok := strings.CutPrefix(path, st.Path+"/"+sub+"/")
			if !ok || strings.Contains(rel, "/") && vtype != "images" {
				continue
			}
			volid := st.ID + ":" + vtype + "/" + rel
			if vtype == "images" {
				volid = st.ID + ":" + rel
				if s.volumes[volid] == nil {
					continue
				}
			}
			if info, msg := parseDirVolname(strings.TrimPrefix(volid, st.ID+":")); msg == "" && info.vtype == vtype {
				return vtype, volid
			}
		}
	}
	return "", ""
}
