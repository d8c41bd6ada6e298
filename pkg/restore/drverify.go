package restore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/talforge/talforge/pkg/longhorn"
)

// DefaultVerifyImage is the image of the data-verification Job: it needs sh, find, sort,
// sha256sum and cmp, which busybox has.
const DefaultVerifyImage = "busybox:1.37"

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
	if _, err := c.kube.Resource(longhorn.VolumeGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		return check, fmt.Errorf("clone snapshot %s of volume %s into %s: %w", b.Snapshot, volume, clone, err)
	}
	c.track(run, longhorn.VolumeGVR, "Volume", clone)
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
	if _, err := c.kube.CS.BatchV1().Jobs(Namespace).Create(ctx, job, metav1.CreateOptions{FieldManager: longhorn.FieldManager}); err != nil {
		return check, fmt.Errorf("create the verification Job: %w", err)
	}
	c.trackCore(run, "Job", Namespace, job.Name)
	timeout := opts.VerifyTimeout
	if timeout <= 0 {
		timeout = 30 * time.Minute
	}
	var verdict string
	err := c.kube.Wait(ctx, timeout, "data verification Job "+job.Name, func(ctx context.Context) (bool, string, error) {
		j, err := c.kube.CS.BatchV1().Jobs(Namespace).Get(ctx, job.Name, metav1.GetOptions{})
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
	return c.kube.Wait(ctx, c.opts.RestoreTimeout, "volume "+name+": clone", func(ctx context.Context) (bool, string, error) {
		u, err := c.kube.Resource(longhorn.VolumeGVR).Get(ctx, name, metav1.GetOptions{})
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
	pods, err := c.kube.CS.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + job})
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
