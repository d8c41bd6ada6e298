package lhmanager

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/longhorn/backupstore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"

	"github.com/talforge/talforge/internal/testenv/lhdata"
	"github.com/talforge/talforge/pkg/backuptarget"
)

// SnapshotGVR is Longhorn's Snapshot resource (longhorn.io/v1beta2).
var SnapshotGVR = schema.GroupVersionResource{Group: group, Version: version, Resource: "snapshots"}

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

// loop is the state of RunBackups, touched only by its goroutine unless noted.
type loop struct {
	m    *Manager
	data *lhdata.Store
	ctx  context.Context

	// backup target controller
	targetKey    string // URL, secret and its resourceVersion last checked
	requestedAt  string // spec.syncRequestedAt last honoured
	checkedAt    time.Time
	deleteFailed map[string]time.Time // backup -> last failed remote deletion

	wg       sync.WaitGroup
	mu       sync.Mutex
	inflight map[string]bool // work running in a goroutine, by key
}

// RunBackups plays longhorn-manager's data path until ctx ends, over the volume data in
// Options.Data and the real backup store behind BackupTarget "default" (see the package
// documentation for what it does). It runs beside Run (start both) and needs Options.Data.
// Backups, restores and backup deletions run in goroutines, so the other controllers keep
// going meanwhile; RunBackups returns once they have stopped.
func (m *Manager) RunBackups(ctx context.Context) error {
	if m.data == nil {
		return errors.New("lhmanager: RunBackups needs Options.Data")
	}
	l := &loop{m: m, data: m.data, ctx: ctx, inflight: map[string]bool{}, deleteFailed: map[string]time.Time{}}
	defer l.wg.Wait()
	tick := time.NewTicker(m.resync / 3)
	defer tick.Stop()
	for {
		if err := l.sync(ctx); err != nil && ctx.Err() == nil {
			m.logf("backups: %v", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (l *loop) sync(ctx context.Context) error {
	var errs []error
	for _, step := range []struct {
		name string
		fn   func(context.Context) error
	}{
		{"backup target", l.syncTarget},
		{"provisioning", l.syncProvisioning},
		{"volumes", l.syncVolumes},
		{"kubernetes status", l.syncKubernetesStatus},
		{"snapshots", l.syncSnapshots},
		{"backups", l.syncBackups},
		{"verification jobs", l.syncVerifyJobs},
	} {
		err := step.fn(ctx)
		if err != nil && !apierrors.IsConflict(err) && !meta.IsNoMatchError(err) && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("%s: %w", step.name, err))
		}
	}
	return errors.Join(errs...)
}

func (l *loop) res(gvr schema.GroupVersionResource) dynamic.ResourceInterface {
	return l.m.dyn.Resource(gvr).Namespace(l.m.ns)
}

// goWork runs fn in a goroutine unless work under key is running.
func (l *loop) goWork(key string, fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inflight[key] {
		return
	}
	l.inflight[key] = true
	l.wg.Go(func() {
		defer func() {
			l.mu.Lock()
			delete(l.inflight, key)
			l.mu.Unlock()
		}()
		fn()
	})
}

func (l *loop) busy(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inflight[key]
}

// updateStatus re-reads the object and writes the status mutate leaves, retrying on
// conflicts; mutate returns false to write nothing.
func (l *loop) updateStatus(ctx context.Context, gvr schema.GroupVersionResource, name string, mutate func(status map[string]any) bool) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := l.res(gvr).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		status, _, _ := unstructured.NestedMap(u.Object, "status")
		if status == nil {
			status = map[string]any{}
		}
		if !mutate(status) {
			return nil
		}
		u.Object["status"] = status
		_, err = l.res(gvr).UpdateStatus(ctx, u, metav1.UpdateOptions{})
		return err
	})
}

// ensureFinalizer adds Longhorn's finalizer to an object not being deleted, so its deletion
// waits for the controller's clean-up as in Longhorn.
func (l *loop) ensureFinalizer(ctx context.Context, gvr schema.GroupVersionResource, u *unstructured.Unstructured) error {
	if u.GetDeletionTimestamp() != nil {
		return nil
	}
	for _, f := range u.GetFinalizers() {
		if f == finalizer {
			return nil
		}
	}
	patch := fmt.Sprintf(`{"metadata":{"finalizers":[%q],"resourceVersion":%q}}`, finalizer, u.GetResourceVersion())
	if len(u.GetFinalizers()) > 0 {
		patch = fmt.Sprintf(`[{"op":"test","path":"/metadata/resourceVersion","value":%q},{"op":"add","path":"/metadata/finalizers/-","value":%q}]`, u.GetResourceVersion(), finalizer)
		_, err := l.res(gvr).Patch(ctx, u.GetName(), types.JSONPatchType, []byte(patch), metav1.PatchOptions{})
		return err
	}
	_, err := l.res(gvr).Patch(ctx, u.GetName(), types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

// removeFinalizer lets the deletion of the object finish.
func (l *loop) removeFinalizer(ctx context.Context, gvr schema.GroupVersionResource, name string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := l.res(gvr).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		var keep []string
		for _, f := range u.GetFinalizers() {
			if f != finalizer {
				keep = append(keep, f)
			}
		}
		if len(keep) == len(u.GetFinalizers()) {
			return nil
		}
		u.SetFinalizers(keep)
		_, err = l.res(gvr).Update(ctx, u, metav1.UpdateOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
}

func now() string { return time.Now().UTC().Format(time.RFC3339) }

// ---------------------------------------------------------------- backup target

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
		l.targetKey, l.requestedAt = t.key, t.requested
		return l.setTargetStatus(ctx, false, t.problem, false)
	}
	if !due {
		return nil
	}
	l.targetKey, l.requestedAt, l.checkedAt = t.key, t.requested, time.Now()
	if err := lhdata.CheckTarget(ctx, t.creds, t.url); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		l.m.logf("backup target %s unavailable: %v", t.url, err)
		return l.setTargetStatus(ctx, false, err.Error(), false)
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

// ---------------------------------------------------------------- Backups

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

// ---------------------------------------------------------------- Snapshots

// syncSnapshots takes the snapshots Snapshot objects ask for (spec.createSnapshot) and
// deletes the data of deleted ones (controller/snapshot_controller.go).
func (l *loop) syncSnapshots(ctx context.Context) error {
	list, err := l.res(SnapshotGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var errs []error
	for i := range list.Items {
		s := &list.Items[i]
		name := s.GetName()
		vol, _, _ := unstructured.NestedString(s.Object, "spec", "volume")
		if s.GetDeletionTimestamp() != nil {
			if err := l.data.DeleteSnapshot(vol, name); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := l.removeFinalizer(ctx, SnapshotGVR, name); err != nil {
				errs = append(errs, fmt.Errorf("snapshot %s: %w", name, err))
			}
			continue
		}
		if err := l.ensureFinalizer(ctx, SnapshotGVR, s); err != nil {
			errs = append(errs, fmt.Errorf("snapshot %s: %w", name, err))
			continue
		}
		if ready, _, _ := unstructured.NestedBool(s.Object, "status", "readyToUse"); ready {
			continue
		}
		if msg, _, _ := unstructured.NestedString(s.Object, "status", "error"); msg != "" {
			continue
		}
		create, _, _ := unstructured.NestedBool(s.Object, "spec", "createSnapshot")
		status := map[string]any{"ownerID": "node-1"}
		switch {
		case !l.data.Exists(vol):
			if _, err := l.res(VolumeGVR).Get(ctx, vol, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				status["error"] = fmt.Sprintf("volume %s not found", vol)
				break
			}
			continue // its data is being created or restored
		case l.data.HasSnapshot(vol, name):
		case create:
			if err := l.data.Snapshot(vol, name); err != nil {
				status["error"] = err.Error()
			}
		default:
			continue // an engine snapshot not taken yet
		}
		if _, failed := status["error"]; !failed {
			size, _ := l.data.Size(vol)
			status["readyToUse"], status["userCreated"], status["creationTime"] = true, create, now()
			status["restoreSize"], status["size"] = size, l.data.Allocated(vol, name)
		}
		if err := l.updateStatus(ctx, SnapshotGVR, name, func(st map[string]any) bool {
			for k, v := range status {
				st[k] = v
			}
			return true
		}); err != nil {
			errs = append(errs, fmt.Errorf("snapshot %s status: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
