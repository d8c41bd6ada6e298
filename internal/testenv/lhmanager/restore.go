// Volume data from a data source or a backup: clones (spec.dataSource) and restores
// (spec.fromBackup), as controller/volume_controller.go starts them.

package lhmanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/longhorn/backupstore"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

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
