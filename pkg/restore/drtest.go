package restore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/talforge/talforge/pkg/claim"
	"github.com/talforge/talforge/pkg/longhorn"
)

// Labels that mark what a DR test creates. DRTestLabel carries the run's ID: cleanup deletes
// only objects with this run's ID, so it never touches anything it did not create.
const (
	DRTestLabel = "talforge.dev/dr-test"
	// DRVerifyLabel marks the data-verification Job.
	DRVerifyLabel = "talforge.dev/dr-verify"
)

// DROptions tune a disaster-recovery test.
type DROptions struct {
	// Target names the volume the backup is restored into (default <volume>-drtest-<random>).
	// A volume of that name must not exist.
	Target string
	// Keep leaves what the test created (restored volume, snapshot, backup, clone, Job) in place
	// for inspection.
	Keep bool
	// VerifyData compares the data: a Job mounts, read-only, the restored volume and a clone of
	// the very snapshot that was backed up (spec.dataSource snap://<volume>/<snapshot>) and
	// compares every file's SHA-256.
	VerifyData bool
	// VerifyImage is the Job's image (default DefaultVerifyImage).
	VerifyImage string
	// VerifyTimeout bounds the Job (default 30m).
	VerifyTimeout time.Duration
}

// Check is one comparison of a DR test.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// DRResult is the outcome of a disaster-recovery test.
type DRResult struct {
	// Claim is the declared claim tested (namespace/name), empty for a bare volume.
	Claim  string `json:"claim,omitempty"`
	Volume string `json:"volume"`
	Backup Backup `json:"backup"`
	// BackupTook is the time from asking for the backup to Longhorn reporting it Completed.
	BackupTook time.Duration `json:"backupTook"`
	// Restored is the volume the backup was restored into.
	Restored string `json:"restored"`
	// RestoreTook is the time to restore: from creating the volume to Longhorn reporting the
	// restore done.
	RestoreTook time.Duration `json:"restoreTook"`
	// Bytes is the size of the restored volume.
	Bytes  int64   `json:"bytes"`
	Checks []Check `json:"checks"`
	// DataVerified reports whether the data itself was compared (VerifyData).
	DataVerified bool `json:"dataVerified"`
	// Kept reports whether the test's objects were left in place.
	Kept bool `json:"kept"`
	// Left lists what could not be cleaned up (delete it by hand).
	Left []string `json:"left,omitempty"`
}

// OK reports whether every check passed.
func (r *DRResult) OK() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return len(r.Checks) > 0
}

// drRun is one DR test: its ID and what it created, in creation order.
type drRun struct {
	id      string
	labels  map[string]string
	created []drObject
}

type drObject struct {
	kind, namespace, name string
	delete                func(ctx context.Context, name string, opts metav1.DeleteOptions) error
	get                   func(ctx context.Context, name string) (metav1.Object, error)
}

func (r *drRun) labelsAny() map[string]any {
	m := map[string]any{}
	for k, v := range r.labels {
		m[k] = v
	}
	return m
}

// DRTestClaim runs DRTest on the Longhorn volume behind a declared claim.
func (c *Client) DRTestClaim(ctx context.Context, d Declared, opts DROptions) (*DRResult, error) {
	r, err := claim.Resolve(ctx, c.kube.CS, d.Namespace, d.Claim, d.Name)
	if err != nil {
		return nil, err
	}
	if r.Volume == "" {
		why := "does not exist"
		if r.Exists {
			why = "is not bound to a volume yet (" + r.Phase + ")"
		}
		return nil, fmt.Errorf("claim %s %s: deploy the workload that uses it first (`talforge status` lists the declared claims)", d, why)
	}
	// Longhorn records the claim on the volume (status.kubernetesStatus) shortly after the
	// claim binds; a backup taken before that would not carry the claim, and a rebuild could
	// not find it. Wait for it, as the test is about exactly that backup.
	err = c.kube.Wait(ctx, c.opts.SyncTimeout, fmt.Sprintf("volume %s: Longhorn records claim %s", r.Volume, d), func(ctx context.Context) (bool, string, error) {
		v, err := c.kube.Resource(longhorn.VolumeGVR).Get(ctx, r.Volume, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		ns, _, _ := unstructured.NestedString(v.Object, "status", "kubernetesStatus", "namespace")
		pvc, _, _ := unstructured.NestedString(v.Object, "status", "kubernetesStatus", "pvcName")
		return ns+"/"+pvc == d.String(), fmt.Sprintf("status.kubernetesStatus names %q", ns+"/"+pvc), nil
	})
	if err != nil {
		return nil, err
	}
	res, err := c.drTest(ctx, r.Volume, d.String(), opts)
	if res != nil {
		res.Claim = d.String()
	}
	return res, err
}

// DRTest proves on a live cluster that a volume can be restored: it backs the volume up (with
// the claim label, as Longhorn's API does), restores that backup into a new volume, checks
// what Longhorn reports, and with VerifyData compares the data against a clone of the backed-up
// snapshot. It then deletes what it created — the Job, claims and volumes, the on-demand backup
// (which Longhorn removes from the bucket) and its snapshot — unless Keep, and only objects
// labelled with this run's ID. The source volume is only read (and snapshotted).
func (c *Client) DRTest(ctx context.Context, volume string, opts DROptions) (*DRResult, error) {
	return c.drTest(ctx, volume, "", opts)
}

// drTest is DRTest; claim, when set, is the claim the backup must record.
func (c *Client) drTest(ctx context.Context, volume, claim string, opts DROptions) (res *DRResult, err error) {
	src, err := c.kube.Resource(longhorn.VolumeGVR).Get(ctx, volume, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("there is no Longhorn volume %s (see `talforge status` for the cluster's volumes)", volume)
	}
	if err != nil {
		return nil, fmt.Errorf("read volume %s: %w", volume, err)
	}
	srcSize, _, _ := unstructured.NestedString(src.Object, "spec", "size")
	replicas, _, _ := unstructured.NestedInt64(src.Object, "spec", "numberOfReplicas")
	if replicas < 1 {
		replicas = 1
	}
	target := opts.Target
	if target == "" {
		target = drTestName(volume, "-drtest-")
	}
	if _, err := c.kube.Resource(longhorn.VolumeGVR).Get(ctx, target, metav1.GetOptions{}); err == nil {
		return nil, fmt.Errorf("volume %s exists already and this test did not create it: choose another target name", target)
	} else if !apierrors.IsNotFound(err) {
		return nil, err
	}

	run := &drRun{id: randomSuffix(10)}
	run.labels = map[string]string{longhorn.ManagedByLabel: longhorn.ManagedBy, DRTestLabel: run.id}
	res = &DRResult{Volume: volume, Restored: target, Kept: opts.Keep}
	defer func() {
		if !opts.Keep {
			res.Left = c.cleanupRun(context.WithoutCancel(ctx), run)
		}
	}()

	start := c.opts.Now()
	b, err := c.backup(ctx, volume, run.labels)
	c.track(run, longhorn.SnapshotGVR, "Snapshot", b.snapshotOr(""))
	if b != nil {
		c.track(run, longhorn.BackupGVR, "Backup", b.Name)
	}
	if err != nil {
		return res, err
	}
	res.Backup, res.BackupTook = *b, c.opts.Now().Sub(start)
	c.logf("volume %s: backup %s completed in %s", volume, b.Name, res.BackupTook.Round(time.Millisecond))

	size, _ := strconv.ParseInt(srcSize, 10, 64)
	start = c.opts.Now()
	if err := c.createFromBackup(ctx, target, Declared{Size: size, Replicas: int(replicas), Labels: run.labels}, b, nil); err != nil {
		return res, err
	}
	c.track(run, longhorn.VolumeGVR, "Volume", target)
	if err := c.waitRestored(ctx, target); err != nil {
		return res, err
	}
	res.RestoreTook = c.opts.Now().Sub(start)
	c.logf("volume %s: restored into %s in %s", volume, target, res.RestoreTook.Round(time.Millisecond))

	restored, err := c.kube.Resource(longhorn.VolumeGVR).Get(ctx, target, metav1.GetOptions{})
	if err != nil {
		return res, fmt.Errorf("read restored volume %s: %w", target, err)
	}
	got, _, _ := unstructured.NestedString(restored.Object, "spec", "size")
	res.Bytes, _ = strconv.ParseInt(got, 10, 64)
	res.Checks = compare(src, restored, b, claim)
	if opts.VerifyData {
		check, err := c.verifyData(ctx, run, volume, target, b, size, opts)
		if err != nil {
			return res, err
		}
		res.Checks, res.DataVerified = append(res.Checks, check), true
	}
	return res, nil
}

func (b *Backup) snapshotOr(def string) string {
	if b == nil || b.Snapshot == "" {
		return def
	}
	return b.Snapshot
}

// track records an object the run created, for cleanup.
func (c *Client) track(run *drRun, gvr schema.GroupVersionResource, kind, name string) {
	if name == "" {
		return
	}
	ri := c.kube.Resource(gvr)
	run.created = append(run.created, drObject{kind: kind, namespace: Namespace, name: name,
		delete: func(ctx context.Context, name string, opts metav1.DeleteOptions) error {
			return ri.Delete(ctx, name, opts)
		},
		get: func(ctx context.Context, name string) (metav1.Object, error) {
			return ri.Get(ctx, name, metav1.GetOptions{})
		}})
}

// cleanupRun deletes what the run created, newest first. Before each delete it reads the
// object and checks that it carries this run's label, and it deletes with the UID it read as
// a precondition, so an object that was replaced in between is not deleted either. It
// returns what it could not delete.
func (c *Client) cleanupRun(ctx context.Context, run *drRun) []string {
	var left []string
	for i := len(run.created) - 1; i >= 0; i-- {
		o := run.created[i]
		what := fmt.Sprintf("%s %s/%s", o.kind, o.namespace, o.name)
		live, err := o.get(ctx, o.name)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			left = append(left, fmt.Sprintf("%s (%v)", what, err))
			continue
		}
		if live.GetLabels()[DRTestLabel] != run.id {
			c.logf("%s does not carry %s=%s: not deleted (talforge deletes only what this test created)", what, DRTestLabel, run.id)
			left = append(left, what+" (not created by this test)")
			continue
		}
		uid := live.GetUID()
		policy := metav1.DeletePropagationBackground
		err = o.delete(ctx, o.name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: &policy})
		if err != nil && !apierrors.IsNotFound(err) {
			left = append(left, fmt.Sprintf("%s (%v)", what, err))
			continue
		}
		// Gone means gone: a Longhorn volume waits for longhorn-manager to delete its data
		// (its finalizer), and the test promises to leave nothing behind.
		err = c.kube.Wait(ctx, c.opts.SyncTimeout, "deletion of "+what, func(ctx context.Context) (bool, string, error) {
			cur, err := o.get(ctx, o.name)
			switch {
			case apierrors.IsNotFound(err):
				return true, "", nil
			case err != nil:
				return false, "", err
			case cur.GetUID() != uid:
				return true, "", nil // something else of that name, not ours
			}
			return false, fmt.Sprintf("still there (finalizers %v)", cur.GetFinalizers()), nil
		})
		if err != nil {
			left = append(left, fmt.Sprintf("%s (%v)", what, err))
			continue
		}
		c.logf("deleted %s", what)
	}
	return left
}

// compare checks what Longhorn can attest without attaching the volumes: the restore
// finished and is not faulted, the restored volume has the source's size and the backup's
// recorded size, it came from exactly this backup, and the backup records the claim.
func compare(src, restored *unstructured.Unstructured, b *Backup, claim string) []Check {
	str := func(u *unstructured.Unstructured, path ...string) string {
		v, _, _ := unstructured.NestedString(u.Object, path...)
		return v
	}
	var checks []Check
	done, why, err := restoreState(restored)
	switch {
	case err != nil:
		checks = append(checks, Check{Name: "restore finished", Detail: err.Error()})
	case !done:
		checks = append(checks, Check{Name: "restore finished", Detail: why})
	default:
		checks = append(checks, Check{Name: "restore finished", OK: true, Detail: "Longhorn cleared restoreRequired; volume " + str(restored, "status", "state")})
	}
	srcSize, gotSize := str(src, "spec", "size"), str(restored, "spec", "size")
	checks = append(checks, Check{Name: "size", OK: srcSize == gotSize && strconv.FormatInt(b.VolumeSize, 10) == srcSize,
		Detail: fmt.Sprintf("source %s bytes, backup %d bytes, restored %s bytes", srcSize, b.VolumeSize, gotSize)})
	from, last := str(restored, "spec", "fromBackup"), str(restored, "status", "lastBackup")
	checks = append(checks, Check{Name: "backup", OK: from == b.URL && last == b.Name,
		Detail: fmt.Sprintf("restored from %s, Longhorn reports last backup %s", from, last)})
	want := claim
	if ns := str(src, "status", "kubernetesStatus", "namespace"); want == "" && ns != "" {
		want = ns + "/" + str(src, "status", "kubernetesStatus", "pvcName")
	}
	if want != "" {
		checks = append(checks, Check{Name: "claim recorded", OK: b.ClaimName() == want,
			Detail: fmt.Sprintf("the backup records claim %q, the volume is bound to %s (a rebuild finds backups by this label)", b.ClaimName(), want)})
	}
	return checks
}

// trackCore records a core or batch object the run created.
func (c *Client) trackCore(run *drRun, kind, namespace, name string) {
	o := drObject{kind: kind, namespace: namespace, name: name}
	switch kind {
	case "PersistentVolume":
		o.delete = c.kube.CS.CoreV1().PersistentVolumes().Delete
		o.get = func(ctx context.Context, n string) (metav1.Object, error) {
			return c.kube.CS.CoreV1().PersistentVolumes().Get(ctx, n, metav1.GetOptions{})
		}
	case "PersistentVolumeClaim":
		o.delete = c.kube.CS.CoreV1().PersistentVolumeClaims(namespace).Delete
		o.get = func(ctx context.Context, n string) (metav1.Object, error) {
			return c.kube.CS.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, n, metav1.GetOptions{})
		}
	case "Job":
		o.delete = c.kube.CS.BatchV1().Jobs(namespace).Delete
		o.get = func(ctx context.Context, n string) (metav1.Object, error) {
			return c.kube.CS.BatchV1().Jobs(namespace).Get(ctx, n, metav1.GetOptions{})
		}
	default:
		return
	}
	run.created = append(run.created, o)
}

// drTestName is a fresh volume name within Kubernetes' 63 characters.
func drTestName(volume, infix string) string {
	suffix := infix + randomSuffix(6)
	if len(volume)+len(suffix) > 63 {
		volume = strings.TrimRight(volume[:63-len(suffix)], "-")
	}
	return volume + suffix
}
