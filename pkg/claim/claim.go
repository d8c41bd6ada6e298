package claim

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// CSIDriver is the name Longhorn's CSI driver registers (longhorn-manager csi/identity_server.go).
const CSIDriver = "driver.longhorn.io"

// ErrNotLonghorn is wrapped when a claim is bound to a volume another driver provides.
var ErrNotLonghorn = errors.New("not a Longhorn volume")

// Resolution is where a declared claim stands on a live cluster.
type Resolution struct {
	Namespace string `json:"namespace"`
	Claim     string `json:"claim"`
	// Exists reports whether the PersistentVolumeClaim exists.
	Exists bool `json:"exists"`
	// Phase is the claim's status.phase (Pending, Bound, Lost).
	Phase string `json:"phase,omitempty"`
	// PV is the PersistentVolume the claim names in spec.volumeName.
	PV string `json:"pv,omitempty"`
	// Volume is the Longhorn volume behind the claim: the PV's CSI volumeHandle, or, for a
	// claim that does not exist (yet), the statically declared volume name if the profile
	// gives one. Empty when nothing is known.
	Volume string `json:"volume,omitempty"`
}

// String names the claim as kubectl does.
func (r Resolution) String() string { return r.Namespace + "/" + r.Claim }

// Resolve follows namespace/name to its Longhorn volume: PVC spec.volumeName → PV → CSI
// volumeHandle. static is the profile's optional Longhorn volume name for a statically
// provisioned volume; it is the answer while the claim does not exist, and a bound claim
// must agree with it. A claim that exists but is not bound has no volume.
func Resolve(ctx context.Context, cs kubernetes.Interface, namespace, name, static string) (Resolution, error) {
	r := Resolution{Namespace: namespace, Claim: name}
	pvc, err := cs.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		r.Volume = static
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("claim %s: %w", r, err)
	}
	r.Exists, r.Phase, r.PV = true, string(pvc.Status.Phase), pvc.Spec.VolumeName
	if r.PV == "" {
		return r, nil // not bound (yet): whatever the profile names, this claim has no data
	}
	pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, r.PV, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return r, fmt.Errorf("claim %s names the PersistentVolume %s, which does not exist", r, r.PV)
	}
	if err != nil {
		return r, fmt.Errorf("claim %s: PersistentVolume %s: %w", r, r.PV, err)
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != CSIDriver {
		driver := "no CSI driver"
		if pv.Spec.CSI != nil {
			driver = "CSI driver " + pv.Spec.CSI.Driver
		}
		return r, fmt.Errorf("claim %s is bound to PersistentVolume %s (%s): %w; use a Longhorn StorageClass for it or remove it from longhorn.volumes",
			r, r.PV, driver, ErrNotLonghorn)
	}
	r.Volume = pv.Spec.CSI.VolumeHandle
	if static != "" && r.Volume != static {
		return r, fmt.Errorf("claim %s is bound to the Longhorn volume %s, but the profile names the volume %s: fix longhorn.volumes[].name or leave it out", r, r.Volume, static)
	}
	return r, nil
}
