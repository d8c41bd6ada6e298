package lhmanager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
)

// minimalVolumeSize is Longhorn's util.MinimalVolumeSize (10 MiB): CreateVolume raises
// smaller requests to it.
const minimalVolumeSize = 10 << 20

// Labels of a Volume's recurring jobs (types.GetRecurringJobLabelKey) and their value.
const (
	recurringJobLabelPrefix      = "recurring-job.longhorn.io/"
	recurringJobGroupLabelPrefix = "recurring-job-group.longhorn.io/"
	labelValueEnabled            = "enabled"
)

// isDefaultClass is the annotation of the cluster's default StorageClass.
const isDefaultClass = "storageclass.kubernetes.io/is-default-class"

// syncProvisioning plays the CSI external-provisioner with Longhorn's CSI controller
// (csi/controller_server.go CreateVolume, csi/util.go getVolumeOptions) and the PV
// controller's binding: an unbound claim of a StorageClass whose provisioner is
// driver.longhorn.io gets a Longhorn Volume and a PV named pvc-<claim uid> (the CSI
// volumeHandle), both bound to the claim. The StorageClass's numberOfReplicas and
// recurringJobSelector are honoured; volumeBindingMode WaitForFirstConsumer is not (no
// scheduler picks a node here), such claims stay pending.
func (l *loop) syncProvisioning(ctx context.Context) error {
	pvcs, err := l.m.cs.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var errs []error
	for i := range pvcs.Items {
		pvc := &pvcs.Items[i]
		if pvc.Spec.VolumeName != "" || pvc.DeletionTimestamp != nil {
			continue
		}
		sc, err := l.storageClassOf(ctx, pvc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if sc == nil || sc.Provisioner != CSIDriver {
			continue
		}
		if sc.VolumeBindingMode != nil && *sc.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer {
			continue
		}
		if err := l.provision(ctx, pvc, sc); err != nil {
			errs = append(errs, fmt.Errorf("claim %s/%s: %w", pvc.Namespace, pvc.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (l *loop) storageClassOf(ctx context.Context, pvc *corev1.PersistentVolumeClaim) (*storagev1.StorageClass, error) {
	if pvc.Spec.StorageClassName != nil {
		if *pvc.Spec.StorageClassName == "" {
			return nil, nil // explicitly no class: static binding only
		}
		sc, err := l.m.cs.StorageV1().StorageClasses().Get(ctx, *pvc.Spec.StorageClassName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return sc, err
	}
	list, err := l.m.cs.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range list.Items {
		if list.Items[i].Annotations[isDefaultClass] == "true" {
			return &list.Items[i], nil
		}
	}
	return nil, nil
}

func (l *loop) provision(ctx context.Context, pvc *corev1.PersistentVolumeClaim, sc *storagev1.StorageClass) error {
	name := "pvc-" + string(pvc.UID)
	req := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	size := roundUpSize(max(req.Value(), minimalVolumeSize))
	if _, err := l.res(VolumeGVR).Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		if err := l.createProvisionedVolume(ctx, name, size, pvc, sc); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}

	pv, err := l.m.cs.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		pv, err = l.m.cs.CoreV1().PersistentVolumes().Create(ctx, provisionedPV(name, size, pvc, sc), metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("PV %s: %w", name, err)
	}
	// The PV controller's bind: the claim names the volume, both report Bound.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		c, err := l.m.cs.CoreV1().PersistentVolumeClaims(pvc.Namespace).Get(ctx, pvc.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if c.Spec.VolumeName != "" {
			return nil
		}
		c.Spec.VolumeName = name
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations["pv.kubernetes.io/bind-completed"] = "yes"
		c.Annotations["pv.kubernetes.io/bound-by-controller"] = "yes"
		c.Annotations["volume.kubernetes.io/storage-provisioner"] = CSIDriver
		_, err = l.m.cs.CoreV1().PersistentVolumeClaims(pvc.Namespace).Update(ctx, c, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if pv.Status.Phase != corev1.VolumeBound {
		pv.Status.Phase = corev1.VolumeBound
		if _, err := l.m.cs.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("PV %s status: %w", name, err)
		}
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		c, err := l.m.cs.CoreV1().PersistentVolumeClaims(pvc.Namespace).Get(ctx, pvc.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		c.Status.Phase = corev1.ClaimBound
		c.Status.AccessModes = pv.Spec.AccessModes
		c.Status.Capacity = pv.Spec.Capacity
		_, err = l.m.cs.CoreV1().PersistentVolumeClaims(pvc.Namespace).UpdateStatus(ctx, c, metav1.UpdateOptions{})
		if err == nil {
			l.m.logf("claim %s/%s bound to the new volume %s", pvc.Namespace, pvc.Name, name)
		}
		return err
	})
}

// createProvisionedVolume is the Volume the CSI controller asks longhorn-manager for, with
// the StorageClass parameters it reads (csi/util.go getVolumeOptions) and the recurring-job
// labels manager/volume.go Create derives from recurringJobSelector.
func (l *loop) createProvisionedVolume(ctx context.Context, name string, size int64, pvc *corev1.PersistentVolumeClaim, sc *storagev1.StorageClass) error {
	replicas := int64(3)
	if v, ok, _ := l.m.getSetting(ctx, "default-replica-count"); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			replicas = n
		}
	}
	if v, ok := sc.Parameters["numberOfReplicas"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("invalid parameter numberOfReplicas: %w", err)
		}
		replicas = n
	}
	labels := map[string]any{}
	if raw, ok := sc.Parameters["recurringJobSelector"]; ok {
		var sel []struct {
			Name    string `json:"name"`
			IsGroup bool   `json:"isGroup"`
		}
		if err := json.Unmarshal([]byte(raw), &sel); err != nil {
			return fmt.Errorf("invalid json format of recurringJobSelector: %w", err)
		}
		for _, j := range sel {
			prefix := recurringJobLabelPrefix
			if j.IsGroup {
				prefix = recurringJobGroupLabelPrefix
			}
			labels[prefix+j.Name] = labelValueEnabled
		}
	}
	access := "rwo"
	for _, m := range pvc.Spec.AccessModes {
		if m == corev1.ReadWriteMany {
			access = "rwx"
		}
	}
	spec := map[string]any{
		"size": strconv.FormatInt(size, 10), "numberOfReplicas": replicas, "frontend": "blockdev", "dataEngine": "v1",
		"accessMode": access, "backupTargetName": DefaultBackupTarget, "staleReplicaTimeout": int64(30),
	}
	if v, ok := sc.Parameters["staleReplicaTimeout"]; ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			spec["staleReplicaTimeout"] = n
		}
	}
	// A StorageClass with fromBackup restores every new volume from that backup (csi/util.go).
	if from := sc.Parameters["fromBackup"]; from != "" {
		spec["fromBackup"] = from
	} else if !l.data.Exists(name) {
		if err := l.data.Create(name, size); err != nil {
			return err
		}
	}
	v, err := l.res(VolumeGVR).Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": group + "/" + version, "kind": "Volume",
		"metadata": map[string]any{"name": name, "namespace": l.m.ns, "labels": labels, "finalizers": []any{finalizer}},
		"spec":     spec,
	}}, metav1.CreateOptions{})
	if err != nil {
		_ = l.data.Delete(name) // best effort; the next round creates both again
		return fmt.Errorf("volume %s: %w", name, err)
	}
	if spec["fromBackup"] == nil {
		v.Object["status"] = map[string]any{"state": "detached", "robustness": "unknown", "ownerID": "node-1", "currentNodeID": ""}
		if _, err := l.res(VolumeGVR).UpdateStatus(ctx, v, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("volume %s status: %w", name, err)
		}
	}
	l.m.logf("volume %s (%d bytes, %d replicas) provisioned for claim %s/%s", name, size, replicas, pvc.Namespace, pvc.Name)
	return nil
}

// provisionedPV is what the external-provisioner creates from CreateVolume's answer.
func provisionedPV(name string, size int64, pvc *corev1.PersistentVolumeClaim, sc *storagev1.StorageClass) *corev1.PersistentVolume {
	reclaim := corev1.PersistentVolumeReclaimDelete
	if sc.ReclaimPolicy != nil {
		reclaim = *sc.ReclaimPolicy
	}
	fsType := sc.Parameters["fsType"]
	if fsType == "" {
		fsType = "ext4"
	}
	attrs := map[string]string{}
	for k, v := range sc.Parameters {
		attrs[k] = v
	}
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": CSIDriver}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: *resource.NewQuantity(size, resource.BinarySI)},
			AccessModes:                   pvc.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              sc.Name,
			MountOptions:                  sc.MountOptions,
			VolumeMode:                    pvc.Spec.VolumeMode,
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: pvc.Namespace, Name: pvc.Name,
				UID: pvc.UID, ResourceVersion: pvc.ResourceVersion},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: CSIDriver, VolumeHandle: name, FSType: fsType, VolumeAttributes: attrs,
			}},
		},
	}
}
