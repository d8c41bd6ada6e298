package rollout

import (
	"context"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/talforge/talforge/pkg/longhorn"
)

// waitStorage waits for the storage gate of node: before it goes down (before), or after it
// is back (then its Longhorn node must be Ready and schedulable again too).
func (r *Rollout) waitStorage(ctx context.Context, node string, before bool) error {
	what := "the storage gate before " + node + " goes down"
	if !before {
		what = "the storage gate after " + node + " is back"
	}
	err := r.wait(ctx, node, r.opts.GateTimeout, what, func(ctx context.Context) (bool, string, error) {
		problems, err := r.storageProblems(ctx, node, before)
		if err != nil {
			return false, "", err
		}
		return len(problems) == 0, strings.Join(problems, "; "), nil
	})
	if err != nil {
		return fmt.Errorf("%w; nothing was taken down for it: once Longhorn is healthy (its UI shows the volume), run `talforge upgrade` again", err)
	}
	return nil
}

// storageProblems lists what keeps node from going down (before) or from counting as back:
// attached volumes not healthy, replicas rebuilding, an attached volume without a healthy
// replica on another node, engine images not deployed, and afterwards the node's own
// Longhorn node not Ready or not schedulable. No Longhorn, no problems.
func (r *Rollout) storageProblems(ctx context.Context, node string, before bool) ([]string, error) {
	vols, ok, err := r.list(ctx, longhorn.VolumeGVR)
	if err != nil || !ok {
		return nil, err
	}
	replicas, _, err := r.list(ctx, longhorn.ReplicaGVR)
	if err != nil {
		return nil, err
	}
	healthyOn := replicaNodes(replicas, healthyReplica)
	rebuilding := replicaNodes(replicas, replicaRebuilding)
	var problems []string
	for _, v := range vols {
		name := v.GetName()
		state, _, _ := unstructured.NestedString(v.Object, "status", "state")
		robustness, _, _ := unstructured.NestedString(v.Object, "status", "robustness")
		if state != "attached" {
			if robustness == longhorn.VolumeRobustnessFaulted {
				problems = append(problems, fmt.Sprintf("volume %s is faulted", name))
			}
			continue
		}
		if robustness != "healthy" {
			p := fmt.Sprintf("volume %s is %s", name, robustness)
			if len(rebuilding[name]) > 0 {
				p += fmt.Sprintf(" (replica on %s rebuilding)", strings.Join(rebuilding[name], ", "))
			}
			problems = append(problems, p)
			continue
		}
		if len(rebuilding[name]) > 0 {
			problems = append(problems, fmt.Sprintf("volume %s: replica on %s rebuilding", name, strings.Join(rebuilding[name], ", ")))
		}
		if before && len(replicasOf(replicas, name)) > 0 && !slices.ContainsFunc(healthyOn[name], func(n string) bool { return n != node }) {
			problems = append(problems, fmt.Sprintf("volume %s has no healthy replica on a node other than %s (raise its replica count, or detach it by scaling its workload down)", name, node))
		}
	}
	images, _, err := r.list(ctx, longhorn.EngineImageGVR)
	if err != nil {
		return nil, err
	}
	for _, ei := range images {
		if st, _, _ := unstructured.NestedString(ei.Object, "status", "state"); st != "deployed" {
			problems = append(problems, fmt.Sprintf("engine image %s is %s, not deployed", ei.GetName(), orUnknown(st)))
		}
	}
	if !before {
		problems = append(problems, r.longhornNodeProblems(ctx, node)...)
	}
	return problems, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func replicasOf(replicas []unstructured.Unstructured, volume string) []unstructured.Unstructured {
	var out []unstructured.Unstructured
	for _, r := range replicas {
		if v, _, _ := unstructured.NestedString(r.Object, "spec", "volumeName"); v == volume {
			out = append(out, r)
		}
	}
	return out
}

// longhornNodeProblems says whether the node's Longhorn node is Ready and schedulable.
func (r *Rollout) longhornNodeProblems(ctx context.Context, node string) []string {
	ln, err := r.dyn.Resource(longhorn.NodeGVR).Namespace(longhorn.Namespace).Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return []string{"Longhorn node " + node + " does not exist yet"}
	}
	if err != nil {
		return []string{"Longhorn node " + node + ": " + err.Error()}
	}
	conds, _, _ := unstructured.NestedSlice(ln.Object, "status", "conditions")
	var problems []string
	for _, typ := range []string{"Ready", "Schedulable"} {
		found := false
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] != typ {
				continue
			}
			found = true
			if m["status"] != "True" {
				problems = append(problems, fmt.Sprintf("Longhorn node %s is not %s (%v)", node, strings.ToLower(typ), m["reason"]))
			}
		}
		if !found {
			problems = append(problems, fmt.Sprintf("Longhorn node %s reports no %s condition yet", node, typ))
		}
	}
	return problems
}

// healthyReplica is Longhorn's datastore.IsAvailableHealthyReplica: not being deleted, and
// healthy since it last failed (spec.healthyAt set, spec.failedAt empty).
func healthyReplica(r unstructured.Unstructured) bool {
	healthyAt, _, _ := unstructured.NestedString(r.Object, "spec", "healthyAt")
	failedAt, _, _ := unstructured.NestedString(r.Object, "spec", "failedAt")
	return r.GetDeletionTimestamp() == nil && failedAt == "" && healthyAt != ""
}

// replicaRebuilding is a running replica that has not become healthy yet.
func replicaRebuilding(r unstructured.Unstructured) bool {
	healthyAt, _, _ := unstructured.NestedString(r.Object, "spec", "healthyAt")
	failedAt, _, _ := unstructured.NestedString(r.Object, "spec", "failedAt")
	state, _, _ := unstructured.NestedString(r.Object, "status", "currentState")
	return failedAt == "" && healthyAt == "" && state == "running"
}

// replicaNodes maps each volume to the nodes of its replicas that are (in the sense of is).
func replicaNodes(replicas []unstructured.Unstructured, is func(unstructured.Unstructured) bool) map[string][]string {
	out := map[string][]string{}
	for _, rep := range replicas {
		if is(rep) {
			v, _, _ := unstructured.NestedString(rep.Object, "spec", "volumeName")
			n, _, _ := unstructured.NestedString(rep.Object, "spec", "nodeID")
			out[v] = append(out[v], n)
		}
	}
	return out
}

// lastReplicaVolumes lists the attached volumes whose only healthy replica is on node.
func (r *Rollout) lastReplicaVolumes(ctx context.Context, node string) ([]string, error) {
	replicas, _, err := r.list(ctx, longhorn.ReplicaGVR)
	if err != nil {
		return nil, err
	}
	var out []string
	for v, nodes := range replicaNodes(replicas, healthyReplica) {
		if slices.Equal(slices.Compact(slices.Sorted(slices.Values(nodes))), []string{node}) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out, nil
}

// list lists a Longhorn resource; ok is false when Longhorn is not installed (no CRD).
func (r *Rollout) list(ctx context.Context, gvr schema.GroupVersionResource) ([]unstructured.Unstructured, bool, error) {
	l, err := r.dyn.Resource(gvr).Namespace(longhorn.Namespace).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("list Longhorn %s: %w", gvr.Resource, err)
	}
	return l.Items, true, nil
}
