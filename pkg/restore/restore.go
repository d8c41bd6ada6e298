package restore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/talforge/talforge/pkg/claim"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
)

// Declared is a claim the profile declares (longhorn.volumes), resolved against its
// StorageClass.
type Declared struct {
	// Namespace and Claim name the PersistentVolumeClaim that holds the data.
	Namespace string `json:"namespace"`
	Claim     string `json:"claim"`
	// Name is the Longhorn volume's name for a statically provisioned volume (the profile's
	// optional longhorn.volumes[].name); empty for a volume a StorageClass provisions, whose
	// name is found through the claim.
	Name         string `json:"name,omitempty"`
	StorageClass string `json:"storageClass"`
	// Size in bytes.
	Size     int64  `json:"size"`
	Replicas int    `json:"replicas"`
	FSType   string `json:"fsType"`
	// Labels are the volume's recurring-job labels.
	Labels map[string]string `json:"labels,omitempty"`
}

// String names the claim as kubectl does.
func (d Declared) String() string { return d.Namespace + "/" + d.Claim }

// Declarations resolves the profile's declared claims, in profile order.
func Declarations(c *profile.Cluster) ([]Declared, error) {
	l := c.Longhorn
	if l == nil {
		return nil, nil
	}
	var out []Declared
	for i, v := range l.Volumes {
		size, err := profile.ParseSize(v.Size)
		if err != nil {
			if size, err = profile.ParseSize(strings.TrimSuffix(v.Size, "i")); err != nil {
				return nil, fmt.Errorf("%s: longhorn.volumes[%d].size: %w", c.File(), i, err)
			}
		}
		d := Declared{Name: v.Name, Namespace: v.Namespace, Claim: v.Claim, StorageClass: v.StorageClass, Size: int64(size),
			Replicas: l.ReplicaCount, FSType: profile.DefaultStorageClassFSType, Labels: longhorn.VolumeLabels(v)}
		if d.Claim == "" {
			d.Claim = d.Name
		}
		if d.StorageClass == "" {
			d.StorageClass = profile.DefaultVolumeStorageClass
		}
		for _, sc := range l.StorageClasses {
			if sc.Name == d.StorageClass {
				if sc.Replicas > 0 {
					d.Replicas = sc.Replicas
				}
				if sc.FSType != "" {
					d.FSType = sc.FSType
				}
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// Action is what Restore did to one volume.
type Action string

// Restore actions.
const (
	// ActionRestored: the volume was created from its latest backup and restored.
	ActionRestored Action = "restored"
	// ActionAlreadyRestored: an earlier (possibly interrupted) run created it from a backup.
	ActionAlreadyRestored Action = "already restored"
	// ActionExists: the volume exists and was not made from a backup; it is left alone.
	ActionExists Action = "exists"
)

// Result reports one declared claim.
type Result struct {
	Claim Declared `json:"claim"`
	// Volume is the Longhorn volume (and PersistentVolume) that holds the claim's data.
	Volume string `json:"volume"`
	Action Action `json:"action"`
	// Backup is the backup it was restored from (nil for ActionExists).
	Backup *Backup `json:"backup,omitempty"`
	// Took is the time from asking for the restore to Longhorn reporting it done.
	Took time.Duration `json:"took"`
	// PV and PVC are "created" or "exists".
	PV  string `json:"pv"`
	PVC string `json:"pvc"`
}

// ErrNoBackup is wrapped when a declared volume has no backup to restore from.
var ErrNoBackup = errors.New("no backup")

// RestoreAll restores every declared volume in order; done is called after each. It stops at
// the first failure (the later volumes are untouched and the next run continues).
func (c *Client) RestoreAll(ctx context.Context, ds []Declared, done func(Result)) ([]Result, error) {
	var out []Result
	for _, d := range ds {
		r, err := c.Restore(ctx, d)
		if err != nil {
			return out, err
		}
		out = append(out, *r)
		if done != nil {
			done(*r)
		}
	}
	return out, nil
}

// claimAnnotation marks a Volume that talforge restores for a claim, so that an interrupted
// restore is found again before its claim exists.
const claimAnnotation = "talforge.dev/claim"

// Restore brings one declared claim back. A claim that exists and is bound is left as it is
// (it already has its data, restored by an earlier run or provisioned by its workload).
// Otherwise the claim's latest backup — found by the claim Longhorn records in every backup
// (label KubernetesStatus), across all backup volumes — is restored into a Longhorn volume
// named as the backed-up one was (so its PersistentVolume keeps its old name), then a
// PersistentVolume and the claim bound to it by name.
func (c *Client) Restore(ctx context.Context, d Declared) (*Result, error) {
	start := c.opts.Now()
	res := &Result{Claim: d}
	r, err := claim.Resolve(ctx, c.kube.CS, d.Namespace, d.Claim, d.Name)
	if err != nil {
		return nil, err
	}
	if r.Exists {
		if r.Volume == "" {
			return nil, fmt.Errorf("PersistentVolumeClaim %s exists with no volume yet (%s): a workload created it before the restore; "+
				"scale the workload down, delete the claim and run again", d, r.Phase)
		}
		res.Volume = r.Volume
		v, err := c.kube.Resource(longhorn.VolumeGVR).Get(ctx, r.Volume, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("claim %s: Longhorn volume %s: %w", d, r.Volume, err)
		}
		from, _, _ := unstructured.NestedString(v.Object, "spec", "fromBackup")
		if from == "" {
			res.Action, res.PV, res.PVC = ActionExists, "exists", "exists"
			c.logf("claim %s exists, bound to volume %s that was not restored from a backup: left as it is", d, r.Volume)
			return res, nil
		}
		res.Action, res.Backup = ActionAlreadyRestored, c.backupForURL(ctx, r.Volume, from)
		if err := c.waitRestored(ctx, r.Volume); err != nil {
			return nil, err
		}
		res.PV, res.PVC = "exists", "exists"
		return res, nil
	}

	name, from, err := c.pendingRestore(ctx, d)
	if err != nil {
		return nil, err
	}
	if name != "" {
		res.Volume, res.Action, res.Backup = name, ActionAlreadyRestored, c.backupForURL(ctx, name, from)
	} else {
		b, err := c.waitForBackup(ctx, d)
		if err != nil {
			return nil, err
		}
		name = restoreName(d, b)
		if _, err := c.kube.Resource(longhorn.VolumeGVR).Get(ctx, name, metav1.GetOptions{}); err == nil {
			return nil, fmt.Errorf("claim %s: a Longhorn volume %s exists already and is not bound to the claim: "+
				"talforge restores into a volume named after the backed-up one and never overwrites a volume; rename or delete it and run again", d, name)
		} else if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("claim %s: volume %s: %w", d, name, err)
		}
		res.Volume, res.Backup, res.Action = name, b, ActionRestored
		if err := c.createFromBackup(ctx, name, d, b, map[string]any{claimAnnotation: d.String()}); err != nil {
			return nil, err
		}
		c.logf("claim %s: restoring volume %s from backup %s (%s)", d, name, b.Name, b.Created.Format(time.RFC3339))
	}
	if err := c.waitRestored(ctx, name); err != nil {
		return nil, err
	}
	res.Took = c.opts.Now().Sub(start)
	if res.PV, err = c.ensurePV(ctx, name, d, nil); err != nil {
		return nil, err
	}
	if res.PVC, err = c.ensurePVC(ctx, name, d, nil); err != nil {
		return nil, err
	}
	return res, nil
}

// restoreName is the volume a claim's backup is restored into: the declared static name, else
// the PersistentVolume the claim was bound to when it was backed up (Longhorn names a CSI
// volume after its PV), else the backed-up volume's name.
func restoreName(d Declared, b *Backup) string {
	switch {
	case d.Name != "":
		return d.Name
	case b.Claim != nil && b.Claim.PVName != "":
		return b.Claim.PVName
	}
	return b.Volume
}

// pendingRestore finds a Volume an earlier, interrupted run created from a backup for the
// claim: its name and spec.fromBackup.
func (c *Client) pendingRestore(ctx context.Context, d Declared) (string, string, error) {
	list, err := c.kube.Resource(longhorn.VolumeGVR).List(ctx, metav1.ListOptions{LabelSelector: longhorn.ManagedByLabel + "=" + longhorn.ManagedBy})
	if err != nil {
		return "", "", fmt.Errorf("claim %s: list Longhorn volumes: %w", d, err)
	}
	for i := range list.Items {
		u := &list.Items[i]
		if u.GetAnnotations()[claimAnnotation] != d.String() {
			continue
		}
		if from, _, _ := unstructured.NestedString(u.Object, "spec", "fromBackup"); from != "" {
			return u.GetName(), from, nil
		}
	}
	return "", "", nil
}

// waitForBackup finds the claim's latest backup. It first has Longhorn list the backup target
// again and waits for that listing to finish: a fresh cluster pulls backups from the bucket one
// by one, and choosing before the listing is complete could restore an older backup.
func (c *Client) waitForBackup(ctx context.Context, d Declared) (*Backup, error) {
	requested, err := c.requestSync(ctx)
	if err != nil {
		return nil, err
	}

	var latest *Backup

	err = c.kube.Wait(ctx, c.opts.SyncTimeout, fmt.Sprintf("claim %s: find its latest backup", d), func(ctx context.Context) (bool, string, error) {
		if done, why, err := c.synced(ctx, requested); !done || err != nil {
			return false, why, err
		}

		b, err := c.LatestForClaim(ctx, d.Namespace, d.Claim, d.Name)
		if err != nil {
			return false, "", err
		}

		if b == nil {
			return false, "Longhorn lists no completed backup recorded for this claim yet", nil
		}

		latest = b

		return true, "", nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w (check that longhorn.backup.target is the bucket the old cluster backed up to; `talforge backup list` shows which claims it has backups of)", ErrNoBackup, err)
	}

	return latest, nil
}

func (c *Client) backupForURL(ctx context.Context, volume, url string) *Backup {
	all, err := c.Backups(ctx)
	if err == nil {
		for _, b := range all[volume] {
			if b.URL == url {
				return &b
			}
		}
	}
	return &Backup{Volume: volume, URL: url}
}

// createFromBackup creates the Volume name restored from b, with d's replicas and labels.
// AlreadyExists is an error: a volume of that name is not one this call created.
func (c *Client) createFromBackup(ctx context.Context, name string, d Declared, b *Backup, annotations map[string]any) error {
	// The restored volume has the backed-up volume's size, as Longhorn's UI restores it: the
	// data and its filesystem are that size. The declared size is what a new claim asks for.
	size := b.VolumeSize
	switch {
	case size <= 0:
		size = d.Size
	case d.Size > 0 && size != d.Size:
		c.logf("volume %s: the backup is of a %d-byte volume, the profile declares %d bytes: restoring at the backup's size (expand the claim afterwards to grow it)", name, size, d.Size)
	}
	labels := map[string]any{longhorn.ManagedByLabel: longhorn.ManagedBy}
	for k, v := range d.Labels {
		labels[k] = v
	}
	meta := map[string]any{"name": name, "namespace": Namespace, "labels": labels}
	if len(annotations) > 0 {
		meta["annotations"] = annotations
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "longhorn.io/v1beta2", "kind": "Volume",
		"metadata": meta,
		"spec": map[string]any{
			"size": strconv.FormatInt(size, 10), "numberOfReplicas": int64(d.Replicas), "frontend": "blockdev",
			"dataEngine": "v1", "accessMode": "rwo", "fromBackup": b.URL, "backupTargetName": longhorn.DefaultBackupTarget,
			"staleReplicaTimeout": int64(30),
		},
	}}
	if _, err := c.kube.Resource(longhorn.VolumeGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("volume %s: create from backup %s: %w", name, b.Name, err)
	}
	return nil
}

// restoreState reads a restoring volume: done when Longhorn cleared restoreRequired, an
// error when the restore failed.
func restoreState(u *unstructured.Unstructured) (bool, string, error) {
	status, _, _ := unstructured.NestedMap(u.Object, "status")
	state, _ := status["state"].(string)
	robustness, _ := status["robustness"].(string)
	conds, _ := status["conditions"].([]any)
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == longhorn.VolumeConditionRestore && m["reason"] == longhorn.VolumeReasonRestoreFailure {
			return false, "", fmt.Errorf("restore failed, Longhorn reports: %v", m["message"])
		}
	}
	if robustness == longhorn.VolumeRobustnessFaulted {
		return false, "", errors.New("restore failed: the volume faulted")
	}
	required, has := status["restoreRequired"].(bool)
	switch {
	case !has:
		return false, "Longhorn has not started the restore yet", nil
	case required:
		return false, fmt.Sprintf("restoring (volume %s)", state), nil
	case state != "detached" && state != "attached":
		return false, "restored, volume " + state, nil
	}
	return true, "", nil
}

func (c *Client) waitRestored(ctx context.Context, volume string) error {
	return c.kube.Wait(ctx, c.opts.RestoreTimeout, fmt.Sprintf("volume %s: restore", volume), func(ctx context.Context) (bool, string, error) {
		u, err := c.kube.Resource(longhorn.VolumeGVR).Get(ctx, volume, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		return restoreState(u)
	})
}

func (c *Client) ensureNamespace(ctx context.Context, name string) error {
	_, err := c.kube.CS.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{longhorn.ManagedByLabel: longhorn.ManagedBy}}}
	if _, err := c.kube.CS.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// volumeSize is the Longhorn volume's size, which its PV and claim state (the declared size
// when the volume cannot be read).
func (c *Client) volumeSize(ctx context.Context, name string, d Declared) int64 {
	u, err := c.kube.Resource(longhorn.VolumeGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return d.Size
	}
	s, _, _ := unstructured.NestedString(u.Object, "spec", "size")
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
		return n
	}
	return d.Size
}

// ensurePV creates the volume's PersistentVolume (named as the volume, as Longhorn's CSI
// driver names them), pre-bound to the declared claim.
func (c *Client) ensurePV(ctx context.Context, name string, d Declared, extra map[string]string) (string, error) {
	pvs := c.kube.CS.CoreV1().PersistentVolumes()
	live, err := pvs.Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		if live.Spec.CSI == nil || live.Spec.CSI.Driver != longhorn.CSIDriver || live.Spec.CSI.VolumeHandle != name {
			return "", fmt.Errorf("PersistentVolume %s exists but is not the Longhorn volume %s: delete it and run again", name, name)
		}
		if ref := live.Spec.ClaimRef; ref != nil && (ref.Namespace != d.Namespace || ref.Name != d.Claim) {
			return "", fmt.Errorf("PersistentVolume %s is bound to the claim %s/%s, not to %s as the profile declares", name, ref.Namespace, ref.Name, d)
		}
		return "exists", nil
	}
	if !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("read PersistentVolume %s: %w", name, err)
	}
	size := resource.NewQuantity(c.volumeSize(ctx, name, d), resource.BinarySI)
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      withLabels(extra),
			Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": longhorn.CSIDriver},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: *size},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              d.StorageClass,
			VolumeMode:                    new(corev1.PersistentVolumeFilesystem),
			ClaimRef: &corev1.ObjectReference{
				APIVersion: "v1", Kind: "PersistentVolumeClaim", Namespace: d.Namespace, Name: d.Claim,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: longhorn.CSIDriver, VolumeHandle: name, FSType: d.FSType,
				VolumeAttributes: map[string]string{"numberOfReplicas": strconv.Itoa(d.Replicas), "staleReplicaTimeout": "30"},
			}},
		},
	}
	if _, err := pvs.Create(ctx, pv, metav1.CreateOptions{FieldManager: longhorn.FieldManager}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create PersistentVolume %s: %w", name, err)
	}
	return "created", nil
}

// ensurePVC creates the declared claim with spec.volumeName = the volume.
func (c *Client) ensurePVC(ctx context.Context, name string, d Declared, extra map[string]string) (string, error) {
	if err := c.ensureNamespace(ctx, d.Namespace); err != nil {
		return "", err
	}
	pvcs := c.kube.CS.CoreV1().PersistentVolumeClaims(d.Namespace)
	live, err := pvcs.Get(ctx, d.Claim, metav1.GetOptions{})
	if err == nil {
		if live.Spec.VolumeName != name {
			bound := live.Spec.VolumeName
			if bound == "" {
				bound = "no volume yet"
			}
			return "", fmt.Errorf("PersistentVolumeClaim %s/%s exists with %s instead of the restored volume %s: "+
				"a workload created it before the restore; scale the workload down, delete the claim and run again", d.Namespace, d.Claim, bound, name)
		}
		return "exists", nil
	}
	if !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("read PersistentVolumeClaim %s/%s: %w", d.Namespace, d.Claim, err)
	}
	size := resource.NewQuantity(c.volumeSize(ctx, name, d), resource.BinarySI)
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: d.Claim, Namespace: d.Namespace, Labels: withLabels(extra)},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: new(d.StorageClass),
			VolumeName:       name,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: *size}},
		},
	}
	if _, err := pvcs.Create(ctx, pvc, metav1.CreateOptions{FieldManager: longhorn.FieldManager}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create PersistentVolumeClaim %s/%s: %w", d.Namespace, d.Claim, err)
	}
	return "created", nil
}

// withLabels is talforge's managed-by label plus extra.
func withLabels(extra map[string]string) map[string]string {
	m := map[string]string{longhorn.ManagedByLabel: longhorn.ManagedBy}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// ClaimVolume is the Longhorn volume behind a declared claim on this cluster, "" when the
// claim is not bound to one.
func (c *Client) ClaimVolume(ctx context.Context, d Declared) (string, error) {
	r, err := claim.Resolve(ctx, c.kube.CS, d.Namespace, d.Claim, d.Name)
	if err != nil {
		return "", err
	}
	if !r.Exists && d.Name != "" {
		if _, err := c.kube.Resource(longhorn.VolumeGVR).Get(ctx, d.Name, metav1.GetOptions{}); err != nil {
			return "", nil // a static volume that does not exist is "no volume"
		}
	}
	return r.Volume, nil
}
