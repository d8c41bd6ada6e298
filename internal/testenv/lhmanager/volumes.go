// Volumes: the test API to create them and set their state, and the data loop's volume sync.

package lhmanager

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/longhorn/backupstore"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/talforge/talforge/internal/testenv/lhdata"
)

// Volume robustness values (longhorn types.VolumeRobustness*).
const (
	Healthy  = "healthy"
	Degraded = "degraded"
	Faulted  = "faulted"
)

// CSIDriver is Longhorn's CSI driver name (types.LonghornDriverName).
const CSIDriver = "driver.longhorn.io"

// defaultVolumeSize is the size of volumes made by CreateVolume.
const defaultVolumeSize = 1 << 30

// CreateVolume creates an attached, healthy 1 GiB Volume with the given labels, as the CSI
// driver would for a PVC; with Options.Data its data (zeros) is created too.
func (m *Manager) CreateVolume(ctx context.Context, name string, labels map[string]string) error {
	if m.data != nil && !m.data.Exists(name) {
		if err := m.data.Create(name, defaultVolumeSize); err != nil {
			return fmt.Errorf("create volume %s: %w", name, err)
		}
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": group + "/" + version, "kind": "Volume",
		"metadata": map[string]any{"name": name, "namespace": m.ns},
		"spec": map[string]any{
			"size": strconv.Itoa(defaultVolumeSize), "numberOfReplicas": int64(3), "frontend": "blockdev",
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
	return m.setVolumeStatus(ctx, created, map[string]any{"state": "attached", "robustness": Healthy, "currentNodeID": "node-1", "ownerID": "node-1"})
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

// SimulateBackup records a completed backup of volume without any data, for a Manager
// without Options.Data (where nothing reaches a backup store): a BackupVolume named after
// the volume (created once), a Backup labelled backup-volume=<volume>, and the volume's
// lastBackup/lastBackupAt. With Options.Data, create a Snapshot and a Backup object instead:
// the backup is real.
func (m *Manager) SimulateBackup(ctx context.Context, volume, backup string) error {
	if m.data != nil {
		return errors.New("lhmanager: SimulateBackup is for a Manager without Options.Data; this one makes real backups from Snapshot and Backup objects")
	}
	ts := time.Now().UTC().Format(time.RFC3339)
	bvs := m.dyn.Resource(BackupVolumeGVR).Namespace(m.ns)
	bv, err := bvs.Get(ctx, volume, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		bv, err = bvs.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": group + "/" + version, "kind": "BackupVolume",
			"metadata": map[string]any{"name": volume, "namespace": m.ns, "labels": map[string]any{LabelBackupTarget: DefaultBackupTarget, LabelBackupVolume: volume}},
			"spec":     map[string]any{"backupTargetName": DefaultBackupTarget, "volumeName": volume},
		}}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("backup volume %s: %w", volume, err)
	}
	bs := m.dyn.Resource(BackupGVR).Namespace(m.ns)
	b, err := bs.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": group + "/" + version, "kind": "Backup",
		"metadata": map[string]any{"name": backup, "namespace": m.ns, "labels": map[string]any{LabelBackupTarget: DefaultBackupTarget, LabelBackupVolume: volume}},
		"spec":     map[string]any{"snapshotName": backup + "-snap", "labels": map[string]any{}},
	}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("backup %s: %w", backup, err)
	}
	b.Object["status"] = map[string]any{
		"state": BackupStateCompleted, "progress": int64(100), "volumeName": volume, "volumeSize": strconv.Itoa(defaultVolumeSize),
		"snapshotName": backup + "-snap", "backupCreatedAt": ts, "backupTargetName": DefaultBackupTarget, "lastSyncedAt": ts,
		"url": backupstore.EncodeBackupURL(backup, volume, "s3://backupbucket@us-east-1/"),
	}
	if _, err := bs.UpdateStatus(ctx, b, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("backup %s status: %w", backup, err)
	}
	bv.Object["status"] = map[string]any{"lastBackupName": backup, "lastBackupAt": ts, "size": strconv.Itoa(defaultVolumeSize), "ownerID": "node-1"}
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
	return m.setVolumeStatus(ctx, v, map[string]any{"lastBackup": backup, "lastBackupAt": ts})
}

func (m *Manager) setVolumeStatus(ctx context.Context, v *unstructured.Unstructured, fields map[string]any) error {
	res := m.dyn.Resource(VolumeGVR).Namespace(m.ns)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		status, _, _ := unstructured.NestedMap(v.Object, "status")
		if status == nil {
			status = map[string]any{}
		}
		for k, val := range fields {
			status[k] = val
		}
		v.Object["status"] = status
		_, err := res.UpdateStatus(ctx, v, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			// Another round of the manager wrote the volume meanwhile: start from its copy.
			if cur, gerr := res.Get(ctx, v.GetName(), metav1.GetOptions{}); gerr == nil {
				v = cur
			}
		}
		return err
	})
	if err != nil {
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

// keepRemoteBackups is what Longhorn's uninstaller does before the Backup objects go
// (controller/uninstall_controller.go deleteCRs, deleteBackupTargets): it unsets the backup
// target's URL so that deleting the objects leaves the backups in the store; here every
// Backup is also labelled delete-custom-resource-only, which has the same effect at once.
func (m *Manager) keepRemoteBackups(ctx context.Context) error {
	if m.data == nil {
		return nil
	}
	backups, err := m.dyn.Resource(BackupGVR).Namespace(m.ns).List(ctx, metav1.ListOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if err == nil {
		patch := []byte(fmt.Sprintf(`{"metadata":{"labels":{%q:"true"}}}`, labelDeleteCROnly))
		for _, b := range backups.Items {
			if _, err := m.dyn.Resource(BackupGVR).Namespace(m.ns).Patch(ctx, b.GetName(), types.MergePatchType, patch, metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("backup %s: %w", b.GetName(), err)
			}
		}
	}
	_, err = m.dyn.Resource(BackupTargetGVR).Namespace(m.ns).Patch(ctx, DefaultBackupTarget, types.MergePatchType, []byte(`{"spec":{"backupTargetURL":""}}`), metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// ---------------------------------------------------------------- volume data

// roundUpSize is Longhorn's util.RoundUpSize: sizes go up to a multiple of 2 MiB.
func roundUpSize(size int64) int64 {
	if size <= 0 {
		return lhdata.BlockSize
	}
	return (size + lhdata.BlockSize - 1) / lhdata.BlockSize * lhdata.BlockSize
}

// syncVolumes gives every Volume its data, as Longhorn's volume controller does with
// replicas: restored from spec.fromBackup, cloned from spec.dataSource, or empty; and
// deletes the data of a deleted Volume.
func (l *loop) syncVolumes(ctx context.Context) error {
	list, err := l.res(VolumeGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var errs []error
	for i := range list.Items {
		v := &list.Items[i]
		name := v.GetName()
		if v.GetDeletionTimestamp() != nil {
			if l.busy("restore/" + name) {
				continue // the restore stops with the manager or finishes first
			}
			if err := l.data.Delete(name); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := l.removeFinalizer(ctx, VolumeGVR, name); err != nil {
				errs = append(errs, fmt.Errorf("volume %s: %w", name, err))
			} else {
				l.m.logf("volume %s deleted with its data", name)
			}
			continue
		}
		if err := l.ensureFinalizer(ctx, VolumeGVR, v); err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", name, err))
			continue
		}
		from, _, _ := unstructured.NestedString(v.Object, "spec", "fromBackup")
		source, _, _ := unstructured.NestedString(v.Object, "spec", "dataSource")
		switch {
		case from != "":
			if err := l.syncRestore(ctx, v, from); err != nil {
				errs = append(errs, fmt.Errorf("volume %s: %w", name, err))
			}
		case l.data.Exists(name):
		case source != "":
			if err := l.clone(ctx, v, source); err != nil {
				errs = append(errs, fmt.Errorf("volume %s: %w", name, err))
			}
		default:
			size, _, _ := unstructured.NestedString(v.Object, "spec", "size")
			if err := l.data.Create(name, roundUpSize(parseInt(size))); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func parseInt(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64) // 0 for anything that is not a number
	return n
}
