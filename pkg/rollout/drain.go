package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// AnnotationUpgrading marks a node talforge cordoned for an upgrade (value: the target
// version): the next run finishes that node, and only talforge's cordon is lifted by it.
const AnnotationUpgrading = "talforge.dev/upgrading"

// annotationBootID keeps the boot ID the node had before its upgrade: it is back once its
// kubelet reports another one (a Ready condition from before the reboot proves nothing).
const annotationBootID = "talforge.dev/upgrade-from-boot-id"

// marked reports whether an earlier run cordoned the node for an upgrade.
func (r *Rollout) marked(ctx context.Context, n Node) (bool, error) {
	node, err := r.cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	_, ok := node.Annotations[AnnotationUpgrading]
	return ok, nil
}

// nodeReady reports the node's Ready condition; afterReboot also requires a kubelet status
// from after the reboot of the upgrade (another boot ID than the one recorded at cordon).
func (r *Rollout) nodeReady(ctx context.Context, name string, afterReboot bool) (bool, string, error) {
	node, err := r.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, "not registered with Kubernetes", nil
	}
	if err != nil {
		return false, "", err
	}
	if before := node.Annotations[annotationBootID]; afterReboot && before != "" && node.Status.NodeInfo.BootID == before {
		return false, "its kubelet has not reported since the reboot (same boot ID)", nil
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				return true, "", nil
			}
			return false, fmt.Sprintf("Kubernetes node is not Ready (%s: %s)", c.Reason, c.Message), nil
		}
	}
	return false, "Kubernetes node reports no Ready condition yet", nil
}

// cordon marks the node unschedulable, and talforge's for the upgrade.
func (r *Rollout) cordon(ctx context.Context, name string) error {
	node, err := r.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("cordon: %w", err)
	}
	annotations := map[string]any{AnnotationUpgrading: r.c.Version}
	if _, resumed := node.Annotations[annotationBootID]; !resumed {
		annotations[annotationBootID] = node.Status.NodeInfo.BootID
	}
	patch, _ := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": annotations},
		"spec":     map[string]any{"unschedulable": true},
	})
	if _, err := r.cs.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("cordon: %w", err)
	}
	r.logf(name, "cordoned")
	return nil
}

// uncordon lifts talforge's cordon (and only that one: a node a person cordoned stays so).
func (r *Rollout) uncordon(ctx context.Context, name string) error {
	node, err := r.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("uncordon: %w", err)
	}
	if _, ok := node.Annotations[AnnotationUpgrading]; !ok {
		return nil
	}
	patch, _ := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{AnnotationUpgrading: nil, annotationBootID: nil}},
		"spec":     map[string]any{"unschedulable": nil},
	})
	if _, err := r.cs.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("uncordon: %w", err)
	}
	r.logf(name, "uncordoned")
	return nil
}

// drain evicts the node's pods through the Eviction API, so PodDisruptionBudgets hold (as
// kubectl drain: DaemonSet pods and static pods stay), and waits for them to be gone. A drain
// that a budget holds is reported with the budget, and for Longhorn's instance-manager
// budget with the volumes the node holds the last healthy replica of.
func (r *Rollout) drain(ctx context.Context, name string) error {
	pods, err := r.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", name).String()})
	if err != nil {
		return fmt.Errorf("drain: list pods: %w", err)
	}
	var evict []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || isDaemonSetPod(p) || p.Annotations[corev1.MirrorPodAnnotationKey] != "" {
			continue
		}
		evict = append(evict, p)
	}
	if len(evict) == 0 {
		r.logf(name, "drained (no pod to evict)")
		return nil
	}
	pending := map[types.UID]corev1.Pod{}
	for _, p := range evict {
		pending[p.UID] = p
	}
	evicted := map[types.UID]bool{}
	err = r.wait(ctx, name, r.opts.DrainTimeout, "drain", func(ctx context.Context) (bool, string, error) {
		var held []string
		for uid, p := range pending {
			if !evicted[uid] {
				err := r.cs.PolicyV1().Evictions(p.Namespace).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}})
				switch {
				case err == nil, apierrors.IsNotFound(err):
					evicted[uid] = true
				case apierrors.IsTooManyRequests(err):
					held = append(held, r.heldBy(ctx, p))
					continue
				default:
					return false, "", fmt.Errorf("evict %s/%s: %w", p.Namespace, p.Name, err)
				}
			}
			cur, err := r.cs.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err) || err == nil && cur.UID != uid:
				delete(pending, uid)
			case err != nil:
				return false, "", err
			}
		}
		if len(pending) == 0 {
			return true, "", nil
		}
		slices.Sort(held)
		if len(held) > 0 {
			return false, strings.Join(held, "; "), nil
		}
		return false, fmt.Sprintf("%d evicted pod(s) still terminating", len(pending)), nil
	})
	if err != nil {
		return fmt.Errorf("%w; the node stays cordoned and up; fix what holds the drain, then run `talforge upgrade` again", err)
	}
	r.logf(name, "drained (%d pod(s) evicted)", len(evict))
	return nil
}

func isDaemonSetPod(p corev1.Pod) bool {
	for _, o := range p.OwnerReferences {
		if o.Kind == "DaemonSet" {
			return true
		}
	}
	return false
}

// heldBy names the PodDisruptionBudget that refuses a pod's eviction and, for Longhorn's
// instance-manager budget, the volumes behind it.
func (r *Rollout) heldBy(ctx context.Context, p corev1.Pod) string {
	what := fmt.Sprintf("pod %s/%s is held by a PodDisruptionBudget", p.Namespace, p.Name)
	pdbs, err := r.cs.PolicyV1().PodDisruptionBudgets(p.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return what
	}
	for _, b := range pdbs.Items {
		sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		what = fmt.Sprintf("pod %s/%s is held by PodDisruptionBudget %s/%s (%d disruption(s) allowed)", p.Namespace, p.Name, b.Namespace, b.Name, b.Status.DisruptionsAllowed)
		if p.Labels[labelLonghornComponent] == "instance-manager" {
			if vols, err := r.lastReplicaVolumes(ctx, p.Spec.NodeName); err == nil && len(vols) > 0 {
				what += fmt.Sprintf(": Longhorn keeps it while the node holds the last healthy replica of volume %s (node-drain-policy block-if-contains-last-replica); wait for the volume's other replicas to rebuild",
					strings.Join(vols, ", "))
			}
		}
		break
	}
	return what
}

const labelLonghornComponent = "longhorn.io/component"
