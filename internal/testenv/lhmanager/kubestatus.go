// status.kubernetesStatus of Volumes, following their PV, its claim and the claim's pods
// (controller/kubernetes_pv_controller.go).

package lhmanager

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

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
