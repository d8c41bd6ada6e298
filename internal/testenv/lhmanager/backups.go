// Backups (controller/backup_controller.go): backing a volume's snapshot up to the store and
// deleting backups from it.

package lhmanager

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/talforge/talforge/internal/testenv/lhdata"
)

// Labels Longhorn puts on Backup and BackupVolume objects (types.LonghornLabelBackupVolume,
// types.LonghornLabelBackupTarget), and the backup labels it adds (types/types.go
// KubernetesStatusLabel, RecurringJobLabel).
const (
	LabelBackupVolume     = "backup-volume"
	LabelBackupTarget     = "backup-target"
	KubernetesStatusLabel = "KubernetesStatus"
	RecurringJobLabel     = "RecurringJob"

	// labelDeleteCROnly on a Backup keeps its data in the store when the object is deleted
	// (types.LonghornLabelDeleteCustomResourceOnly, controller/utils.go
	// checkIfRemoteDataCleanupIsNeeded).
	labelDeleteCROnly = "longhorn.io/delete-custom-resource-only"
	// finalizer is the one Longhorn's controllers put on their objects (the group name).
	finalizer = group
)

// Backup states (longhorn.BackupState).
const (
	BackupStateInProgress = "InProgress"
	BackupStateCompleted  = "Completed"
	BackupStateError      = "Error"
)

// syncBackups performs requested backups and deletes deleted ones from the store.
func (l *loop) syncBackups(ctx context.Context) error {
	list, err := l.res(BackupGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var errs []error
	for i := range list.Items {
		b := &list.Items[i]
		name := b.GetName()
		if b.GetDeletionTimestamp() != nil {
			if retryAt, failed := l.deleteFailed[name]; !failed || time.Since(retryAt) > 2*time.Second {
				l.goWork("backup/"+name, func() { l.deleteBackup(b) })
			}
			continue
		}
		if err := l.ensureFinalizer(ctx, BackupGVR, b); err != nil {
			errs = append(errs, fmt.Errorf("backup %s: %w", name, err))
			continue
		}
		state, _, _ := unstructured.NestedString(b.Object, "status", "state")
		synced, _, _ := unstructured.NestedString(b.Object, "status", "lastSyncedAt")
		snap, _, _ := unstructured.NestedString(b.Object, "spec", "snapshotName")
		// A Backup with a snapshot that was never synced is a request to back up; others
		// exist in the store already (backup_controller.go).
		if snap == "" || synced != "" || state == BackupStateCompleted || state == BackupStateError {
			continue
		}
		l.goWork("backup/"+name, func() { l.performBackup(b, snap) })
	}
	return errors.Join(errs...)
}

// performBackup backs the snapshot up with lhdata and records the outcome in the Backup's
// status, its BackupVolume and the volume's lastBackup.
func (l *loop) performBackup(b *unstructured.Unstructured, snap string) {
	ctx := l.ctx
	name := b.GetName()
	// Re-read: a list taken before an earlier run of this finished may have brought us here.
	b, err := l.res(BackupGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil || b.GetDeletionTimestamp() != nil {
		return
	}
	if state, _, _ := unstructured.NestedString(b.Object, "status", "state"); state == BackupStateCompleted || state == BackupStateError {
		return
	}
	vol := b.GetLabels()[LabelBackupVolume]
	if vol == "" {
		vol, _, _ = unstructured.NestedString(b.Object, "status", "volumeName")
	}
	fail := func(msg string) {
		if ctx.Err() != nil {
			return // the manager stops: the next one picks the backup up
		}
		l.m.logf("backup %s of volume %s failed: %s", name, vol, msg)
		if err := l.updateStatus(ctx, BackupGVR, name, func(st map[string]any) bool {
			st["state"], st["error"], st["volumeName"], st["snapshotName"], st["lastSyncedAt"] = BackupStateError, msg, vol, snap, now()
			return true
		}); err != nil && ctx.Err() == nil {
			l.m.logf("backup %s status: %v", name, err)
		}
	}
	v, err := l.res(VolumeGVR).Get(ctx, vol, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		fail(fmt.Errorf("cannot find the corresponding volume: %w", err).Error())
		return
	}
	if err != nil {
		return
	}
	t, err := l.readTarget(ctx)
	if err != nil {
		return
	}
	if t == nil || !t.available {
		msg := fmt.Sprintf("backup target %s is not available", DefaultBackupTarget)
		if why := l.targetMessage(ctx); why != "" {
			msg += ": " + why
		}
		fail(msg)
		return
	}
	if !l.data.HasSnapshot(vol, snap) {
		s, err := l.res(SnapshotGVR).Get(ctx, snap, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			fail(fmt.Sprintf("snapshot %s of volume %s not found", snap, vol))
		}
		if err == nil {
			if msg, _, _ := unstructured.NestedString(s.Object, "status", "error"); msg != "" {
				fail(fmt.Sprintf("snapshot %s of volume %s failed: %s", snap, vol, msg))
			}
		}
		return // Longhorn waits for the snapshot ("Waiting for the snapshot %v to be ready")
	}
	size, _, _ := unstructured.NestedString(v.Object, "spec", "size")
	labels, _, _ := unstructured.NestedStringMap(b.Object, "spec", "labels")
	snapCreated := ""
	if s, err := l.res(SnapshotGVR).Get(ctx, snap, metav1.GetOptions{}); err == nil {
		snapCreated, _, _ = unstructured.NestedString(s.Object, "status", "creationTime")
	}
	if err := l.updateStatus(ctx, BackupGVR, name, func(st map[string]any) bool {
		st["state"], st["progress"], st["volumeName"], st["volumeSize"], st["snapshotName"] = BackupStateInProgress, int64(0), vol, size, snap
		st["snapshotCreatedAt"], st["backupTargetName"], st["ownerID"] = snapCreated, DefaultBackupTarget, "node-1"
		return true
	}); err != nil {
		return
	}
	url, err := l.data.Backup(ctx, t.creds, t.url, vol, snap, name, labels)
	if err != nil {
		fail(err.Error())
		return
	}
	info, err := lhdata.InspectBackup(ctx, t.creds, url)
	if err != nil {
		fail(err.Error())
		return
	}
	l.m.logf("backup %s of volume %s completed: %s", name, vol, url)
	if err := l.updateStatus(ctx, BackupGVR, name, func(st map[string]any) bool {
		for k, v := range completedStatus(info) {
			st[k] = v
		}
		delete(st, "error")
		return true
	}); err != nil {
		return
	}
	if err := l.syncBackupVolume(ctx, t, vol); err != nil && ctx.Err() == nil {
		l.m.logf("backup volume %s: %v", vol, err)
	}
	if err := l.updateStatus(ctx, VolumeGVR, vol, func(st map[string]any) bool {
		st["lastBackup"], st["lastBackupAt"] = name, info.Created
		return true
	}); err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
		l.m.logf("volume %s status: %v", vol, err)
	}
}

// deleteBackup is the deletion branch of Longhorn's backup controller: the backup goes from
// the store (unless the target is unavailable or the object is labelled
// delete-custom-resource-only), then the finalizer, and the BackupVolume follows.
func (l *loop) deleteBackup(b *unstructured.Unstructured) {
	ctx := l.ctx
	name := b.GetName()
	b, err := l.res(BackupGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return // gone already (an earlier run finished)
	}
	vol := b.GetLabels()[LabelBackupVolume]
	url, _, _ := unstructured.NestedString(b.Object, "status", "url")
	t, err := l.readTarget(ctx)
	if err != nil {
		return
	}
	if url != "" && t != nil && t.available && b.GetLabels()[labelDeleteCROnly] == "" {
		if err := lhdata.DeleteBackup(ctx, t.creds, url); err != nil {
			if ctx.Err() != nil {
				return
			}
			l.mu.Lock()
			l.deleteFailed[name] = time.Now()
			l.mu.Unlock()
			msg := fmt.Sprintf("Failed to delete the backup %v in the backupstore, err %v", url, err)
			l.m.logf("%s", msg)
			_ = l.updateStatus(ctx, BackupGVR, name, func(st map[string]any) bool { // retried next round
				st["state"], st["error"] = BackupStateError, msg
				return true
			})
			return
		}
		l.m.logf("deleted backup %s of volume %s from %s", name, vol, t.url)
	}
	l.mu.Lock()
	delete(l.deleteFailed, name)
	l.mu.Unlock()
	if err := l.removeFinalizer(ctx, BackupGVR, name); err != nil {
		return
	}
	if vol != "" && t != nil && t.available {
		if err := l.syncBackupVolume(ctx, t, vol); err != nil && ctx.Err() == nil {
			l.m.logf("backup volume %s: %v", vol, err)
		}
	}
}
