package lhdata

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/longhorn/backupstore"
	_ "github.com/longhorn/backupstore/s3" // registers the s3:// driver (s3/s3.go init)
	"github.com/longhorn/backupstore/systembackup"
	"github.com/longhorn/backupstore/types"
	"github.com/longhorn/backupstore/util"

	"github.com/talforge/talforge/pkg/backuptarget"
)

// Longhorn's defaults for what the engine passes to the library: the
// backup-concurrent-limit and restore-concurrent-limit settings (types/setting.go, both 2)
// and the backup-compression-method setting (lz4).
const (
	concurrentLimit   = 2
	compressionMethod = "lz4"
	dataEngine        = "v1"
)

// unlockTimeout bounds the wait for the library to remove its restore lock.
const unlockTimeout = 30 * time.Second

// Backup backs snapshot of volume up to targetURL as backupName, with labels in the backup
// config (where Longhorn keeps e.g. KubernetesStatus and RecurringJob), and returns the
// backup's URL (backupstore.EncodeBackupURL: <target>?backup=<name>&volume=<volume>). It
// returns when the backup is complete or has failed. creds are the credential Secret's data.
func (s *Store) Backup(ctx context.Context, creds backuptarget.Credentials, targetURL, volume, snapshot, backupName string, labels map[string]string) (string, error) {
	for kind, name := range map[string]string{"volume": volume, "snapshot": snapshot, "backup": backupName} {
		if err := checkName(kind, name); err != nil {
			return "", err
		}
	}
	fail := func(err error) (string, error) {
		return "", fmt.Errorf("back up snapshot %s of volume %s to %s: %w", snapshot, volume, targetURL, err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	st, err := os.Stat(s.snapshotPath(volume, snapshot))
	if err != nil {
		return fail(fmt.Errorf("snapshot %s of volume %s: %w", snapshot, volume, ErrNotFound))
	}
	ops := &backupOps{ctx: ctx, store: s, volume: volume, done: make(chan backupResult, 1), closed: make(chan struct{})}
	cfg := &backupstore.DeltaBackupConfig{
		BackupName: backupName,
		Volume: &backupstore.Volume{
			Name: volume, Size: st.Size(), Labels: labels, CreatedTime: s.created(volume),
			CompressionMethod: compressionMethod, DataEngine: dataEngine,
		},
		Snapshot:        &backupstore.Snapshot{Name: snapshot, CreatedTime: st.ModTime().UTC().Format(time.RFC3339)},
		DestURL:         targetURL,
		DeltaOps:        ops,
		Labels:          labels,
		ConcurrentLimit: concurrentLimit,
	}
	var url string
	err = backuptarget.WithEnv(creds, func() error {
		if _, err := backupstore.CreateDeltaBlockBackup(backupName, cfg); err != nil {
			return err
		}
		// The library goes on in a goroutine: it reports the result, unlocks the volume in the
		// store and then closes the snapshot. Only then is it done with the environment.
		res := <-ops.done
		<-ops.closed
		if res.err != "" {
			return errors.New(res.err)
		}
		url = res.url
		return nil
	})
	if err != nil {
		return fail(err)
	}
	return url, nil
}

type backupResult struct {
	url, err string
}

// backupOps is the engine's side of a backup (backupstore DeltaBlockBackupOperations) over
// the snapshot files.
type backupOps struct {
	ctx    context.Context
	store  *Store
	volume string

	mu        sync.Mutex
	f         *os.File
	once      sync.Once
	done      chan backupResult
	closeOnce sync.Once
	closed    chan struct{}
}

func (o *backupOps) HasSnapshot(id, volumeID string) bool {
	return o.store.HasSnapshot(volumeID, id)
}

// CompareSnapshot lists the blocks to upload: for a full backup (no compareID) every block
// holding a non-zero byte, for an incremental one every block whose bytes differ from the
// compare snapshot's, zeros included (the merged block map would otherwise keep the old
// block at that offset).
func (o *backupOps) CompareSnapshot(id, compareID, volumeID string, blockSize int64) (*types.Mappings, error) {
	cur, err := os.Open(o.store.snapshotPath(volumeID, id))
	if err != nil {
		return nil, err
	}
	defer cur.Close() // read-only
	st, err := cur.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size%blockSize != 0 {
		return nil, fmt.Errorf("snapshot %s of volume %s: size %d is not a multiple of the block size %d", id, volumeID, size, blockSize)
	}
	var prev *os.File
	var prevSize int64
	if compareID != "" {
		if prev, err = os.Open(o.store.snapshotPath(volumeID, compareID)); err != nil {
			return nil, err
		}
		defer prev.Close() // read-only
		pst, err := prev.Stat()
		if err != nil {
			return nil, err
		}
		prevSize = pst.Size()
	}
	out := &types.Mappings{BlockSize: blockSize}
	a, b := make([]byte, blockSize), make([]byte, blockSize)
	zero := make([]byte, blockSize)
	for off := int64(0); off < size; off += blockSize {
		if err := o.ctx.Err(); err != nil {
			return nil, err
		}
		curData, err := hasData(cur, off, off+blockSize)
		if err != nil {
			return nil, err
		}
		prevData := false
		if prev != nil && off < prevSize {
			if prevData, err = hasData(prev, off, min(off+blockSize, prevSize)); err != nil {
				return nil, err
			}
		}
		if !curData && !prevData {
			continue // both read as zeros
		}
		if err := readBlock(cur, a, off); err != nil {
			return nil, err
		}
		other := zero
		if prevData {
			clear(b)
			if err := readBlock(prev, b, off); err != nil {
				return nil, err
			}
			other = b
		}
		if bytes.Equal(a, other) {
			continue
		}
		if n := len(out.Mappings); n > 0 && out.Mappings[n-1].Offset+out.Mappings[n-1].Size == off {
			out.Mappings[n-1].Size += blockSize
		} else {
			out.Mappings = append(out.Mappings, types.Mapping{Offset: off, Size: blockSize})
		}
	}
	return out, nil
}

// readBlock fills p from off; bytes past the end of the file read as zeros.
func readBlock(f *os.File, p []byte, off int64) error {
	n, err := f.ReadAt(p, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	clear(p[n:])
	return nil
}

func (o *backupOps) OpenSnapshot(id, volumeID string) error {
	f, err := os.Open(o.store.snapshotPath(volumeID, id))
	if err != nil {
		return err
	}
	o.mu.Lock()
	o.f = f
	o.mu.Unlock()
	return nil
}

func (o *backupOps) ReadSnapshot(id, volumeID string, start int64, data []byte) error {
	if err := o.ctx.Err(); err != nil {
		return err // stops the upload when the caller gives up
	}
	o.mu.Lock()
	f := o.f
	o.mu.Unlock()
	if f == nil {
		return fmt.Errorf("snapshot %s of volume %s is not open", id, volumeID)
	}
	return readBlock(f, data, start)
}

func (o *backupOps) CloseSnapshot(id, volumeID string) error {
	o.mu.Lock()
	f := o.f
	o.f = nil
	o.mu.Unlock()
	defer o.closeOnce.Do(func() { close(o.closed) })
	if f == nil {
		return nil
	}
	return f.Close()
}

// UpdateBackupStatus receives the library's progress. It ends with either an error message
// or, on success, the backup URL at 100 % (deltablock.go: both with state in_progress).
func (o *backupOps) UpdateBackupStatus(id, volumeID string, backupState string, backupProgress int, backupURL string, errMsg string) error {
	switch {
	case errMsg != "":
		o.once.Do(func() { o.done <- backupResult{err: errMsg} })
	case backupURL != "":
		o.once.Do(func() { o.done <- backupResult{url: backupURL} })
	}
	return nil
}

// Restore replaces the volume's data with the backup at backupURL (the volume is created
// when it does not exist, with the backed-up volume's size). It returns when the restore is
// complete or has failed; a failed restore leaves partial data.
func (s *Store) Restore(ctx context.Context, creds backuptarget.Credentials, backupURL, volume string) error {
	if err := checkName("volume", volume); err != nil {
		return err
	}
	fail := func(err error) error {
		return fmt.Errorf("restore %s into volume %s: %w", backupURL, volume, err)
	}
	_, srcVolume, _, err := backupstore.DecodeBackupURL(backupURL)
	if err != nil {
		return fail(err)
	}
	defer s.lock(volume)()
	// A fresh, empty head: the library writes only the blocks the backup holds, everything
	// else must read as zeros (Longhorn restores into new replicas).
	if err := os.MkdirAll(filepath.Join(s.volumeDir(volume), snapDir), 0o700); err != nil {
		return fail(err)
	}
	if err := s.createHead(volume, 0); err != nil {
		return fail(err)
	}
	path := s.Path(volume)
	ops := &restoreOps{path: path, done: make(chan error, 1), stop: make(chan struct{})}
	err = backuptarget.WithEnv(creds, func() error {
		driver, err := backupstore.GetBackupStoreDriver(backupURL)
		if err != nil {
			return err
		}
		before := lockNames(driver, srcVolume)
		if err := backupstore.RestoreDeltaBlockBackup(ctx, &backupstore.DeltaRestoreConfig{
			BackupURL: backupURL, DeltaOps: ops, Filename: path, ConcurrentLimit: concurrentLimit,
		}); err != nil {
			return err
		}
		restoreErr := <-ops.done
		// The library removes its lock file after reporting: wait for it while the
		// environment is still set, or the removal would go nowhere and the stale lock would
		// block deletions of this volume's backups for 150 s (lock.go LOCK_DURATION).
		deadline := time.Now().Add(unlockTimeout)
		for time.Now().Before(deadline) {
			if len(slices.DeleteFunc(lockNames(driver, srcVolume), func(n string) bool { return slices.Contains(before, n) })) == 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		return restoreErr
	})
	if err != nil {
		return fail(err)
	}
	return nil
}

// lockNames lists the lock files of a volume in the store (lock.go getLockPath:
// <base>/volumes/<checksum[0:2]>/<checksum[2:4]>/<volume>/locks/).
func lockNames(driver backupstore.BackupStoreDriver, volume string) []string {
	sum := util.GetChecksum([]byte(volume))
	names, err := driver.List(filepath.Join(backupstore.GetBackupstoreBase(), "volumes", sum[0:2], sum[2:4], volume, "locks") + "/")
	if err != nil {
		return nil
	}
	return names
}

// restoreOps is the engine's side of a restore (backupstore DeltaRestoreOperations) into
// the volume's file.
type restoreOps struct {
	path     string
	once     sync.Once
	done     chan error
	stopOnce sync.Once
	stop     chan struct{}
}

func (o *restoreOps) OpenVolumeDev(volDevName string) (*os.File, string, error) {
	f, err := os.OpenFile(volDevName, os.O_RDWR, 0)
	if err != nil {
		return nil, "", err
	}
	return f, volDevName, nil
}

func (o *restoreOps) CloseVolumeDev(volDev *os.File) error {
	if volDev == nil {
		return nil
	}
	return volDev.Close()
}

// UpdateRestoreStatus is called after every block with the source volume's name, and once
// at the end with the device name (deltablock.go RestoreDeltaBlockBackup): only that last
// call ends the restore.
func (o *restoreOps) UpdateRestoreStatus(snapshot string, restoreProgress int, err error) {
	if snapshot != o.path {
		return
	}
	o.once.Do(func() { o.done <- err })
}

func (o *restoreOps) Stop() { o.stopOnce.Do(func() { close(o.stop) }) }

func (o *restoreOps) GetStopChan() chan struct{} { return o.stop }

// DeleteBackup removes a backup from the store (backupstore.DeleteDeltaBlockBackup: its
// config, and the blocks no other backup of the volume uses), as Longhorn's backup
// controller does when a Backup object is deleted.
func DeleteBackup(ctx context.Context, creds backuptarget.Credentials, backupURL string) error {
	if err := inStore(ctx, creds, func() error { return backupstore.DeleteDeltaBlockBackup(backupURL) }); err != nil {
		return fmt.Errorf("delete backup %s: %w", backupURL, err)
	}
	return nil
}

// InspectBackup reads a backup's config (backupstore.InspectBackup): labels, sizes, times,
// the volume's size. A backup still being written is an error.
func InspectBackup(ctx context.Context, creds backuptarget.Credentials, backupURL string) (*backupstore.BackupInfo, error) {
	info, err := query(ctx, creds, func() (*backupstore.BackupInfo, error) { return backupstore.InspectBackup(backupURL) })
	if err != nil {
		return nil, fmt.Errorf("inspect backup %s: %w", backupURL, err)
	}
	return info, nil
}

// StoredBackup names one backup found in a backup target.
type StoredBackup struct {
	Volume, Name string
	// URL is the backup's URL (backupstore.EncodeBackupURL).
	URL string
}

// ListBackups lists every backup in the target (backupstore.List over all volumes), sorted
// by volume and name. Backups still being written are listed too; InspectBackup tells them
// apart.
func ListBackups(ctx context.Context, creds backuptarget.Credentials, targetURL string) ([]StoredBackup, error) {
	vols, err := query(ctx, creds, func() (map[string]*backupstore.VolumeInfo, error) { return backupstore.List("", targetURL, false) })
	if err != nil {
		return nil, fmt.Errorf("list backups in %s: %w", targetURL, err)
	}
	var out []StoredBackup
	for vol, info := range vols {
		if msg := info.Messages[types.MessageTypeError]; msg != "" && len(info.Backups) == 0 {
			continue // a volume folder without volume.cfg: nothing restorable
		}
		for name := range info.Backups {
			out = append(out, StoredBackup{Volume: vol, Name: name, URL: backupstore.EncodeBackupURL(name, vol, targetURL)})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Volume != out[j].Volume {
			return out[i].Volume < out[j].Volume
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// CheckTarget reaches the target the way Longhorn's backup target controller decides
// availability: a cheap listing of the system backups (controller/backup_target_controller.go
// reconcile, ListSystemBackup). The error carries the driver's message, wrapped as Longhorn
// wraps it.
func CheckTarget(ctx context.Context, creds backuptarget.Credentials, targetURL string) error {
	err := inStore(ctx, creds, func() error {
		_, err := systembackup.List(targetURL)
		return err
	})
	if err != nil {
		return fmt.Errorf("failed to list system backups in %v: %w", targetURL, err)
	}
	return nil
}

// InspectVolume reads a volume's config in the store (backupstore.InspectVolume): its
// size, labels, last backup. volumeURL is <target>?volume=<name>.
func InspectVolume(ctx context.Context, creds backuptarget.Credentials, volumeURL string) (*backupstore.VolumeInfo, error) {
	info, err := query(ctx, creds, func() (*backupstore.VolumeInfo, error) { return backupstore.InspectVolume(volumeURL) })
	if err != nil {
		return nil, fmt.Errorf("inspect backup volume %s: %w", volumeURL, err)
	}
	return info, nil
}

// inStore runs f with creds in the environment, where backupstore's S3 driver reads them
// (see the package comment), unless ctx has ended: backupstore's calls take no context,
// so a cancelled test stops here or not at all.
func inStore(ctx context.Context, creds backuptarget.Credentials, f func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return backuptarget.WithEnv(creds, f)
}

// query is inStore for a call with a result.
func query[T any](ctx context.Context, creds backuptarget.Credentials, f func() (T, error)) (T, error) {
	var v T
	err := inStore(ctx, creds, func() error {
		var err error
		v, err = f()
		return err
	})
	return v, err
}
