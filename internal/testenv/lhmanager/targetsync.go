// Backup target sync with a data path (controller/backup_target_controller.go): the store is
// listed and what the cluster does not know becomes Backup and BackupVolume objects.

package lhmanager

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/longhorn/backupstore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/talforge/talforge/internal/testenv/lhdata"
	"github.com/talforge/talforge/pkg/backuptarget"
)

// target is BackupTarget "default" as the data path sees it.
type target struct {
	url       string
	secret    string
	creds     backuptarget.Credentials
	available bool
	problem   string // why it cannot be reached before trying (URL form, Secret)
	key       string
	requested string
	poll      time.Duration
}

// readTarget reads BackupTarget "default" and its credential Secret from the apiserver; the
// Secret's data, key for key, are the credentials (what longhorn-manager passes to the
// process talking to the store). nil when there is no BackupTarget.
func (l *loop) readTarget(ctx context.Context) (*target, error) {
	bt, err := l.res(BackupTargetGVR).Get(ctx, DefaultBackupTarget, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	t := &target{}
	t.url, _, _ = unstructured.NestedString(bt.Object, "spec", "backupTargetURL")
	t.secret, _, _ = unstructured.NestedString(bt.Object, "spec", "credentialSecret")
	t.requested, _, _ = unstructured.NestedString(bt.Object, "spec", "syncRequestedAt")
	t.available, _, _ = unstructured.NestedBool(bt.Object, "status", "available")
	poll, _, _ := unstructured.NestedString(bt.Object, "spec", "pollInterval")
	t.poll, _ = time.ParseDuration(poll)
	var secret *corev1.Secret
	rv := ""
	if t.secret != "" {
		secret, err = l.m.cs.CoreV1().Secrets(l.m.ns).Get(ctx, t.secret, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
		if err == nil {
			rv = secret.ResourceVersion
			t.creds = backuptarget.Credentials{}
			for k, v := range secret.Data {
				t.creds[k] = string(v)
			}
		}
	}
	t.problem = l.m.backupStoreProblem(t.url, t.secret, func(string) (*corev1.Secret, error) {
		if secret == nil {
			return nil, apierrors.NewNotFound(corev1.Resource("secrets"), t.secret)
		}
		return secret, nil
	})
	t.key = t.url + "\x00" + t.secret + "\x00" + rv
	return t, nil
}

// syncTarget is Longhorn's backup target controller: it checks the store (a cheap listing,
// like upstream's system-backup listing) whenever the URL or the credentials change, when
// spec.syncRequestedAt changes and every pollInterval, reports availability with the
// driver's message, pulls backups it does not know into Backup and BackupVolume objects,
// then sets status.lastSyncedAt (controller/backup_target_controller.go reconcile).
func (l *loop) syncTarget(ctx context.Context) error {
	t, err := l.readTarget(ctx)
	if err != nil || t == nil {
		return err
	}
	due := t.key != l.targetKey || t.requested != l.requestedAt || (t.poll > 0 && time.Since(l.checkedAt) >= t.poll)
	if t.problem != "" {
		l.targetKey, l.requestedAt, l.held = t.key, t.requested, nil
		return l.setTargetStatus(ctx, false, t.problem, false)
	}
	if !due {
		return l.reportHeld(ctx, t)
	}
	l.targetKey, l.requestedAt, l.checkedAt = t.key, t.requested, time.Now()
	err = lhdata.CheckTarget(ctx, t.creds, t.url)
	if ctx.Err() != nil {
		return nil
	}
	// A manager whose pods are not ready yet (Options.RolloutTime) checks the store as it
	// starts but reports the outcome only once it is.
	l.held = &heldCheck{err: err}
	return l.reportHeld(ctx, t)
}

// heldCheck is the outcome of a store check not reported yet.
type heldCheck struct{ err error }

// reportHeld reports the held check once the manager has rolled out: availability with the
// driver's message, then (available) the pull of the store's backups.
func (l *loop) reportHeld(ctx context.Context, t *target) error {
	if l.held == nil || !l.m.rolledOut() {
		return nil
	}
	checkErr := l.held.err
	l.held = nil
	if checkErr != nil {
		l.m.logf("backup target %s unavailable: %v", t.url, checkErr)
		return l.setTargetStatus(ctx, false, checkErr.Error(), false)
	}
	if err := l.setTargetStatus(ctx, true, "", false); err != nil {
		return err
	}
	if err := l.pull(ctx, t); err != nil {
		l.targetKey = "" // try again next round
		return err
	}
	return l.setTargetStatus(ctx, true, "", true)
}

func (l *loop) setTargetStatus(ctx context.Context, available bool, msg string, synced bool) error {
	return l.updateStatus(ctx, BackupTargetGVR, DefaultBackupTarget, func(st map[string]any) bool {
		oldAvail, hasAvail := st["available"].(bool)
		oldMsg := ""
		if conds, _ := st["conditions"].([]any); len(conds) > 0 {
			if c, ok := conds[0].(map[string]any); ok {
				oldMsg, _ = c["message"].(string)
			}
		}
		if hasAvail && oldAvail == available && oldMsg == msg && !synced {
			return false
		}
		st["available"], st["ownerID"] = available, "node-1"
		if !hasAvail || oldAvail != available || oldMsg != msg {
			if available {
				st["conditions"] = []any{map[string]any{"type": "Unavailable", "status": "False", "reason": "", "message": "", "lastTransitionTime": now()}}
			} else {
				st["conditions"] = []any{map[string]any{"type": "Unavailable", "status": "True", "reason": "Unavailable", "message": msg, "lastTransitionTime": now()}}
			}
		}
		if synced {
			st["lastSyncedAt"] = now()
		}
		return true
	})
}

// pull creates Backup objects for the store's backups the cluster does not know, with their
// status read from the backup config, and the BackupVolume of every volume in the store
// (backup_volume_controller.go and backup_controller.go, for backups that already exist
// remotely).
func (l *loop) pull(ctx context.Context, t *target) error {
	stored, err := lhdata.ListBackups(ctx, t.creds, t.url)
	if err != nil {
		return err
	}
	existing, err := l.res(BackupGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, b := range existing.Items {
		known[b.GetName()] = true
	}
	volumes := map[string]bool{}
	for _, b := range stored {
		volumes[b.Volume] = true
		if known[b.Name] {
			continue
		}
		info, err := lhdata.InspectBackup(ctx, t.creds, b.URL)
		if err != nil {
			continue // still being written, or unreadable: Longhorn skips it too
		}
		created, err := l.res(BackupGVR).Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": group + "/" + version, "kind": "Backup",
			"metadata": map[string]any{"name": b.Name, "namespace": l.m.ns, "finalizers": []any{finalizer},
				"labels": map[string]any{LabelBackupTarget: DefaultBackupTarget, LabelBackupVolume: b.Volume}},
			"spec": map[string]any{"snapshotName": "", "labels": map[string]any{}},
		}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("backup %s: %w", b.Name, err)
		}
		created.Object["status"] = completedStatus(info)
		if _, err := l.res(BackupGVR).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("backup %s status: %w", b.Name, err)
		}
		l.m.logf("pulled backup %s of volume %s from %s", b.Name, b.Volume, t.url)
	}
	for _, vol := range sortedNames(volumes) {
		if err := l.syncBackupVolume(ctx, t, vol); err != nil {
			return err
		}
	}
	return nil
}

// completedStatus is a Backup's status from its config in the store
// (controller/backup_controller.go, "the source of truth becomes the remote backup target").
func completedStatus(info *backupstore.BackupInfo) map[string]any {
	labels := map[string]any{}
	for k, v := range info.Labels {
		labels[k] = v
	}
	return map[string]any{
		"state": BackupStateCompleted, "progress": int64(100), "url": info.URL, "volumeName": info.VolumeName,
		"volumeSize": strconv.FormatInt(info.VolumeSize, 10), "volumeCreated": info.VolumeCreated,
		"snapshotName": info.SnapshotName, "snapshotCreatedAt": info.SnapshotCreated, "backupCreatedAt": info.Created,
		"size": strconv.FormatInt(info.Size, 10), "labels": labels, "compressionMethod": info.CompressionMethod,
		"newlyUploadDataSize": strconv.FormatInt(info.NewlyUploadedDataSize, 10), "reUploadedDataSize": strconv.FormatInt(info.ReUploadedDataSize, 10),
		"backupTargetName": DefaultBackupTarget, "lastSyncedAt": now(), "ownerID": "node-1",
	}
}

// syncBackupVolume creates the volume's BackupVolume (named after the volume) and fills its
// status from the volume's config in the store and the newest Completed Backup object.
func (l *loop) syncBackupVolume(ctx context.Context, t *target, volume string) error {
	res := l.res(BackupVolumeGVR)
	bv, err := res.Get(ctx, volume, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		bv, err = res.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": group + "/" + version, "kind": "BackupVolume",
			"metadata": map[string]any{"name": volume, "namespace": l.m.ns,
				"labels": map[string]any{LabelBackupTarget: DefaultBackupTarget, LabelBackupVolume: volume}},
			"spec": map[string]any{"backupTargetName": DefaultBackupTarget, "volumeName": volume},
		}}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("backup volume %s: %w", volume, err)
	}
	status := map[string]any{"ownerID": "node-1", "lastSyncedAt": now(), "lastBackupName": "", "lastBackupAt": ""}
	info, err := lhdata.InspectVolume(ctx, t.creds, backupstore.EncodeBackupURL("", volume, t.url))
	if err == nil {
		labels := map[string]any{}
		for k, v := range info.Labels {
			labels[k] = v
		}
		status["size"] = strconv.FormatInt(info.Size, 10)
		status["labels"] = labels
		status["createdAt"] = info.Created
		status["dataStored"] = strconv.FormatInt(info.DataStored, 10)
		status["storageClassName"] = info.StorageClassname
	}
	if last := l.newestBackup(ctx, volume); last != nil {
		status["lastBackupName"] = last.GetName()
		status["lastBackupAt"], _, _ = unstructured.NestedString(last.Object, "status", "backupCreatedAt")
	}
	bv.Object["status"] = status
	_, err = res.UpdateStatus(ctx, bv, metav1.UpdateOptions{})
	return err
}

// newestBackup is the volume's newest Completed Backup object not being deleted.
func (l *loop) newestBackup(ctx context.Context, volume string) *unstructured.Unstructured {
	list, err := l.res(BackupGVR).List(ctx, metav1.ListOptions{LabelSelector: LabelBackupVolume + "=" + volume})
	if err != nil {
		return nil
	}
	var best *unstructured.Unstructured
	bestAt := ""
	for i := range list.Items {
		b := &list.Items[i]
		state, _, _ := unstructured.NestedString(b.Object, "status", "state")
		at, _, _ := unstructured.NestedString(b.Object, "status", "backupCreatedAt")
		if state != BackupStateCompleted || b.GetDeletionTimestamp() != nil {
			continue
		}
		if best == nil || at > bestAt || (at == bestAt && b.GetName() > best.GetName()) {
			best, bestAt = b, at
		}
	}
	return best
}

// targetMessage is the Unavailable condition's message of BackupTarget "default".
func (l *loop) targetMessage(ctx context.Context) string {
	bt, err := l.res(BackupTargetGVR).Get(ctx, DefaultBackupTarget, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	conds, _, _ := unstructured.NestedSlice(bt.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Unavailable" && m["status"] == "True" {
			msg, _ := m["message"].(string)
			return msg
		}
	}
	return ""
}
