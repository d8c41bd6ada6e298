package lhmanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/longhorn/backupstore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

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

// clone fills a new volume from spec.dataSource: snap://<volume>/<snapshot> or
// vol://<volume> (types/data_source.go), and reports it in status.cloneStatus.
func (l *loop) clone(ctx context.Context, v *unstructured.Unstructured, source string) error {
	kind, rest, _ := strings.Cut(source, "://")
	srcVol, snap := rest, ""
	switch kind {
	case "snap":
		srcVol, snap, _ = strings.Cut(rest, "/")
	case "vol":
	default:
		srcVol = ""
	}
	var cloneErr error
	if srcVol == "" || (kind == "snap" && snap == "") {
		cloneErr = fmt.Errorf("invalid data source %q: want snap://<volume>/<snapshot> or vol://<volume>", source)
	} else {
		cloneErr = l.data.Clone(v.GetName(), srcVol, snap)
	}
	state := "completed"
	if cloneErr != nil {
		state = "failed"
		l.m.logf("volume %s: clone from %s failed: %v", v.GetName(), source, cloneErr)
	} else {
		l.m.logf("volume %s cloned from %s", v.GetName(), source)
	}
	return l.updateStatus(ctx, VolumeGVR, v.GetName(), func(st map[string]any) bool {
		st["cloneStatus"] = map[string]any{"sourceVolume": srcVol, "snapshot": snap, "state": state}
		if _, has := st["state"]; !has {
			st["state"], st["robustness"], st["ownerID"] = "detached", "unknown", "node-1"
		}
		if cloneErr != nil {
			st["robustness"] = Faulted
		}
		return true
	})
}

// syncRestore follows Longhorn's restore of a Volume with spec.fromBackup
// (controller/volume_controller.go checkAndInitVolumeRestore): the Backup object named in
// the URL gives the size and, from its KubernetesStatus label, the volume's
// status.kubernetesStatus (PV fields cleared); restoreRequired stays true while the data is
// restored; a failure faults the volume with condition Restore/RestoreFailure.
func (l *loop) syncRestore(ctx context.Context, v *unstructured.Unstructured, from string) error {
	status, _, _ := unstructured.NestedMap(v.Object, "status")
	required, hasRequired := status["restoreRequired"].(bool)
	if hasRequired && !required {
		return nil // restored
	}
	if robustness, _ := status["robustness"].(string); robustness == Faulted {
		return nil
	}
	name := v.GetName()
	if !hasRequired {
		bName, _, _, err := backupstore.DecodeBackupURL(from)
		if err != nil {
			return fmt.Errorf("failed to get backup name from backup URL %v: %w", from, err)
		}
		backup, err := l.res(BackupGVR).Get(ctx, bName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("failed to inspect the backup config %v: %w", from, err)
		}
		size, _, _ := unstructured.NestedString(backup.Object, "status", "size")
		created, _, _ := unstructured.NestedString(backup.Object, "status", "backupCreatedAt")
		snapCreated, _, _ := unstructured.NestedString(backup.Object, "status", "snapshotCreatedAt")
		labels, _, _ := unstructured.NestedStringMap(backup.Object, "status", "labels")
		ks := kubeStatus{}
		if raw, ok := labels[KubernetesStatusLabel]; ok {
			if err := json.Unmarshal([]byte(raw), &ks); err != nil {
				l.m.logf("volume %s: ignore KubernetesStatus JSON of backup %s: %v", name, bName, err)
				ks = kubeStatus{}
			} else {
				if ks.PVCName != "" && ks.LastPVCRefAt == "" {
					ks.LastPVCRefAt = snapCreated
				}
				if len(ks.WorkloadsStatus) != 0 && ks.LastPodRefAt == "" {
					ks.LastPodRefAt = snapCreated
				}
				ks.PVName, ks.PVStatus = "", "" // do not restore the PersistentVolume fields
			}
		}
		if err := l.updateStatus(ctx, VolumeGVR, name, func(st map[string]any) bool {
			st["state"], st["robustness"], st["currentNodeID"], st["ownerID"] = "attached", Healthy, "node-1", "node-1"
			st["restoreRequired"], st["restoreInitiated"], st["actualSize"] = true, true, parseInt(size)
			st["lastBackup"], st["lastBackupAt"], st["kubernetesStatus"] = bName, created, ks.toMap()
			st["conditions"] = []any{restoreCondition("True", "RestoreInProgress", "", now())}
			return true
		}); err != nil {
			return err
		}
		l.m.logf("volume %s: restoring from %s", name, from)
	}
	l.goWork("restore/"+name, func() { l.restore(name) })
	return nil
}

func (l *loop) restore(name string) {
	ctx := l.ctx
	v, err := l.res(VolumeGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil || v.GetDeletionTimestamp() != nil {
		return
	}
	// Re-read: a list taken before the last restore finished may have brought us here.
	from, _, _ := unstructured.NestedString(v.Object, "spec", "fromBackup")
	if required, _, _ := unstructured.NestedBool(v.Object, "status", "restoreRequired"); !required || from == "" {
		return
	}
	t, err := l.readTarget(ctx)
	if err != nil || t == nil {
		return
	}
	restoreErr := errors.New(t.problem)
	if t.problem == "" {
		restoreErr = l.data.Restore(ctx, t.creds, from, name)
	}
	if ctx.Err() != nil {
		return // the manager stops; the next one resumes the restore
	}
	if restoreErr != nil {
		l.m.logf("volume %s: restore from %s failed: %v", name, from, restoreErr)
		_ = l.updateStatus(ctx, VolumeGVR, name, func(st map[string]any) bool { // logged by the next round
			st["state"], st["robustness"], st["currentNodeID"] = "detached", Faulted, ""
			st["conditions"] = []any{restoreCondition("False", "RestoreFailure", "All replica restore failed and the volume became Faulted: "+restoreErr.Error(), now())}
			return true
		})
		return
	}
	l.m.logf("volume %s restored from %s", name, from)
	_ = l.updateStatus(ctx, VolumeGVR, name, func(st map[string]any) bool { // logged by the next round
		st["state"], st["robustness"], st["restoreRequired"], st["currentNodeID"] = "detached", "unknown", false, ""
		st["actualSize"] = l.data.Allocated(name, "")
		st["conditions"] = []any{restoreCondition("False", "", "", now())}
		return true
	})
}

func restoreCondition(status, reason, message, now string) map[string]any {
	return map[string]any{"type": "Restore", "status": status, "reason": reason, "message": message, "lastTransitionTime": now}
}

// ---------------------------------------------------------------- kubernetesStatus

// kubeStatus is longhorn.KubernetesStatus (k8s/pkg/apis/longhorn/v1beta2/volume.go).
type kubeStatus struct {
	PVName          string           `json:"pvName"`
	PVStatus        string           `json:"pvStatus"`
	Namespace       string           `json:"namespace"`
	PVCName         string           `json:"pvcName"`
	LastPVCRefAt    string           `json:"lastPVCRefAt"`
	WorkloadsStatus []workloadStatus `json:"workloadsStatus"`
	LastPodRefAt    string           `json:"lastPodRefAt"`
}

// workloadStatus is longhorn.WorkloadStatus.
type workloadStatus struct {
	PodName      string `json:"podName"`
	PodStatus    string `json:"podStatus"`
	WorkloadName string `json:"workloadName"`
	WorkloadType string `json:"workloadType"`
}

func (ks kubeStatus) toMap() map[string]any {
	out, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(&ks) // plain strings and slices
	return out
}

func kubeStatusOf(v *unstructured.Unstructured) kubeStatus {
	var ks kubeStatus
	if m, ok, _ := unstructured.NestedMap(v.Object, "status", "kubernetesStatus"); ok {
		_ = runtime.DefaultUnstructuredConverter.FromUnstructured(m, &ks) // a malformed status reads as empty
	}
	if len(ks.WorkloadsStatus) == 0 {
		ks.WorkloadsStatus = nil
	}
	return ks
}

// isZero is upstream's reflect.DeepEqual(ks, longhorn.KubernetesStatus{}) (api/snapshot.go).
func (ks kubeStatus) isZero() bool { return reflect.DeepEqual(ks, kubeStatus{}) }

// syncKubernetesStatus makes every Volume's status.kubernetesStatus follow the PV whose CSI
// volumeHandle names it, its claim and the pods using the claim
// (controller/kubernetes_pv_controller.go syncKubernetesStatus, cleanupForPVDeletion,
// getAssociatedPods, setWorkloads).
func (l *loop) syncKubernetesStatus(ctx context.Context) error {
	pvList, err := l.m.cs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	pvs := map[string]*corev1.PersistentVolume{}
	for i := range pvList.Items {
		pv := &pvList.Items[i]
		if pv.Spec.CSI != nil && pv.Spec.CSI.Driver == CSIDriver && pv.Spec.CSI.VolumeHandle != "" {
			pvs[pv.Spec.CSI.VolumeHandle] = pv
		}
	}
	vols, err := l.res(VolumeGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var errs []error
	for i := range vols.Items {
		v := &vols.Items[i]
		if v.GetDeletionTimestamp() != nil {
			continue
		}
		old := kubeStatusOf(v)
		ks := old
		ks.WorkloadsStatus = append([]workloadStatus(nil), old.WorkloadsStatus...)
		pv, bound := pvs[v.GetName()]
		if bound && pv.DeletionTimestamp != nil {
			bound = false
		}
		switch {
		case bound:
			if err := l.followPV(ctx, &ks, pv); err != nil {
				errs = append(errs, err)
				continue
			}
		case ks.PVName != "":
			// the PV is gone (cleanupForPVDeletion)
			if ks.PVCName != "" && ks.LastPVCRefAt == "" {
				ks.LastPVCRefAt = now()
			}
			if len(ks.WorkloadsStatus) != 0 && ks.LastPodRefAt == "" {
				ks.LastPodRefAt = now()
			}
			ks.PVName, ks.PVStatus = "", ""
		default:
			continue
		}
		if reflect.DeepEqual(ks, old) {
			continue
		}
		if err := l.updateStatus(ctx, VolumeGVR, v.GetName(), func(st map[string]any) bool {
			st["kubernetesStatus"] = ks.toMap()
			return true
		}); err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", v.GetName(), err))
		}
	}
	return errors.Join(errs...)
}

func (l *loop) followPV(ctx context.Context, ks *kubeStatus, pv *corev1.PersistentVolume) error {
	if ks.PVName != pv.Name {
		*ks = kubeStatus{} // existing volume may be used/reused by pv
	}
	lastPVStatus := ks.PVStatus
	ks.PVName, ks.PVStatus = pv.Name, string(pv.Status.Phase)
	if ref := pv.Spec.ClaimRef; ref != nil {
		if pv.Status.Phase == corev1.VolumeBound {
			ks.PVCName, ks.Namespace, ks.LastPVCRefAt = ref.Name, ref.Namespace, ""
		} else if lastPVStatus == string(corev1.VolumeBound) && ks.LastPVCRefAt == "" {
			ks.LastPVCRefAt = now()
			if len(ks.WorkloadsStatus) != 0 && ks.LastPodRefAt == "" {
				ks.LastPodRefAt = now()
			}
		}
	} else if ks.LastPVCRefAt == "" && ks.PVCName != "" {
		ks.LastPVCRefAt = now()
		if len(ks.WorkloadsStatus) != 0 && ks.LastPodRefAt == "" {
			ks.LastPodRefAt = now()
		}
	}
	var pods []corev1.Pod
	if ks.PVStatus == string(corev1.VolumeBound) {
		list, err := l.m.cs.CoreV1().Pods(ks.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, p := range list.Items {
			for _, vol := range p.Spec.Volumes {
				if (vol.PersistentVolumeClaim != nil && vol.PersistentVolumeClaim.ClaimName == ks.PVCName) ||
					(vol.Ephemeral != nil && p.Name+"-"+vol.Name == ks.PVCName) {
					pods = append(pods, p)
					break
				}
			}
		}
		sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	}
	if len(pods) == 0 {
		if len(ks.WorkloadsStatus) != 0 && ks.LastPodRefAt == "" {
			ks.LastPodRefAt = now()
		}
		return nil
	}
	ks.WorkloadsStatus, ks.LastPodRefAt = nil, ""
	for _, p := range pods {
		ws := workloadStatus{PodName: p.Name, PodStatus: string(p.Status.Phase)}
		for _, ref := range p.OwnerReferences {
			if ref.Name != "" && ref.Kind != "" {
				ws.WorkloadName, ws.WorkloadType = ref.Name, ref.Kind
				break
			}
		}
		ks.WorkloadsStatus = append(ks.WorkloadsStatus, ws)
	}
	return nil
}
