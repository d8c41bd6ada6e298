package lhmanager

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// SnapshotGVR is Longhorn's Snapshot resource (longhorn.io/v1beta2).
var SnapshotGVR = schema.GroupVersionResource{Group: group, Version: version, Resource: "snapshots"}

// Labels Longhorn puts on Backup and BackupVolume objects (types.LonghornLabelBackupVolume,
// types.LonghornLabelBackupTarget).
const (
	LabelBackupVolume = "backup-volume"
	LabelBackupTarget = "backup-target"
)

// Backup states (longhorn.BackupState).
const (
	BackupStateInProgress = "InProgress"
	BackupStateCompleted  = "Completed"
	BackupStateError      = "Error"
)

// StoredBackup is one backup in a backup store.
type StoredBackup struct {
	// Target is the backup target URL it was written to (e.g. s3://bucket@region/).
	Target     string
	Volume     string
	Name       string
	Snapshot   string
	VolumeSize string
	Created    time.Time
}

// URL is the backup's URL as Longhorn encodes it (backupstore.EncodeBackupURL).
func (b StoredBackup) URL() string {
	return b.Target + "?backup=" + url.QueryEscape(b.Name) + "&volume=" + url.QueryEscape(b.Volume)
}

// BackupStore stands in for the S3 bucket behind a backup target. It lives outside any
// apiserver, so what one cluster backed up is there for the next cluster that points at the
// same target: the disaster-recovery case. Safe for concurrent use.
type BackupStore struct {
	mu      sync.Mutex
	backups []StoredBackup
}

// NewBackupStore returns an empty store.
func NewBackupStore() *BackupStore { return &BackupStore{} }

// Backups lists the backups under a target URL, oldest first.
func (s *BackupStore) Backups(target string) []StoredBackup {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []StoredBackup
	for _, b := range s.backups {
		if b.Target == target {
			out = append(out, b)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}

// Put stores a backup (tests may seed the store with backups made "elsewhere").
func (s *BackupStore) Put(b StoredBackup) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, old := range s.backups {
		if old.Target == b.Target && old.Volume == b.Volume && old.Name == b.Name {
			s.backups[i] = b
			return
		}
	}
	s.backups = append(s.backups, b)
}

func (s *BackupStore) find(target, volume, name string) (StoredBackup, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.backups {
		if b.Target == target && b.Volume == volume && b.Name == name {
			return b, true
		}
	}
	return StoredBackup{}, false
}

// BackupOptions configure RunBackups.
type BackupOptions struct {
	// Store is the backup store behind every backup target URL (required).
	Store *BackupStore
	// BackupDuration is how long a backup stays InProgress (default 100 ms).
	BackupDuration time.Duration
	// RestoreDuration is how long a restore keeps the volume attached (default 100 ms).
	RestoreDuration time.Duration
}

// backupLoop is the state of RunBackups, touched only by its goroutine.
type backupLoop struct {
	m        *Manager
	opts     BackupOptions
	started  map[string]time.Time // backup or restoring volume -> when it started
	syncedAt string               // BackupTarget spec.syncRequestedAt last pulled
	pulledAt time.Time
}

// RunBackups plays longhorn-manager's snapshot, backup, backup-volume and restore
// controllers until ctx ends, as upstream does it for the parts talforge relies on:
//
//   - a Snapshot with spec.createSnapshot of an existing volume becomes readyToUse;
//   - a Backup with spec.snapshotName and the label backup-volume=<volume> goes InProgress,
//     then Completed with status.url = <target>?backup=<name>&volume=<volume>, is written to
//     the store, and the volume's BackupVolume and status.lastBackup follow; no volume, or a
//     backup target that is not available, ends it in Error;
//   - while BackupTarget "default" is available, backups in the store that the cluster does
//     not know yet are pulled in as Backup and BackupVolume objects (at its creation, when
//     spec.syncRequestedAt changes, and every pollInterval), which is how a rebuilt cluster
//     finds the old cluster's backups;
//   - a Volume with spec.fromBackup is restored: restoreRequired while attached and
//     restoring (condition Restore InProgress), then detached with restoreRequired false and
//     lastBackup = the backup; a backup that is not in the store faults the volume with
//     condition Restore RestoreFailure.
//
// It runs beside Run (start both); it uses no informers, only periodic lists.
func (m *Manager) RunBackups(ctx context.Context, opts BackupOptions) error {
	if opts.Store == nil {
		return errors.New("lhmanager: BackupOptions.Store is required")
	}
	if opts.BackupDuration == 0 {
		opts.BackupDuration = 100 * time.Millisecond
	}
	if opts.RestoreDuration == 0 {
		opts.RestoreDuration = 100 * time.Millisecond
	}
	l := &backupLoop{m: m, opts: opts, started: map[string]time.Time{}}
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

func (l *backupLoop) sync(ctx context.Context) error {
	var errs []error
	for _, step := range []struct {
		name string
		fn   func(context.Context) error
	}{
		{"snapshots", l.syncSnapshots},
		{"backups", l.syncBackups},
		{"backup store", l.pull},
		{"restores", l.syncRestores},
	} {
		if err := step.fn(ctx); err != nil && !apierrors.IsConflict(err) && !meta.IsNoMatchError(err) && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("%s: %w", step.name, err))
		}
	}
	return errors.Join(errs...)
}

func (l *backupLoop) res(gvr schema.GroupVersionResource) namespacedResource {
	return l.m.dyn.Resource(gvr).Namespace(l.m.ns)
}

type namespacedResource interface {
	List(ctx context.Context, opts metav1.ListOptions) (*unstructured.UnstructuredList, error)
	Get(ctx context.Context, name string, opts metav1.GetOptions, sub ...string) (*unstructured.Unstructured, error)
	Create(ctx context.Context, obj *unstructured.Unstructured, opts metav1.CreateOptions, sub ...string) (*unstructured.Unstructured, error)
	UpdateStatus(ctx context.Context, obj *unstructured.Unstructured, opts metav1.UpdateOptions) (*unstructured.Unstructured, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, sub ...string) (*unstructured.Unstructured, error)
}

// target returns BackupTarget "default": its URL and whether it is available.
func (l *backupLoop) target(ctx context.Context) (url string, available bool, bt *unstructured.Unstructured, err error) {
	bt, err = l.res(BackupTargetGVR).Get(ctx, DefaultBackupTarget, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return "", false, nil, nil
	}
	if err != nil {
		return "", false, nil, err
	}
	url, _, _ = unstructured.NestedString(bt.Object, "spec", "backupTargetURL")
	available, _, _ = unstructured.NestedBool(bt.Object, "status", "available")
	return url, available, bt, nil
}

func (l *backupLoop) syncSnapshots(ctx context.Context) error {
	list, err := l.res(SnapshotGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range list.Items {
		s := &list.Items[i]
		if ready, _, _ := unstructured.NestedBool(s.Object, "status", "readyToUse"); ready {
			continue
		}
		if msg, _, _ := unstructured.NestedString(s.Object, "status", "error"); msg != "" {
			continue
		}
		vol, _, _ := unstructured.NestedString(s.Object, "spec", "volume")
		status := map[string]any{"ownerID": "node-1"}
		v, err := l.res(VolumeGVR).Get(ctx, vol, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			status["error"] = fmt.Sprintf("volume %s not found", vol)
		case err != nil:
			return err
		default:
			size, _, _ := unstructured.NestedString(v.Object, "spec", "size")
			status["readyToUse"] = true
			status["userCreated"] = true
			status["creationTime"] = time.Now().UTC().Format(time.RFC3339)
			status["restoreSize"] = parseInt(size)
			status["size"] = parseInt(size) / 4 // some written data
		}
		s.Object["status"] = status
		if _, err := l.res(SnapshotGVR).UpdateStatus(ctx, s, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("snapshot %s status: %w", s.GetName(), err)
		}
	}
	return nil
}

func parseInt(s string) int64 {
	var n int64
	fmt.Sscan(s, &n) //nolint:errcheck // 0 for anything that is not a number
	return n
}

func (l *backupLoop) syncBackups(ctx context.Context) error {
	list, err := l.res(BackupGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range list.Items {
		b := &list.Items[i]
		state, _, _ := unstructured.NestedString(b.Object, "status", "state")
		snap, _, _ := unstructured.NestedString(b.Object, "spec", "snapshotName")
		if snap == "" || state == BackupStateCompleted || state == BackupStateError {
			continue
		}
		if err := l.syncBackup(ctx, b, snap, state); err != nil {
			return fmt.Errorf("backup %s: %w", b.GetName(), err)
		}
	}
	return nil
}

func (l *backupLoop) syncBackup(ctx context.Context, b *unstructured.Unstructured, snap, state string) error {
	vol := b.GetLabels()[LabelBackupVolume]
	fail := func(msg string) error {
		b.Object["status"] = map[string]any{"state": BackupStateError, "error": msg, "volumeName": vol, "snapshotName": snap,
			"lastSyncedAt": time.Now().UTC().Format(time.RFC3339)}
		delete(l.started, "backup/"+b.GetName())
		_, err := l.res(BackupGVR).UpdateStatus(ctx, b, metav1.UpdateOptions{})
		return err
	}
	v, err := l.res(VolumeGVR).Get(ctx, vol, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fail(fmt.Sprintf("Cannot find the corresponding volume: volumes.longhorn.io %q not found", vol))
	}
	if err != nil {
		return err
	}
	target, available, _, err := l.target(ctx)
	if err != nil {
		return err
	}
	if !available {
		return fail(fmt.Sprintf("backup target %s is not available", DefaultBackupTarget))
	}
	s, err := l.res(SnapshotGVR).Get(ctx, snap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fail(fmt.Sprintf("snapshot %s of volume %s not found", snap, vol))
	}
	if err != nil {
		return err
	}
	if ready, _, _ := unstructured.NestedBool(s.Object, "status", "readyToUse"); !ready {
		return nil // Longhorn waits for the snapshot ("Waiting for the snapshot %v to be ready")
	}
	size, _, _ := unstructured.NestedString(v.Object, "spec", "size")
	key := "backup/" + b.GetName()
	begun, ok := l.started[key]
	if !ok || state == "" {
		l.started[key] = time.Now()
		b.Object["status"] = map[string]any{"state": BackupStateInProgress, "progress": int64(10), "volumeName": vol, "volumeSize": size,
			"snapshotName": snap, "backupTargetName": DefaultBackupTarget, "ownerID": "node-1"}
		_, err := l.res(BackupGVR).UpdateStatus(ctx, b, metav1.UpdateOptions{})
		return err
	}
	if time.Since(begun) < l.opts.BackupDuration {
		return nil
	}
	delete(l.started, key)
	stored := StoredBackup{Target: target, Volume: vol, Name: b.GetName(), Snapshot: snap, VolumeSize: size, Created: time.Now().UTC()}
	l.opts.Store.Put(stored)
	l.m.logf("backup %s of volume %s completed in %s", stored.Name, vol, target)
	b.Object["status"] = completedStatus(stored)
	if _, err := l.res(BackupGVR).UpdateStatus(ctx, b, metav1.UpdateOptions{}); err != nil {
		return err
	}
	if err := l.ensureBackupVolume(ctx, stored); err != nil {
		return err
	}
	now := stored.Created.Format(time.RFC3339)
	return l.m.setVolumeStatus(ctx, v, map[string]any{"lastBackup": stored.Name, "lastBackupAt": now})
}

func completedStatus(b StoredBackup) map[string]any {
	ts := b.Created.UTC().Format(time.RFC3339)
	return map[string]any{
		"state": BackupStateCompleted, "progress": int64(100), "url": b.URL(), "volumeName": b.Volume, "volumeSize": b.VolumeSize,
		"snapshotName": b.Snapshot, "snapshotCreatedAt": ts, "backupCreatedAt": ts, "size": fmt.Sprint(parseInt(b.VolumeSize) / 4),
		"backupTargetName": DefaultBackupTarget, "lastSyncedAt": ts, "ownerID": "node-1",
	}
}

// ensureBackupVolume creates the volume's BackupVolume (named after the volume) and points
// its status at the newest stored backup.
func (l *backupLoop) ensureBackupVolume(ctx context.Context, b StoredBackup) error {
	res := l.res(BackupVolumeGVR)
	bv, err := res.Get(ctx, b.Volume, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		bv, err = res.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": group + "/" + version, "kind": "BackupVolume",
			"metadata": map[string]any{"name": b.Volume, "namespace": l.m.ns,
				"labels": map[string]any{LabelBackupTarget: DefaultBackupTarget, LabelBackupVolume: b.Volume}},
			"spec": map[string]any{"backupTargetName": DefaultBackupTarget, "volumeName": b.Volume},
		}}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("backup volume %s: %w", b.Volume, err)
	}
	last, _, _ := unstructured.NestedString(bv.Object, "status", "lastBackupAt")
	ts := b.Created.UTC().Format(time.RFC3339)
	if last != "" && last > ts {
		return nil
	}
	bv.Object["status"] = map[string]any{"lastBackupName": b.Name, "lastBackupAt": ts, "size": b.VolumeSize, "ownerID": "node-1",
		"lastSyncedAt": time.Now().UTC().Format(time.RFC3339)}
	_, err = res.UpdateStatus(ctx, bv, metav1.UpdateOptions{})
	return err
}

// pull brings the store's backups of the default target into the cluster, like Longhorn's
// backup target controller on creation, on spec.syncRequestedAt and every pollInterval.
func (l *backupLoop) pull(ctx context.Context) error {
	target, available, bt, err := l.target(ctx)
	if err != nil || !available {
		return err
	}
	requested, _, _ := unstructured.NestedString(bt.Object, "spec", "syncRequestedAt")
	poll, _, _ := unstructured.NestedString(bt.Object, "spec", "pollInterval")
	every, err := time.ParseDuration(poll)
	if err != nil || every <= 0 {
		every = 0
	}
	due := requested != l.syncedAt || (every > 0 && time.Since(l.pulledAt) >= every)
	if !due {
		return nil
	}
	existing, err := l.res(BackupGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, b := range existing.Items {
		known[b.GetName()] = true
	}
	for _, b := range l.opts.Store.Backups(target) {
		if !known[b.Name] {
			created, err := l.res(BackupGVR).Create(ctx, &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": group + "/" + version, "kind": "Backup",
				"metadata": map[string]any{"name": b.Name, "namespace": l.m.ns,
					"labels": map[string]any{LabelBackupTarget: DefaultBackupTarget, LabelBackupVolume: b.Volume}},
				"spec": map[string]any{"snapshotName": "", "labels": map[string]any{}},
			}}, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("backup %s: %w", b.Name, err)
			}
			if err == nil {
				created.Object["status"] = completedStatus(b)
				if _, err := l.res(BackupGVR).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
					return fmt.Errorf("backup %s status: %w", b.Name, err)
				}
				l.m.logf("pulled backup %s of volume %s from %s", b.Name, b.Volume, target)
			}
		}
		if err := l.ensureBackupVolume(ctx, b); err != nil {
			return err
		}
	}
	// Like Longhorn's backup target controller: the listing is done, say when.
	patch := fmt.Sprintf(`{"status":{"lastSyncedAt":%q}}`, time.Now().UTC().Format(time.RFC3339))
	if _, err := l.res(BackupTargetGVR).Patch(ctx, DefaultBackupTarget, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("backup target %s status: %w", DefaultBackupTarget, err)
	}
	l.syncedAt, l.pulledAt = requested, time.Now()
	return nil
}

// parseBackupURL splits <target>?backup=<name>&volume=<volume> (backupstore.DecodeBackupURL).
func parseBackupURL(u string) (target, volume, name string, err error) {
	target, query, ok := strings.Cut(u, "?")
	if !ok {
		return "", "", "", fmt.Errorf("invalid backup URL %q: no query", u)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", "", "", fmt.Errorf("invalid backup URL %q: %w", u, err)
	}
	volume, name = q.Get("volume"), q.Get("backup")
	if volume == "" || name == "" {
		return "", "", "", fmt.Errorf("invalid backup URL %q: backup and volume are required", u)
	}
	return target, volume, name, nil
}

func (l *backupLoop) syncRestores(ctx context.Context) error {
	list, err := l.res(VolumeGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range list.Items {
		v := &list.Items[i]
		from, _, _ := unstructured.NestedString(v.Object, "spec", "fromBackup")
		if from == "" {
			continue
		}
		if err := l.syncRestore(ctx, v, from); err != nil {
			return fmt.Errorf("volume %s: %w", v.GetName(), err)
		}
	}
	return nil
}

func (l *backupLoop) syncRestore(ctx context.Context, v *unstructured.Unstructured, from string) error {
	status, _, _ := unstructured.NestedMap(v.Object, "status")
	required, hasRequired := status["restoreRequired"].(bool)
	key := "restore/" + v.GetName()
	now := time.Now().UTC().Format(time.RFC3339)
	if hasRequired && !required {
		return nil // restored
	}
	if robustness, _ := status["robustness"].(string); robustness == Faulted {
		return nil
	}
	if !hasRequired {
		target, vol, name, err := parseBackupURL(from)
		var b StoredBackup
		found := false
		if err == nil {
			b, found = l.opts.Store.find(target, vol, name)
		}
		if !found {
			msg := fmt.Sprintf("backup %s of volume %s not found in %s", name, vol, target)
			if err != nil {
				msg = err.Error()
			}
			return l.m.setVolumeStatus(ctx, v, map[string]any{
				"state": "detached", "robustness": Faulted, "restoreRequired": true, "restoreInitiated": true, "currentNodeID": "",
				"conditions": []any{restoreCondition("False", "RestoreFailure", "All replica restore failed and the volume became Faulted: "+msg, now)},
			})
		}
		l.started[key] = time.Now()
		return l.m.setVolumeStatus(ctx, v, map[string]any{
			"state": "attached", "robustness": Healthy, "restoreRequired": true, "restoreInitiated": true, "currentNodeID": "node-1",
			"lastBackup": b.Name, "lastBackupAt": b.Created.UTC().Format(time.RFC3339),
			"conditions": []any{restoreCondition("True", "RestoreInProgress", "", now)},
		})
	}
	begun, ok := l.started[key]
	if !ok {
		l.started[key] = time.Now() // the manager restarted during the restore: it resumes
		return nil
	}
	if time.Since(begun) < l.opts.RestoreDuration {
		return nil
	}
	delete(l.started, key)
	size, _, _ := unstructured.NestedString(v.Object, "spec", "size")
	l.m.logf("volume %s restored from %s", v.GetName(), from)
	return l.m.setVolumeStatus(ctx, v, map[string]any{
		"state": "detached", "robustness": "unknown", "restoreRequired": false, "currentNodeID": "", "actualSize": parseInt(size) / 4,
		"conditions": []any{restoreCondition("False", "", "", now)},
	})
}

func restoreCondition(status, reason, message, now string) map[string]any {
	return map[string]any{"type": "Restore", "status": status, "reason": reason, "message": message, "lastTransitionTime": now}
}
