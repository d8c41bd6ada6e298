package lhmanager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
)

// RunRecurringJob runs the RecurringJob name now, as its CronJob would
// (app/recurringjob/volume.go): for every Volume labelled
// recurring-job.longhorn.io/<name>=enabled or recurring-job-group.longhorn.io/<group>=enabled
// for one of its groups, a snapshot and then a backup of it whose labels are the job's
// spec.labels, RecurringJob=<name> and, when the volume has a status.kubernetesStatus,
// KubernetesStatus=<its JSON> (api/snapshot.go SnapshotBackup); then the job's backups of
// the volume beyond spec.retain are deleted, oldest first (listBackupsForCleanup; the
// deletion removes them from the store), and its older snapshots too (doSnapshotCleanup with
// auto-cleanup-recurring-job-backup-snapshot, the default). Only backup tasks are run. The
// volumes are taken one by one; a failure on one does not stop the others and all failures
// are returned. RunBackups must be running, it does the snapshots, backups and deletions.
// Unlike Longhorn, detached volumes are not skipped: nothing here models attachment.
func (m *Manager) RunRecurringJob(ctx context.Context, name string) error {
	if m.data == nil {
		return errors.New("lhmanager: RunRecurringJob needs Options.Data and RunBackups")
	}
	rj, err := m.dyn.Resource(RecurringJobGVR).Namespace(m.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("recurring job %s: %w", name, err)
	}
	task, _, _ := unstructured.NestedString(rj.Object, "spec", "task")
	if task != "backup" && task != "backup-force-create" {
		return fmt.Errorf("recurring job %s: task %q: only backup tasks are emulated", name, task)
	}
	retain, _, _ := unstructured.NestedInt64(rj.Object, "spec", "retain")
	groups, _, _ := unstructured.NestedStringSlice(rj.Object, "spec", "groups")
	jobLabels, _, _ := unstructured.NestedStringMap(rj.Object, "spec", "labels")

	selectors := []string{recurringJobLabelPrefix + name + "=" + labelValueEnabled}
	for _, g := range groups {
		selectors = append(selectors, recurringJobGroupLabelPrefix+g+"="+labelValueEnabled)
	}
	seen := map[string]bool{}
	var volumes []*unstructured.Unstructured
	for _, sel := range selectors {
		list, err := m.dyn.Resource(VolumeGVR).Namespace(m.ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return fmt.Errorf("recurring job %s: list volumes: %w", name, err)
		}
		for i := range list.Items {
			v := &list.Items[i]
			if !seen[v.GetName()] && v.GetDeletionTimestamp() == nil {
				seen[v.GetName()] = true
				volumes = append(volumes, v)
			}
		}
	}
	sort.Slice(volumes, func(i, j int) bool { return volumes[i].GetName() < volumes[j].GetName() })
	var errs []error
	for _, v := range volumes {
		if err := m.recurringBackup(ctx, name, retain, jobLabels, v); err != nil {
			errs = append(errs, fmt.Errorf("recurring job %s: volume %s: %w", name, v.GetName(), err))
		}
	}
	count, _, _ := unstructured.NestedInt64(rj.Object, "status", "executionCount")
	if err := unstructured.SetNestedField(rj.Object, count+1, "status", "executionCount"); err == nil {
		if _, err := m.dyn.Resource(RecurringJobGVR).Namespace(m.ns).UpdateStatus(ctx, rj, metav1.UpdateOptions{}); err != nil {
			m.logf("recurring job %s status: %v", name, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) recurringBackup(ctx context.Context, job string, retain int64, jobLabels map[string]string, v *unstructured.Unstructured) error {
	vol := v.GetName()
	specLabels := map[string]any{RecurringJobLabel: job}
	for k, val := range jobLabels {
		specLabels[k] = val
	}
	// newVolumeJob: the job name's first 8 characters and a UUID.
	snapName := job[:min(8, len(job))] + "-" + uuid()
	snaps := m.dyn.Resource(SnapshotGVR).Namespace(m.ns)
	if _, err := snaps.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": group + "/" + version, "kind": "Snapshot",
		"metadata": map[string]any{"name": snapName, "namespace": m.ns, "labels": map[string]any{"longhornvolume": vol}},
		"spec":     map[string]any{"volume": vol, "createSnapshot": true, "labels": specLabels},
	}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create snapshot %s: %w", snapName, err)
	}
	if err := waitObject(ctx, snaps, snapName, func(u *unstructured.Unstructured) (bool, error) {
		if msg, _, _ := unstructured.NestedString(u.Object, "status", "error"); msg != "" {
			return false, fmt.Errorf("snapshot %s: %s", snapName, msg)
		}
		ready, _, _ := unstructured.NestedBool(u.Object, "status", "readyToUse")
		return ready, nil
	}); err != nil {
		return err
	}

	backupLabels := map[string]any{}
	for k, val := range specLabels {
		backupLabels[k] = val
	}
	if ks := kubeStatusOf(v); !ks.isZero() {
		raw, err := json.Marshal(ks)
		if err != nil {
			return fmt.Errorf("failed to convert volume %v's KubernetesStatus to json: %w", vol, err)
		}
		backupLabels[KubernetesStatusLabel] = string(raw)
	}
	// bsutil.GenerateName("backup"): "backup-" and 16 hex digits.
	backupName := "backup-" + randomHex(8)
	backups := m.dyn.Resource(BackupGVR).Namespace(m.ns)
	if _, err := backups.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": group + "/" + version, "kind": "Backup",
		"metadata": map[string]any{"name": backupName, "namespace": m.ns,
			"labels": map[string]any{LabelBackupVolume: vol, LabelBackupTarget: DefaultBackupTarget}},
		"spec": map[string]any{"snapshotName": snapName, "labels": backupLabels},
	}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create backup %s: %w", backupName, err)
	}
	if err := waitObject(ctx, backups, backupName, func(u *unstructured.Unstructured) (bool, error) {
		state, _, _ := unstructured.NestedString(u.Object, "status", "state")
		if state == BackupStateError {
			msg, _, _ := unstructured.NestedString(u.Object, "status", "error")
			return false, fmt.Errorf("failed to create backup %s: %s", backupName, msg)
		}
		return state == BackupStateCompleted, nil
	}); err != nil {
		return err
	}
	m.logf("recurring job %s: volume %s backed up as %s", job, vol, backupName)

	// Retention: only this job's backups count (listBackupsForCleanup).
	mine, err := m.backupsWithLabel(ctx, vol, RecurringJobLabel, job)
	if err != nil {
		return err
	}
	retain = max(retain, 1)
	for len(mine) > int(retain) {
		old := mine[0].GetName()
		mine = mine[1:]
		if err := backups.Delete(ctx, old, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("cleaned up backup %s failed: %w", old, err)
		}
		if err := waitGone(ctx, backups, old); err != nil {
			return fmt.Errorf("cleaned up backup %s failed: %w", old, err)
		}
		m.logf("recurring job %s: cleaned up backup %s of volume %s", job, old, vol)
	}

	// Snapshot clean-up: the job's older snapshots of the volume go.
	list, err := snaps.List(ctx, metav1.ListOptions{LabelSelector: "longhornvolume=" + vol})
	if err != nil {
		return err
	}
	for _, s := range list.Items {
		if l, _, _ := unstructured.NestedString(s.Object, "spec", "labels", RecurringJobLabel); l != job || s.GetName() == snapName {
			continue
		}
		if err := snaps.Delete(ctx, s.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete snapshot %s: %w", s.GetName(), err)
		}
	}
	return nil
}

// backupsWithLabel are the Completed Backup objects of a volume whose backup config has the
// label, oldest first.
func (m *Manager) backupsWithLabel(ctx context.Context, volume, key, value string) ([]*unstructured.Unstructured, error) {
	list, err := m.dyn.Resource(BackupGVR).Namespace(m.ns).List(ctx, metav1.ListOptions{LabelSelector: LabelBackupVolume + "=" + volume})
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for i := range list.Items {
		b := &list.Items[i]
		state, _, _ := unstructured.NestedString(b.Object, "status", "state")
		if v, _, _ := unstructured.NestedString(b.Object, "status", "labels", key); v == value && state == BackupStateCompleted && b.GetDeletionTimestamp() == nil {
			out = append(out, b)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, _, _ := unstructured.NestedString(out[i].Object, "status", "backupCreatedAt")
		b, _, _ := unstructured.NestedString(out[j].Object, "status", "backupCreatedAt")
		if a != b {
			return a < b
		}
		ci, cj := out[i].GetCreationTimestamp(), out[j].GetCreationTimestamp()
		return ci.Before(&cj)
	})
	return out, nil
}

// waitObject polls an object until done says so or fails.
func waitObject(ctx context.Context, res dynamic.ResourceInterface, name string, done func(*unstructured.Unstructured) (bool, error)) error {
	for {
		u, err := res.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		ok, err := done(u)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitGone polls until the object no longer exists.
func waitGone(ctx context.Context, res dynamic.ResourceInterface, name string) error {
	for {
		_, err := res.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to be deleted: %w", name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

func uuid() string {
	h := randomHex(16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
