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

	"github.com/talforge/talforge/pkg/profile"
)

// Declared is a volume the profile declares (longhorn.volumes), resolved against its
// StorageClass.
type Declared struct {
	// Name is the Longhorn volume's and the PersistentVolume's name.
	Name string `json:"name"`
	// Namespace and Claim name the PersistentVolumeClaim bound to it.
	Namespace    string `json:"namespace"`
	Claim        string `json:"claim"`
	StorageClass string `json:"storageClass"`
	// Size in bytes.
	Size     int64  `json:"size"`
	Replicas int    `json:"replicas"`
	FSType   string `json:"fsType"`
	// Labels are the volume's recurring-job labels.
	Labels map[string]string `json:"labels,omitempty"`
}

// Declarations resolves the profile's declared volumes, in profile order.
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
			Replicas: l.ReplicaCount, FSType: profile.DefaultStorageClassFSType, Labels: map[string]string{}}
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
		for _, g := range v.RecurringJobGroups {
			d.Labels["recurring-job-group.longhorn.io/"+g] = "enabled"
		}
		for _, j := range v.RecurringJobs {
			d.Labels["recurring-job.longhorn.io/"+j] = "enabled"
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

// Result reports one declared volume.
type Result struct {
	Volume Declared `json:"volume"`
	Action Action   `json:"action"`
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

// Restore brings one declared volume back: the Volume from its latest backup (unless it
// exists), then its PersistentVolume and the claim bound to it by name.
func (c *Client) Restore(ctx context.Context, d Declared) (*Result, error) {
	start := c.opts.Now()
	res := &Result{Volume: d}
	v, err := c.lh(volumeGVR).Get(ctx, d.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		b, err := c.waitForBackup(ctx, d.Name)
		if err != nil {
			return nil, err
		}
		res.Backup, res.Action = b, ActionRestored
		if err := c.createFromBackup(ctx, d, b); err != nil {
			return nil, err
		}
		c.logf("volume %s: restoring from backup %s (%s)", d.Name, b.Name, b.Created.Format(time.RFC3339))
	case err != nil:
		return nil, fmt.Errorf("volume %s: %w", d.Name, err)
	default:
		from, _, _ := unstructured.NestedString(v.Object, "spec", "fromBackup")
		if from == "" {
			res.Action = ActionExists
			c.logf("volume %s exists and was not restored from a backup: left as it is", d.Name)
			break
		}
		res.Action = ActionAlreadyRestored
		res.Backup = c.backupForURL(ctx, d.Name, from)
	}
	if res.Action != ActionExists {
		if err := c.waitRestored(ctx, d.Name); err != nil {
			return nil, err
		}
		res.Took = c.opts.Now().Sub(start)
	}
	if res.PV, err = c.ensurePV(ctx, d); err != nil {
		return nil, err
	}
	if res.PVC, err = c.ensurePVC(ctx, d); err != nil {
		return nil, err
	}
	return res, nil
}

// waitForBackup finds the volume's latest backup. It first has Longhorn list the backup target
// again and waits for that listing to finish: a fresh cluster pulls backups from the bucket one
// by one, and choosing before the listing is complete could restore an older backup.
func (c *Client) waitForBackup(ctx context.Context, volume string) (*Backup, error) {
	requested, err := c.requestSync(ctx)
	if err != nil {
		return nil, err
	}

	var latest *Backup

	err = c.poll(ctx, c.opts.SyncTimeout, fmt.Sprintf("volume %s: find its latest backup", volume), func() (bool, string, error) {
		if done, why, err := c.synced(ctx, requested); !done || err != nil {
			return false, why, err
		}

		b, err := c.Latest(ctx, volume)
		if err != nil {
			return false, "", err
		}

		if b == nil {
			return false, "Longhorn lists no completed backup of it yet", nil
		}

		latest = b

		return true, "", nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w (check that longhorn.backup.target is the bucket the old cluster backed up to, and `talforge status` for the backup target)", ErrNoBackup, err)
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

func (c *Client) createFromBackup(ctx context.Context, d Declared, b *Backup) error {
	size := max(d.Size, b.VolumeSize)
	if b.VolumeSize > d.Size {
		c.logf("volume %s: the backup is of a %d-byte volume, larger than the declared %d bytes: restoring at the backup's size", d.Name, b.VolumeSize, d.Size)
	}
	labels := map[string]any{managedByLabel: managedBy}
	for k, v := range d.Labels {
		labels[k] = v
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "longhorn.io/v1beta2", "kind": "Volume",
		"metadata": map[string]any{"name": d.Name, "namespace": Namespace, "labels": labels},
		"spec": map[string]any{
			"size": strconv.FormatInt(size, 10), "numberOfReplicas": int64(d.Replicas), "frontend": "blockdev",
			"dataEngine": "v1", "accessMode": "rwo", "fromBackup": b.URL, "backupTargetName": defaultBackupTarget,
			"staleReplicaTimeout": int64(30),
		},
	}}
	if _, err := c.lh(volumeGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("volume %s: create from backup %s: %w", d.Name, b.Name, err)
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
		if m["type"] == restoreConditionType && m["reason"] == restoreFailureReason {
			return false, "", fmt.Errorf("restore failed, Longhorn reports: %v", m["message"])
		}
	}
	if robustness == volumeRobustnessFaulted {
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
	return c.poll(ctx, c.opts.RestoreTimeout, fmt.Sprintf("volume %s: restore", volume), func() (bool, string, error) {
		u, err := c.lh(volumeGVR).Get(ctx, volume, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		return restoreState(u)
	})
}

func (c *Client) ensureNamespace(ctx context.Context, name string) error {
	_, err := c.cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{managedByLabel: managedBy}}}
	if _, err := c.cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

func (c *Client) volumeSize(ctx context.Context, d Declared) int64 {
	u, err := c.lh(volumeGVR).Get(ctx, d.Name, metav1.GetOptions{})
	if err != nil {
		return d.Size
	}
	s, _, _ := unstructured.NestedString(u.Object, "spec", "size")
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > d.Size {
		return n
	}
	return d.Size
}

// ensurePV creates the volume's PersistentVolume, pre-bound to the declared claim.
func (c *Client) ensurePV(ctx context.Context, d Declared) (string, error) {
	pvs := c.cs.CoreV1().PersistentVolumes()
	live, err := pvs.Get(ctx, d.Name, metav1.GetOptions{})
	if err == nil {
		if live.Spec.CSI == nil || live.Spec.CSI.Driver != csiDriver || live.Spec.CSI.VolumeHandle != d.Name {
			return "", fmt.Errorf("PersistentVolume %s exists but is not the Longhorn volume %s: delete it or rename the volume in the profile", d.Name, d.Name)
		}
		if ref := live.Spec.ClaimRef; ref != nil && (ref.Namespace != d.Namespace || ref.Name != d.Claim) {
			return "", fmt.Errorf("PersistentVolume %s is bound to the claim %s/%s, not to %s/%s as the profile declares", d.Name, ref.Namespace, ref.Name, d.Namespace, d.Claim)
		}
		return "exists", nil
	}
	if !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("read PersistentVolume %s: %w", d.Name, err)
	}
	size := resource.NewQuantity(c.volumeSize(ctx, d), resource.BinarySI)
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        d.Name,
			Labels:      map[string]string{managedByLabel: managedBy},
			Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": csiDriver},
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
				Driver: csiDriver, VolumeHandle: d.Name, FSType: d.FSType,
				VolumeAttributes: map[string]string{"numberOfReplicas": strconv.Itoa(d.Replicas), "staleReplicaTimeout": "30"},
			}},
		},
	}
	if _, err := pvs.Create(ctx, pv, metav1.CreateOptions{FieldManager: managedBy}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create PersistentVolume %s: %w", d.Name, err)
	}
	return "created", nil
}

// ensurePVC creates the declared claim with spec.volumeName = the volume.
func (c *Client) ensurePVC(ctx context.Context, d Declared) (string, error) {
	if err := c.ensureNamespace(ctx, d.Namespace); err != nil {
		return "", err
	}
	pvcs := c.cs.CoreV1().PersistentVolumeClaims(d.Namespace)
	live, err := pvcs.Get(ctx, d.Claim, metav1.GetOptions{})
	if err == nil {
		if live.Spec.VolumeName != d.Name {
			bound := live.Spec.VolumeName
			if bound == "" {
				bound = "no volume yet"
			}
			return "", fmt.Errorf("PersistentVolumeClaim %s/%s exists with %s instead of the restored volume %s: "+
				"a workload created it before the restore; scale the workload down, delete the claim and run again", d.Namespace, d.Claim, bound, d.Name)
		}
		return "exists", nil
	}
	if !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("read PersistentVolumeClaim %s/%s: %w", d.Namespace, d.Claim, err)
	}
	size := resource.NewQuantity(c.volumeSize(ctx, d), resource.BinarySI)
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: d.Claim, Namespace: d.Namespace, Labels: map[string]string{managedByLabel: managedBy}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: new(d.StorageClass),
			VolumeName:       d.Name,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: *size}},
		},
	}
	if _, err := pvcs.Create(ctx, pvc, metav1.CreateOptions{FieldManager: managedBy}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create PersistentVolumeClaim %s/%s: %w", d.Namespace, d.Claim, err)
	}
	return "created", nil
}
