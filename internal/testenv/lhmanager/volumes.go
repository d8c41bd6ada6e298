package lhmanager

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Volume robustness values (longhorn types.VolumeRobustness*).
const (
	Healthy  = "healthy"
	Degraded = "degraded"
	Faulted  = "faulted"
)

// CreateVolume creates an attached, healthy Volume with the given labels, as the CSI
// driver would for a PVC.
func (m *Manager) CreateVolume(ctx context.Context, name string, labels map[string]string) error {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": group + "/" + version, "kind": "Volume",
		"metadata": map[string]any{"name": name, "namespace": m.ns},
		"spec": map[string]any{
			"size": "1073741824", "numberOfReplicas": int64(3), "frontend": "blockdev",
			"dataEngine": "v1", "backupTargetName": DefaultBackupTarget,
		},
	}}
	if len(labels) > 0 {
		u.SetLabels(labels)
	}
	res := m.dyn.Resource(VolumeGVR).Namespace(m.ns)
	created, err := res.Create(ctx, u, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create volume %s: %w", name, err)
	}
	return m.setVolumeStatus(ctx, created, map[string]any{"state": "attached", "robustness": Healthy, "currentNodeID": "node-1"})
}

// SetVolumeRobustness sets status.robustness (healthy, degraded, faulted, unknown).
func (m *Manager) SetVolumeRobustness(ctx context.Context, name, robustness string) error {
	v, err := m.dyn.Resource(VolumeGVR).Namespace(m.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	fields := map[string]any{"robustness": robustness}
	if robustness == Degraded {
		fields["lastDegradedAt"] = time.Now().UTC().Format(time.RFC3339)
	}
	return m.setVolumeStatus(ctx, v, fields)
}

// SetRebuilding starts (true) or ends a replica rebuild on the volume's engine: the
// Engine "<volume>-e-0" gets a rebuildStatus entry with isRebuilding, and the volume is
// degraded while it runs, as in Longhorn.
func (m *Manager) SetRebuilding(ctx context.Context, volume string, rebuilding bool) error {
	res := m.dyn.Resource(EngineGVR).Namespace(m.ns)
	name := volume + "-e-0"
	e, err := res.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		e, err = res.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": group + "/" + version, "kind": "Engine",
			"metadata": map[string]any{"name": name, "namespace": m.ns, "labels": map[string]any{"longhornvolume": volume}},
			"spec":     map[string]any{"volumeName": volume, "nodeID": "node-1"},
		}}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("engine %s: %w", name, err)
	}
	rs := map[string]any{}
	if rebuilding {
		rs["tcp://10.42.0.12:10000"] = map[string]any{"isRebuilding": true, "progress": int64(42), "state": "in_progress", "fromReplicaAddress": "tcp://10.42.0.11:10000"}
	}
	e.Object["status"] = map[string]any{"currentState": "running", "rebuildStatus": rs}
	if _, err := res.UpdateStatus(ctx, e, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("engine %s status: %w", name, err)
	}
	r := Healthy
	if rebuilding {
		r = Degraded
	}
	return m.SetVolumeRobustness(ctx, volume, r)
}

// SimulateBackup records a completed backup of volume, as Longhorn does after a backup
// job: a BackupVolume named after the volume (created once), a Backup labelled
// backup-volume=<volume>, and the volume's lastBackup/lastBackupAt.
func (m *Manager) SimulateBackup(ctx context.Context, volume, backup string) error {
	now := time.Now().UTC().Format(time.RFC3339)
	bvs := m.dyn.Resource(BackupVolumeGVR).Namespace(m.ns)
	bv, err := bvs.Get(ctx, volume, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		bv, err = bvs.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": group + "/" + version, "kind": "BackupVolume",
			"metadata": map[string]any{"name": volume, "namespace": m.ns, "labels": map[string]any{"backup-target": DefaultBackupTarget, "backup-volume": volume}},
			"spec":     map[string]any{"backupTargetName": DefaultBackupTarget, "volumeName": volume},
		}}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("backup volume %s: %w", volume, err)
	}
	bs := m.dyn.Resource(BackupGVR).Namespace(m.ns)
	b, err := bs.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": group + "/" + version, "kind": "Backup",
		"metadata": map[string]any{"name": backup, "namespace": m.ns, "labels": map[string]any{"backup-target": DefaultBackupTarget, "backup-volume": volume}},
		"spec":     map[string]any{"snapshotName": backup + "-snap", "labels": map[string]any{}},
	}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("backup %s: %w", backup, err)
	}
	b.Object["status"] = map[string]any{
		"state": "Completed", "progress": int64(100), "volumeName": volume, "volumeSize": "1073741824",
		"snapshotName": backup + "-snap", "backupCreatedAt": now, "backupTargetName": DefaultBackupTarget,
		"url": fmt.Sprintf("s3://backupbucket@us-east-1/?backup=%s&volume=%s", backup, volume),
	}
	if _, err := bs.UpdateStatus(ctx, b, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("backup %s status: %w", backup, err)
	}
	bv.Object["status"] = map[string]any{"lastBackupName": backup, "lastBackupAt": now, "size": "1073741824", "ownerID": "node-1"}
	if _, err := bvs.UpdateStatus(ctx, bv, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("backup volume %s status: %w", volume, err)
	}
	v, err := m.dyn.Resource(VolumeGVR).Namespace(m.ns).Get(ctx, volume, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil // a backup of a volume that no longer exists (restore scenarios)
	}
	if err != nil {
		return err
	}
	return m.setVolumeStatus(ctx, v, map[string]any{"lastBackup": backup, "lastBackupAt": now})
}

func (m *Manager) setVolumeStatus(ctx context.Context, v *unstructured.Unstructured, fields map[string]any) error {
	status, _, _ := unstructured.NestedMap(v.Object, "status")
	if status == nil {
		status = map[string]any{}
	}
	for k, val := range fields {
		status[k] = val
	}
	v.Object["status"] = status
	if _, err := m.dyn.Resource(VolumeGVR).Namespace(m.ns).UpdateStatus(ctx, v, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("volume %s status: %w", v.GetName(), err)
	}
	return nil
}

// deleteAllVolumes is what Longhorn's uninstaller does first when
// deleting-confirmation-flag is "true": every Volume goes, and with it the replica data.
func (m *Manager) deleteAllVolumes(ctx context.Context) error {
	err := m.dyn.Resource(VolumeGVR).Namespace(m.ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
