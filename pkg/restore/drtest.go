package restore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/talforge/talforge/pkg/claim"
)

// Labels that mark what a DR test creates. DRTestLabel carries the run's ID: cleanup deletes
// only objects with this run's ID, so it never touches anything it did not create.
const (
	DRTestLabel = "talforge.dev/dr-test"
	// DRVerifyLabel marks the data-verification Job.
	DRVerifyLabel = "talforge.dev/dr-verify"
)

// DefaultVerifyImage is the image of the data-verification Job: it needs sh, find, sort,
// sha256sum and cmp, which busybox has.
const DefaultVerifyImage = "busybox:1.37"

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
	r, err := claim.Resolve(ctx, c.cs, d.Namespace, d.Claim, d.Name)
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
	err = c.poll(ctx, c.opts.SyncTimeout, fmt.Sprintf("volume %s: Longhorn records claim %s", r.Volume, d), func() (bool, string, error) {
		v, err := c.lh(volumeGVR).Get(ctx, r.Volume, metav1.GetOptions{})
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
	src, err := c.lh(volumeGVR).Get(ctx, volume, metav1.GetOptions{})
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
	if _, err := c.lh(volumeGVR).Get(ctx, target, metav1.GetOptions{}); err == nil {
		return nil, fmt.Errorf("volume %s exists already and this test did not create it: choose another target name", target)
	} else if !apierrors.IsNotFound(err) {
		return nil, err
	}

	run := &drRun{id: randomSuffix(10)}
	run.labels = map[string]string{managedByLabel: managedBy, DRTestLabel: run.id}
	res = &DRResult{Volume: volume, Restored: target, Kept: opts.Keep}
	defer func() {
		if !opts.Keep {
			res.Left = c.cleanupRun(context.WithoutCancel(ctx), run)
		}
	}()

	start := c.opts.Now()
	b, err := c.backup(ctx, volume, run.labels)
	c.track(run, snapshotGVR, "Snapshot", b.snapshotOr(""))
	if b != nil {
		c.track(run, backupGVR, "Backup", b.Name)
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
	c.track(run, volumeGVR, "Volume", target)
	if err := c.waitRestored(ctx, target); err != nil {
		return res, err
	}
	res.RestoreTook = c.opts.Now().Sub(start)
	c.logf("volume %s: restored into %s in %s", volume, target, res.RestoreTook.Round(time.Millisecond))

	restored, err := c.lh(volumeGVR).Get(ctx, target, metav1.GetOptions{})
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
	ri := c.lh(gvr)
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

// verifyData clones the backed-up snapshot into a new volume, binds it and the restored
// volume to claims, and runs a Job that compares every file's checksum on both, read-only.
func (c *Client) verifyData(ctx context.Context, run *drRun, volume, restored string, b *Backup, size int64, opts DROptions) (Check, error) {
	check := Check{Name: "data"}
	clone := drTestName(volume, "-drsrc-")
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "longhorn.io/v1beta2", "kind": "Volume",
		"metadata": map[string]any{"name": clone, "namespace": Namespace, "labels": run.labelsAny()},
		"spec": map[string]any{
			"size": strconv.FormatInt(size, 10), "numberOfReplicas": int64(1), "frontend": "blockdev", "dataEngine": "v1",
			"accessMode": "rwo", "dataSource": "snap://" + volume + "/" + b.Snapshot, "staleReplicaTimeout": int64(30),
		},
	}}
	if _, err := c.lh(volumeGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		return check, fmt.Errorf("clone snapshot %s of volume %s into %s: %w", b.Snapshot, volume, clone, err)
	}
	c.track(run, volumeGVR, "Volume", clone)
	if err := c.waitCloned(ctx, clone); err != nil {
		return check, err
	}

	claims := map[string]string{}
	for role, vol := range map[string]string{"restored": restored, "source": clone} {
		pvc := "talforge-drtest-" + run.id + "-" + role
		d := Declared{Namespace: Namespace, Claim: pvc, Size: size, FSType: "ext4", Replicas: 1}
		if _, err := c.ensurePV(ctx, vol, d, run.labels); err != nil {
			return check, err
		}
		c.trackCore(run, "PersistentVolume", "", vol)
		if _, err := c.ensurePVC(ctx, vol, d, run.labels); err != nil {
			return check, err
		}
		c.trackCore(run, "PersistentVolumeClaim", Namespace, pvc)
		claims[role] = pvc
	}

	job := verifyJob("talforge-drtest-"+run.id, run.labels, claims, opts)
	if _, err := c.cs.BatchV1().Jobs(Namespace).Create(ctx, job, metav1.CreateOptions{FieldManager: managedBy}); err != nil {
		return check, fmt.Errorf("create the verification Job: %w", err)
	}
	c.trackCore(run, "Job", Namespace, job.Name)
	timeout := opts.VerifyTimeout
	if timeout <= 0 {
		timeout = 30 * time.Minute
	}
	var verdict string
	err := c.poll(ctx, timeout, "data verification Job "+job.Name, func() (bool, string, error) {
		j, err := c.cs.BatchV1().Jobs(Namespace).Get(ctx, job.Name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		for _, cond := range j.Status.Conditions {
			if cond.Status != corev1.ConditionTrue {
				continue
			}
			switch cond.Type {
			case batchv1.JobComplete:
				check.OK, verdict = true, "every file's SHA-256 matches the backed-up snapshot"
				return true, "", nil
			case batchv1.JobFailed:
				verdict = "the restored data differs from the backed-up snapshot: " + cond.Message
				return true, "", nil
			}
		}
		if why := c.podProblem(ctx, job.Name, opts); why != "" {
			return false, "", errors.New(why)
		}
		return false, fmt.Sprintf("running (%d active)", j.Status.Active), nil
	})
	if err != nil {
		return check, err
	}
	check.Detail = verdict
	return check, nil
}

// waitCloned waits until Longhorn has copied the snapshot into the clone (status.cloneStatus,
// longhorn-manager controller/volume_controller.go).
func (c *Client) waitCloned(ctx context.Context, name string) error {
	return c.poll(ctx, c.opts.RestoreTimeout, "volume "+name+": clone", func() (bool, string, error) {
		u, err := c.lh(volumeGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		state, _, _ := unstructured.NestedString(u.Object, "status", "cloneStatus", "state")
		switch state {
		case "completed":
			return true, "", nil
		case "failed":
			return false, "", errors.New("the clone failed, Longhorn reports its cloneStatus as failed")
		}
		return false, "clone " + orNone(state), nil
	})
}

func orNone(s string) string {
	if s == "" {
		return "not started"
	}
	return s
}

// podProblem reports a pod of the Job that cannot start, above all an image that cannot be
// pulled, with what to do about it.
func (c *Client) podProblem(ctx context.Context, job string, opts DROptions) string {
	pods, err := c.cs.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + job})
	if err != nil {
		return ""
	}
	for _, p := range pods.Items {
		for _, st := range p.Status.ContainerStatuses {
			if w := st.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff" || w.Reason == "InvalidImageName") {
				return fmt.Sprintf("the verification Job cannot pull image %s (%s: %s): make it reachable from the nodes or pass another with --verify-image",
					st.Image, w.Reason, w.Message)
			}
		}
	}
	return ""
}

// trackCore records a core or batch object the run created.
func (c *Client) trackCore(run *drRun, kind, namespace, name string) {
	o := drObject{kind: kind, namespace: namespace, name: name}
	switch kind {
	case "PersistentVolume":
		o.delete = c.cs.CoreV1().PersistentVolumes().Delete
		o.get = func(ctx context.Context, n string) (metav1.Object, error) {
			return c.cs.CoreV1().PersistentVolumes().Get(ctx, n, metav1.GetOptions{})
		}
	case "PersistentVolumeClaim":
		o.delete = c.cs.CoreV1().PersistentVolumeClaims(namespace).Delete
		o.get = func(ctx context.Context, n string) (metav1.Object, error) {
			return c.cs.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, n, metav1.GetOptions{})
		}
	case "Job":
		o.delete = c.cs.BatchV1().Jobs(namespace).Delete
		o.get = func(ctx context.Context, n string) (metav1.Object, error) {
			return c.cs.BatchV1().Jobs(namespace).Get(ctx, n, metav1.GetOptions{})
		}
	default:
		return
	}
	run.created = append(run.created, o)
}

// verifyScript lists every regular file's SHA-256 on both volumes, relative paths sorted,
// and compares the lists; lost+found (made by mkfs) is left out.
const verifyScript = `set -eu
sums() { cd "$1" && find . -path ./lost+found -prune -o -type f -print0 | xargs -0 -r sha256sum | sort -k2; }
sums /source > /tmp/source.sums
sums /restored > /tmp/restored.sums
if cmp -s /tmp/source.sums /tmp/restored.sums; then
  echo "checksums equal: $(wc -l < /tmp/source.sums) files"
else
  echo "checksums differ:"; diff /tmp/source.sums /tmp/restored.sums | head -20
  exit 1
fi`

func verifyJob(name string, labels map[string]string, claims map[string]string, opts DROptions) *batchv1.Job {
	image := opts.VerifyImage
	if image == "" {
		image = DefaultVerifyImage
	}
	l := map[string]string{DRVerifyLabel: "true"}
	for k, v := range labels {
		l[k] = v
	}
	deadline := int64(opts.VerifyTimeout / time.Second)
	if deadline <= 0 {
		deadline = 1800
	}
	var volumes []corev1.Volume
	var mounts []corev1.VolumeMount
	for _, role := range []string{"restored", "source"} {
		volumes = append(volumes, corev1.Volume{Name: role, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claims[role], ReadOnly: true}}})
		mounts = append(mounts, corev1.VolumeMount{Name: role, MountPath: "/" + role, ReadOnly: true})
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: l},
		Spec: batchv1.JobSpec{
			BackoffLimit:          new(int32(0)),
			ActiveDeadlineSeconds: &deadline,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: l},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Volumes:       volumes,
					Containers: []corev1.Container{{
						Name: "compare", Image: image, Command: []string{"sh", "-c", verifyScript},
						VolumeMounts:             mounts,
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
					}},
				},
			},
		},
	}
}

// drTestName is a fresh volume name within Kubernetes' 63 characters.
func drTestName(volume, infix string) string {
	suffix := infix + randomSuffix(6)
	if len(volume)+len(suffix) > 63 {
		volume = strings.TrimRight(volume[:63-len(suffix)], "-")
	}
	return volume + suffix
}
