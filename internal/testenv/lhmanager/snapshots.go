// Snapshots: a Snapshot with spec.createSnapshot freezes the volume's data; deleting it
// deletes that data.

package lhmanager

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// SnapshotGVR is Longhorn's Snapshot resource (longhorn.io/v1beta2).
var SnapshotGVR = schema.GroupVersionResource{Group: group, Version: version, Resource: "snapshots"}

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
