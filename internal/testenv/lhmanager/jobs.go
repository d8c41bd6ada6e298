// Helm hook Jobs: the pre-upgrade check and the pre-delete uninstall Job, completed or failed
// as the real Job controller and longhorn-manager would.

package lhmanager

import (
	"context"
	"errors"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// uninstallRefusal is upstream's message (controller/uninstall_controller.go checkPreconditions).
const uninstallRefusal = "cannot uninstall Longhorn because deleting-confirmation-flag is set to `false`. Please set it to `true` using Longhorn UI or kubectl -n longhorn-system edit settings.longhorn.io deleting-confirmation-flag"

// UpgradeChecks lists the pre-upgrade checks run so far, as "<from> -> <to>: ok|<error>".
func (m *Manager) UpgradeChecks() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.checks...)
}

func (m *Manager) syncJobs(ctx context.Context) error {
	jobs, err := m.jobs.Jobs(m.ns).List(labels.Everything())
	if err != nil {
		return err
	}
	var errs []error
	for _, j := range jobs {
		if jobFinished(j) {
			continue
		}
		var failure string
		var recorded func() // counts the check once the Job's status says it ran
		switch j.Name {
		case PreUpgradeJob:
			current, _, err := m.getSetting(ctx, SettingCurrentLonghornVersion)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			next := imageTag(j.Spec.Template.Spec.Containers)
			check := checkUpgradePath(current, next)
			if check != nil {
				// The pod reports before the Job controller marks the Job failed.
				failure = check.Error()
				m.event(ctx, &corev1.ObjectReference{Kind: "Job", APIVersion: "batch/v1", Name: j.Name, Namespace: j.Namespace, UID: j.UID},
					corev1.EventTypeWarning, ReasonFailedUpgradePreCheck, failure)
			}
			recorded = func() { m.recordCheck(current, next, check) }
		case UninstallJob:
			flag, _, err := m.getSetting(ctx, SettingDeletingConfirmationFlag)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if flag != "true" {
				failure = uninstallRefusal
				m.event(ctx, &corev1.ObjectReference{Kind: "Job", APIVersion: "batch/v1", Name: j.Name, Namespace: j.Namespace, UID: j.UID},
					corev1.EventTypeWarning, "FailedUninstall", failure)
			} else if err := m.deleteAllVolumes(ctx); err != nil {
				errs = append(errs, err)
				continue
			} else if err := m.keepRemoteBackups(ctx); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		// A stale informer cache can list a Job this loop already finished (and Helm may
		// have deleted since): its status write then fails on the resourceVersion or on
		// the missing object, and the check must not count as run twice.
		if err := m.finishJob(ctx, j, failure); err != nil {
			if !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				errs = append(errs, fmt.Errorf("job %s: %w", j.Name, err))
			}
			continue
		}
		if recorded != nil {
			recorded()
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) recordCheck(current, next string, err error) {
	res := "ok"
	if err != nil {
		res = err.Error()
	}
	if current == "" {
		current = "(none)"
	}
	m.mu.Lock()
	m.checks = append(m.checks, fmt.Sprintf("%s -> %s: %s", current, next, res))
	m.mu.Unlock()
}

func jobFinished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// finishJob sets the status the Job controller would set after its pod succeeded, or
// after the pod failed backoffLimit+1 times when failure is not empty.
func (m *Manager) finishJob(ctx context.Context, j *batchv1.Job, failure string) error {
	if failure == "" {
		return updateJobFinished(ctx, m.cs, j, 0, "")
	}
	backoff := int32(6)
	if j.Spec.BackoffLimit != nil {
		backoff = *j.Spec.BackoffLimit
	}
	m.logf("job %s failed: %s", j.Name, failure)
	return updateJobFinished(ctx, m.cs, j, backoff+1, "Job has reached the specified backoff limit")
}

// updateJobFinished writes the status the Job controller writes when j ends: Complete
// with one succeeded pod when failMsg is empty, else Failed after failedPods failed pods
// with failMsg as the message of its conditions (the conditions and reasons of
// k8s.io/kubernetes pkg/controller/job/job_controller.go).
func updateJobFinished(ctx context.Context, cs kubernetes.Interface, j *batchv1.Job, failedPods int32, failMsg string) error {
	j = j.DeepCopy()
	now := metav1.Now()
	if j.Status.StartTime == nil { // immutable once set
		j.Status.StartTime = &now
	}
	zero := int32(0)
	j.Status.Active, j.Status.Ready = 0, &zero
	if failMsg == "" {
		j.Status.Succeeded = 1
		j.Status.CompletionTime = &now
		j.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastProbeTime: now, LastTransitionTime: now, Reason: batchv1.JobReasonCompletionsReached, Message: "Reached expected number of succeeded pods"},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastProbeTime: now, LastTransitionTime: now, Reason: batchv1.JobReasonCompletionsReached, Message: "Reached expected number of succeeded pods"},
		}
	} else {
		j.Status.Failed = failedPods
		j.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, LastProbeTime: now, LastTransitionTime: now, Reason: batchv1.JobReasonBackoffLimitExceeded, Message: failMsg},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, LastProbeTime: now, LastTransitionTime: now, Reason: batchv1.JobReasonBackoffLimitExceeded, Message: failMsg},
		}
	}
	_, err := cs.BatchV1().Jobs(j.Namespace).UpdateStatus(ctx, j, metav1.UpdateOptions{})
	return err
}
