package lhmanager

import (
	"context"
	"errors"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/talforge/talforge/internal/testenv/lhdata"
)

// VerifyJobLabel marks talforge's data-verification Job (`dr-test --verify-data`): its pod
// mounts the restored volume's claim as volume "restored" and the source's as "source" and
// compares their checksums.
const VerifyJobLabel = "talforge.dev/dr-verify"

// Pod volume names of the verification Job.
const (
	verifyRestored = "restored"
	verifySource   = "source"
)

// MsgChecksumsDiffer is the Failed condition message of a verification Job whose volumes
// differ.
const MsgChecksumsDiffer = "checksums differ"

// syncVerifyJobs stands in for the kubelet running talforge's verification Job (no kubelet
// runs here): once both claims are bound to Longhorn volumes whose data is there and not
// being restored, the Job completes when the two volumes hold the same bytes and fails with
// "checksums differ" otherwise.
func (l *loop) syncVerifyJobs(ctx context.Context) error {
	jobs, err := l.m.cs.BatchV1().Jobs("").List(ctx, metav1.ListOptions{LabelSelector: VerifyJobLabel + "=true"})
	if err != nil {
		return err
	}
	var errs []error
	for i := range jobs.Items {
		j := &jobs.Items[i]
		if jobFinished(j) || j.DeletionTimestamp != nil {
			continue
		}
		claims := map[string]string{}
		for _, v := range j.Spec.Template.Spec.Volumes {
			if v.PersistentVolumeClaim != nil && (v.Name == verifyRestored || v.Name == verifySource) {
				claims[v.Name] = v.PersistentVolumeClaim.ClaimName
			}
		}
		if len(claims) != 2 {
			if err := l.finishVerifyJob(ctx, j, fmt.Sprintf("the pod mounts no claims as volumes %q and %q", verifyRestored, verifySource)); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		sums := map[string]string{}
		for _, role := range []string{verifyRestored, verifySource} {
			sum, ready, err := l.claimChecksum(ctx, j.Namespace, claims[role])
			if err != nil {
				errs = append(errs, fmt.Errorf("job %s/%s: %w", j.Namespace, j.Name, err))
			}
			if ready {
				sums[role] = sum
			}
		}
		if len(sums) != 2 {
			continue // the pod would still wait for its volumes
		}
		failure := ""
		if sums[verifyRestored] != sums[verifySource] {
			failure = MsgChecksumsDiffer
		}
		l.m.logf("verification job %s/%s: restored %s, source %s", j.Namespace, j.Name, sums[verifyRestored], sums[verifySource])
		if err := l.finishVerifyJob(ctx, j, failure); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// claimChecksum follows claim -> PV -> CSI volumeHandle -> the Longhorn volume's data;
// ready is false while any link is missing or the volume is being restored (Longhorn does not
// attach it then).
func (l *loop) claimChecksum(ctx context.Context, namespace, claim string) (sum string, ready bool, err error) {
	pvc, err := l.m.cs.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, claim, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || (err == nil && pvc.Spec.VolumeName == "") {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	pv, err := l.m.cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != CSIDriver {
		return "", false, nil
	}
	vol := pv.Spec.CSI.VolumeHandle
	v, err := l.res(VolumeGVR).Get(ctx, vol, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if restoring, _, _ := unstructured.NestedBool(v.Object, "status", "restoreRequired"); restoring {
		return "", false, nil
	}
	sum, err = l.data.Checksum(vol)
	if errors.Is(err, lhdata.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return sum, true, nil
}

// finishVerifyJob records the pod's exit as the Job controller would: Complete with one
// succeeded pod, or Failed with one failed pod and the failure as the condition's message.
func (l *loop) finishVerifyJob(ctx context.Context, j *batchv1.Job, failure string) error {
	if err := updateJobFinished(ctx, l.m.cs, j, 1, failure); err != nil {
		return fmt.Errorf("job %s/%s status: %w", j.Namespace, j.Name, err)
	}
	return nil
}
