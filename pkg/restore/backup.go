package restore

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/talforge/talforge/pkg/backuptarget"
	"github.com/talforge/talforge/pkg/longhorn"
)

// Backup is one Longhorn backup of a volume, as the Backup object reports it.
type Backup struct {
	Name   string `json:"name"`
	Volume string `json:"volume"`
	// URL is what a Volume's spec.fromBackup takes: <target>?backup=<name>&volume=<volume>.
	URL   string `json:"url,omitempty"`
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	// Created is when the upload finished (status.backupCreatedAt).
	Created time.Time `json:"created,omitzero"`
	// VolumeSize is the backed-up volume's size in bytes.
	VolumeSize int64 `json:"volumeSize,omitempty"`
	// Snapshot is the snapshot the backup was taken from.
	Snapshot string `json:"snapshot,omitempty"`
	// Size is the data the backup holds, in bytes (status.size).
	Size int64 `json:"size,omitempty"`
	// Claim is the claim the volume was bound to when it was backed up, from the backup label
	// KubernetesStatus that Longhorn sets (nil for a volume that was never bound).
	Claim *backuptarget.KubernetesStatus `json:"claim,omitempty"`
}

// ClaimName is the claim as namespace/name, or "" when the backup records none.
func (b *Backup) ClaimName() string {
	if b == nil || b.Claim == nil {
		return ""
	}
	return b.Claim.Namespace + "/" + b.Claim.PVCName
}

func backupFrom(u *unstructured.Unstructured) Backup {
	s := func(path ...string) string {
		v, _, _ := unstructured.NestedString(u.Object, append([]string{"status"}, path...)...)
		return v
	}
	b := Backup{Name: u.GetName(), Volume: s("volumeName"), URL: s("url"), State: s("state"), Error: s("error"), Snapshot: s("snapshotName")}
	if b.Volume == "" {
		b.Volume = u.GetLabels()[longhorn.BackupVolumeLabel]
	}
	if t, err := time.Parse(time.RFC3339, s("backupCreatedAt")); err == nil {
		b.Created = t.UTC()
	}
	b.VolumeSize, _ = strconv.ParseInt(s("volumeSize"), 10, 64)
	b.Size, _ = strconv.ParseInt(s("size"), 10, 64)
	labels, _, _ := unstructured.NestedStringMap(u.Object, "status", "labels")
	if len(labels) == 0 {
		labels, _, _ = unstructured.NestedStringMap(u.Object, "spec", "labels")
	}
	b.Claim, _ = backuptarget.ParseKubernetesStatus(labels)
	return b
}

// Backups lists the Completed backups of the default backup target, newest first per
// volume, keyed by volume.
func (c *Client) Backups(ctx context.Context) (map[string][]Backup, error) {
	list, err := c.kube.Resource(longhorn.BackupGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Longhorn backups: %w", err)
	}
	out := map[string][]Backup{}
	for i := range list.Items {
		u := &list.Items[i]
		if t := u.GetLabels()[longhorn.BackupTargetLabel]; t != "" && t != longhorn.DefaultBackupTarget {
			continue
		}
		b := backupFrom(u)
		if b.State != longhorn.BackupStateCompleted || b.URL == "" || b.Volume == "" {
			continue
		}
		out[b.Volume] = append(out[b.Volume], b)
	}
	for _, bs := range out {
		sort.Slice(bs, func(i, j int) bool {
			if !bs[i].Created.Equal(bs[j].Created) {
				return bs[i].Created.After(bs[j].Created)
			}
			return bs[i].Name > bs[j].Name
		})
	}
	return out, nil
}

// Latest returns the volume's newest Completed backup, or nil when Longhorn lists none.
func (c *Client) Latest(ctx context.Context, volume string) (*Backup, error) {
	all, err := c.Backups(ctx)
	if err != nil {
		return nil, err
	}
	if bs := all[volume]; len(bs) > 0 {
		return &bs[0], nil
	}
	return nil, nil
}

// LatestForClaim returns the newest Completed backup recorded for the claim namespace/name,
// across every backup volume: a claim re-created after a rebuild is a new volume (pvc-<uid>),
// and Longhorn records the claim in each backup's KubernetesStatus label, which is how its UI
// offers "use previous PVC name". static, the profile's optional Longhorn volume name, also
// matches backups of that volume. nil when there is none.
func (c *Client) LatestForClaim(ctx context.Context, namespace, name, static string) (*Backup, error) {
	all, err := c.Backups(ctx)
	if err != nil {
		return nil, err
	}
	var latest *Backup
	for vol, bs := range all {
		for i := range bs {
			b := &bs[i]
			match := (b.Claim != nil && b.Claim.Namespace == namespace && b.Claim.PVCName == name) || (static != "" && vol == static)
			if match && (latest == nil || b.Created.After(latest.Created) || (b.Created.Equal(latest.Created) && b.Name > latest.Name)) {
				latest = b
			}
		}
	}
	return latest, nil
}

// RequestSync asks Longhorn to list the backup target again now rather than at its next
// poll, as the UI's refresh does (BackupTarget spec.syncRequestedAt).
func (c *Client) RequestSync(ctx context.Context) error {
	_, err := c.requestSync(ctx)

	return err
}

// requestSync is RequestSync returning the request time it wrote (second resolution, as
// Longhorn stores it).
func (c *Client) requestSync(ctx context.Context) (time.Time, error) {
	at := c.opts.Now().UTC().Truncate(time.Second)

	return at, c.patchSyncRequest(ctx, at)
}

// synced reports whether the backup target has finished a sync at or after at: Longhorn syncs
// while spec.syncRequestedAt is after status.lastSyncedAt, so the two in that order mean done.
func (c *Client) synced(ctx context.Context, at time.Time) (bool, string, error) {
	bt, err := c.kube.Resource(longhorn.BackupTargetGVR).Get(ctx, longhorn.DefaultBackupTarget, metav1.GetOptions{})
	if err != nil {
		return false, "", fmt.Errorf("backup target %s: %w", longhorn.DefaultBackupTarget, err)
	}

	last, _, _ := unstructured.NestedString(bt.Object, "status", "lastSyncedAt")

	t, err := time.Parse(time.RFC3339, last)
	if err != nil || t.Before(at) {
		return false, fmt.Sprintf("Longhorn has not finished listing the backup target since %s (last synced %q)", at.Format(time.RFC3339), last), nil
	}

	return true, "", nil
}

func (c *Client) patchSyncRequest(ctx context.Context, at time.Time) error {
	patch := fmt.Sprintf(`{"spec":{"syncRequestedAt":%q}}`, at.Format(time.RFC3339))
	_, err := c.kube.Resource(longhorn.BackupTargetGVR).Patch(ctx, longhorn.DefaultBackupTarget, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return fmt.Errorf("there is no BackupTarget %q: install Longhorn with its backup target first", longhorn.DefaultBackupTarget)
	}
	if err != nil {
		return fmt.Errorf("request a backup target sync: %w", err)
	}
	return nil
}

// BackupVolume takes an on-demand backup of a volume and waits until Longhorn reports it
// Completed: a Snapshot, then a Backup of that snapshot labelled with the volume and, like
// every backup Longhorn's own API makes, with the claim the volume is bound to (label
// KubernetesStatus), so the backup can be found by its claim after a rebuild.
func (c *Client) BackupVolume(ctx context.Context, volume string) (*Backup, error) {
	b, err := c.backup(ctx, volume, nil)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// backup is BackupVolume with extra labels on the Snapshot and Backup objects (a DR test marks
// what it creates, so that it deletes only that).
func (c *Client) backup(ctx context.Context, volume string, extra map[string]string) (*Backup, error) {
	vol, err := c.kube.Resource(longhorn.VolumeGVR).Get(ctx, volume, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("there is no Longhorn volume %s", volume)
		}
		return nil, fmt.Errorf("read volume %s: %w", volume, err)
	}
	suffix := randomSuffix(16)
	snapName, backupName := "talforge-"+suffix, "backup-"+suffix
	objLabels := func(more map[string]any) map[string]any {
		m := map[string]any{longhorn.ManagedByLabel: longhorn.ManagedBy}
		for k, v := range extra {
			m[k] = v
		}
		for k, v := range more {
			m[k] = v
		}
		return m
	}
	snap := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "longhorn.io/v1beta2", "kind": "Snapshot",
		"metadata": map[string]any{"name": snapName, "namespace": Namespace, "labels": objLabels(nil)},
		"spec":     map[string]any{"volume": volume, "createSnapshot": true},
	}}
	if _, err := c.kube.Resource(longhorn.SnapshotGVR).Create(ctx, snap, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("volume %s: create snapshot %s: %w", volume, snapName, err)
	}
	err = c.kube.Wait(ctx, c.opts.BackupTimeout, fmt.Sprintf("volume %s: snapshot %s", volume, snapName), func(ctx context.Context) (bool, string, error) {
		u, err := c.kube.Resource(longhorn.SnapshotGVR).Get(ctx, snapName, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		if msg, _, _ := unstructured.NestedString(u.Object, "status", "error"); msg != "" {
			return false, "", fmt.Errorf("snapshot failed, Longhorn reports: %s", msg)
		}
		ready, _, _ := unstructured.NestedBool(u.Object, "status", "readyToUse")
		return ready, "not ready to use yet", nil
	})
	if err != nil {
		return &Backup{Volume: volume, Snapshot: snapName}, err
	}
	specLabels := map[string]any{longhorn.ManagedByLabel: longhorn.ManagedBy}
	if ks, ok := kubernetesStatus(vol); ok {
		specLabels[backuptarget.KubernetesStatusLabel] = ks
	}
	b := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "longhorn.io/v1beta2", "kind": "Backup",
		"metadata": map[string]any{"name": backupName, "namespace": Namespace, "labels": objLabels(map[string]any{
			longhorn.BackupVolumeLabel: volume, longhorn.BackupTargetLabel: longhorn.DefaultBackupTarget})},
		"spec": map[string]any{"snapshotName": snapName, "labels": specLabels},
	}}
	if _, err := c.kube.Resource(longhorn.BackupGVR).Create(ctx, b, metav1.CreateOptions{}); err != nil {
		return &Backup{Volume: volume, Snapshot: snapName}, fmt.Errorf("volume %s: create backup %s: %w", volume, backupName, err)
	}
	c.logf("volume %s: backing up snapshot %s as %s", volume, snapName, backupName)
	var got Backup
	err = c.kube.Wait(ctx, c.opts.BackupTimeout, fmt.Sprintf("volume %s: backup %s", volume, backupName), func(ctx context.Context) (bool, string, error) {
		u, err := c.kube.Resource(longhorn.BackupGVR).Get(ctx, backupName, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		got = backupFrom(u)
		switch got.State {
		case longhorn.BackupStateCompleted:
			return true, "", nil
		case longhorn.BackupStateError:
			return false, "", fmt.Errorf("backup failed, Longhorn reports: %s", got.Error)
		case "":
			return false, "not started", nil
		}
		progress, _, _ := unstructured.NestedInt64(u.Object, "status", "progress")
		return false, fmt.Sprintf("%s, %d%%", got.State, progress), nil
	})
	if err != nil {
		return &Backup{Volume: volume, Snapshot: snapName, Name: backupName}, err
	}
	if got.Volume == "" {
		got.Volume = volume
	}
	if got.Snapshot == "" {
		got.Snapshot = snapName
	}
	return &got, nil
}

// kubernetesStatus renders a volume's status.kubernetesStatus as Longhorn's API puts it in
// the KubernetesStatus backup label (longhorn-manager api/snapshot.go: json.Marshal of the
// struct, only when it is not empty).
func kubernetesStatus(vol *unstructured.Unstructured) (string, bool) {
	m, ok, _ := unstructured.NestedMap(vol.Object, "status", "kubernetesStatus")
	if !ok || len(m) == 0 {
		return "", false
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return "", false
	}
	var ks backuptarget.KubernetesStatus
	if err := json.Unmarshal(raw, &ks); err != nil || (ks.Namespace == "" && ks.PVName == "") {
		return "", false
	}
	out, err := json.Marshal(ks)
	if err != nil {
		return "", false
	}
	return string(out), true
}

// Volume is what Longhorn reports about one of its volumes.
type Volume struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	Robustness string `json:"robustness"`
	// Size in bytes.
	Size int64 `json:"size"`
	// FromBackup is the backup URL the volume was restored from, if any.
	FromBackup string `json:"fromBackup,omitempty"`
	// Restoring is true while Longhorn restores it.
	Restoring bool `json:"restoring,omitempty"`
}

// Volumes lists Longhorn's volumes, sorted by name.
func (c *Client) Volumes(ctx context.Context) ([]Volume, error) {
	list, err := c.kube.Resource(longhorn.VolumeGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Longhorn volumes: %w", err)
	}
	out := make([]Volume, 0, len(list.Items))
	for i := range list.Items {
		u := &list.Items[i]
		v := Volume{Name: u.GetName()}
		v.State, _, _ = unstructured.NestedString(u.Object, "status", "state")
		v.Robustness, _, _ = unstructured.NestedString(u.Object, "status", "robustness")
		v.FromBackup, _, _ = unstructured.NestedString(u.Object, "spec", "fromBackup")
		v.Restoring, _, _ = unstructured.NestedBool(u.Object, "status", "restoreRequired")
		size, _, _ := unstructured.NestedString(u.Object, "spec", "size")
		v.Size, _ = strconv.ParseInt(size, 10, 64)
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
