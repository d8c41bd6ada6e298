package backuptarget

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/longhorn/backupstore"
	"github.com/longhorn/backupstore/util"
)

// The object layout of a backup target. backupstore keeps these helpers unexported; each is
// one line of its code, repeated here with its place (module
// github.com/longhorn/backupstore@v0.0.0-20260414054550-8570535ce7ad).

// volumeConfigPath is backupstore's getVolumeFilePath with getVolumePath inlined
// (config.go:166-177): backupstore/volumes/<sha512(name)[0:2]>/<[2:4]>/<name>/volume.cfg.
func volumeConfigPath(volume string) string {
	return filepath.Join(volumeDir(volume), backupstore.VOLUME_CONFIG_FILE)
}

// backupConfigPath is backupstore's getBackupConfigPath (config.go:318-322, with
// getBackupPath config.go:314 and getBackupConfigName config.go:37):
// <volume dir>/backups/backup_<name>.cfg.
func backupConfigPath(volume, backup string) string {
	return filepath.Join(volumeDir(volume), backupstore.BACKUP_DIRECTORY, backupstore.BACKUP_CONFIG_PREFIX+backup+backupstore.CFG_SUFFIX)
}

// blockPath is backupstore's getBlockFilePath (util.go:26-34, with getBlockPath util.go:22):
// <volume dir>/blocks/<checksum[0:2]>/<checksum[2:4]>/<checksum>.blk. Unlike the original it
// refuses a checksum too short to slice instead of panicking: the checksum comes from a
// backup config that may be damaged.
func blockPath(volume, checksum string) (string, error) {
	if len(checksum) < backupstore.BLOCK_SEPARATE_LAYER2 || strings.Trim(checksum, "0123456789abcdef") != "" {
		return "", fmt.Errorf("invalid block checksum %q", checksum)
	}
	return filepath.Join(volumeDir(volume), backupstore.BLOCKS_DIRECTORY,
		checksum[0:backupstore.BLOCK_SEPARATE_LAYER1], checksum[backupstore.BLOCK_SEPARATE_LAYER1:backupstore.BLOCK_SEPARATE_LAYER2],
		checksum+backupstore.BLK_SUFFIX), nil
}

// volumeDir is backupstore's getVolumePath (config.go:166-171).
func volumeDir(volume string) string {
	sum := util.GetChecksum([]byte(volume))
	return filepath.Join(backupstore.GetBackupstoreBase(), backupstore.VOLUME_DIRECTORY,
		sum[0:backupstore.VOLUME_SEPARATE_LAYER1], sum[backupstore.VOLUME_SEPARATE_LAYER1:backupstore.VOLUME_SEPARATE_LAYER2], volume)
}

// loadVolumeConfig reads and parses volume.cfg as backupstore's loadVolume does
// (config.go:283-296), defaults included.
func loadVolumeConfig(driver backupstore.BackupStoreDriver, volume string) (*backupstore.Volume, error) {
	v := &backupstore.Volume{}
	if err := backupstore.LoadConfigInBackupStore(driver, volumeConfigPath(volume), v); err != nil {
		return nil, err
	}
	if v.CompressionMethod == "" {
		v.CompressionMethod = backupstore.LEGACY_COMPRESSION_METHOD
	}
	if v.DataEngine == "" {
		v.DataEngine = string(backupstore.DataEngineV1)
	}
	return v, nil
}

// loadBackupConfig reads and parses one backup config as backupstore's loadBackup does
// (config.go:328-339), the compression default included.
func loadBackupConfig(driver backupstore.BackupStoreDriver, volume, backup string) (*backupstore.Backup, error) {
	b := &backupstore.Backup{}
	if err := backupstore.LoadConfigInBackupStore(driver, backupConfigPath(volume, backup), b); err != nil {
		return nil, err
	}
	if b.CompressionMethod == "" {
		b.CompressionMethod = backupstore.LEGACY_COMPRESSION_METHOD
	}
	return b, nil
}

// Target is a backup target URL taken apart as Longhorn's S3 driver does.
type Target struct {
	Bucket string `json:"bucket"`
	// Region is empty when the URL names none (s3://bucket/path): the driver then takes
	// AWS_REGION from the environment.
	Region string `json:"region,omitempty"`
	// Path is the prefix inside the bucket as the driver keeps it: the URL path without its
	// leading slashes ("" for the bucket root, "longhorn/" for s3://bucket@region/longhorn/).
	Path string `json:"path,omitempty"`
}

// ParseURL parses a backup target as Longhorn's S3 driver does (backupstore s3/s3.go
// initFunc and s3/s3_service.go newService): s3://bucket@region/path/ or s3://bucket/path,
// with a path of at least "/".
func ParseURL(target string) (Target, error) {
	u, err := url.Parse(target)
	if err != nil {
		return Target{}, fmt.Errorf("backup target %q: %w", target, err)
	}
	if u.Scheme != "s3" {
		return Target{}, fmt.Errorf("backup target %q: scheme %q is not s3 (talforge reads S3 targets only)", target, u.Scheme)
	}
	var t Target
	if u.User != nil {
		t.Bucket, t.Region = u.User.Username(), u.Host
	} else {
		t.Bucket = u.Host
	}
	if t.Bucket == "" || u.Path == "" {
		return Target{}, fmt.Errorf("backup target %q: invalid URL, Longhorn needs s3://bucket@region/path/ or s3://bucket/path (a bare bucket needs a trailing /)", target)
	}
	t.Path = strings.TrimLeft(u.Path, "/")
	return t, nil
}
