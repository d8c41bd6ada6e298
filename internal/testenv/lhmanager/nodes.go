// Nodes and replicas: a Longhorn Node per Kubernetes node with its Ready and Schedulable
// conditions, an instance-manager pod per node and the PodDisruptionBudget longhorn-manager
// keeps on it under node-drain-policy block-if-contains-last-replica, and replicas that fail
// while their node is down and rebuild when it is back.

package lhmanager

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Labels of instance-manager pods (longhorn types.GetInstanceManagerLabels).
const (
	LabelComponent        = "longhorn.io/component"
	LabelNode             = "longhorn.io/node"
	componentIM           = "instance-manager"
	drainPolicySetting    = "node-drain-policy"
	drainBlockLastReplica = "block-if-contains-last-replica"
)

// InstanceManagerName is the name of the instance-manager pod (and of its PDB) on node.
// Upstream names it instance-manager-<hash of node, engine image and data engine>; one per
// node is what matters here.
func InstanceManagerName(node string) string { return "instance-manager-" + node }

// ReplicaName is the name SetReplica gives the replica of volume on node.
func ReplicaName(volume, node string) string { return volume + "-r-" + node }

// SetReplica creates or updates the replica of volume on node: healthy (spec.healthyAt set,
// running) or rebuilding (running, never healthy yet). A volume with replicas gets its
// robustness from them from now on: healthy when every replica is healthy, degraded when some
// but not all are, faulted when none is.
func (m *Manager) SetReplica(ctx context.Context, volume, node string, healthy bool) error {
	res := m.dyn.Resource(ReplicaGVR).Namespace(m.ns)
	name := ReplicaName(volume, node)
	r, err := res.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		r, err = res.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": group + "/" + version, "kind": "Replica",
			"metadata": map[string]any{"name": name, "namespace": m.ns, "labels": map[string]any{"longhornvolume": volume, "longhornnode": node}},
			"spec":     map[string]any{"volumeName": volume, "nodeID": node, "dataEngine": "v1"},
		}}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("replica %s: %w", name, err)
	}
	if err := m.setReplicaState(ctx, r, healthy, false); err != nil {
		return err
	}
	return m.syncRobustness(ctx, volume)
}

// setReplicaState writes a replica's health: healthy, rebuilding (neither), or failed.
func (m *Manager) setReplicaState(ctx context.Context, r *unstructured.Unstructured, healthy, failed bool) error {
	res := m.dyn.Resource(ReplicaGVR).Namespace(m.ns)
	now := time.Now().UTC().Format(time.RFC3339)
	spec, _, _ := unstructured.NestedMap(r.Object, "spec")
	spec["healthyAt"], spec["failedAt"] = "", ""
	state := "running"
	switch {
	case failed:
		spec["failedAt"], state = now, "stopped"
	case healthy:
		spec["healthyAt"] = now
	}
	r.Object["spec"] = spec
	r, err := res.Update(ctx, r, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("replica %s: %w", r.GetName(), err)
	}
	r.Object["status"] = map[string]any{"currentState": state, "ownerID": spec["nodeID"]}
	if _, err := res.UpdateStatus(ctx, r, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("replica %s status: %w", r.GetName(), err)
	}
	return nil
}

// healthyReplica is longhorn datastore.IsAvailableHealthyReplica: not being deleted, never
// failed since it last became healthy.
func healthyReplica(r unstructured.Unstructured) bool {
	healthyAt, _, _ := unstructured.NestedString(r.Object, "spec", "healthyAt")
	failedAt, _, _ := unstructured.NestedString(r.Object, "spec", "failedAt")
	return r.GetDeletionTimestamp() == nil && failedAt == "" && healthyAt != ""
}

func (m *Manager) replicasOf(ctx context.Context, volume string) ([]unstructured.Unstructured, error) {
	list, err := m.dyn.Resource(ReplicaGVR).Namespace(m.ns).List(ctx, metav1.ListOptions{LabelSelector: "longhornvolume=" + volume})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// syncRobustness derives a volume's robustness from its replicas (when it has any).
func (m *Manager) syncRobustness(ctx context.Context, volume string) error {
	rs, err := m.replicasOf(ctx, volume)
	if err != nil || len(rs) == 0 {
		return err
	}
	healthy := 0
	for _, r := range rs {
		if healthyReplica(r) {
			healthy++
		}
	}
	want := Degraded
	switch healthy {
	case len(rs):
		want = Healthy
	case 0:
		want = Faulted
	}
	v, err := m.dyn.Resource(VolumeGVR).Namespace(m.ns).Get(ctx, volume, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if got, _, _ := unstructured.NestedString(v.Object, "status", "robustness"); got == want {
		return nil
	}
	fields := map[string]any{"robustness": want}
	if want == Degraded {
		fields["lastDegradedAt"] = time.Now().UTC().Format(time.RFC3339)
	}
	return m.setVolumeStatus(ctx, v, fields)
}

// syncNodes keeps the Longhorn side of every Kubernetes node: its Longhorn Node and
// conditions, its instance-manager pod, the replicas on it (failed while the node is down,
// rebuilt once it is back) and the instance-manager PDB.
func (m *Manager) syncNodes(ctx context.Context) error {
	if !m.rolledOut() {
		return nil // each manager pod registers its node once it runs (Options.RolloutTime)
	}
	if ok, err := m.crdServed(ctx, NodeGVR); !ok {
		return err
	}
	nodes, err := m.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var errs []error
	ready := map[string]bool{}
	rebooted := map[string]bool{}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		ready[n.Name] = nodeReady(n)
		// A reboot stops every replica process on the node, noticed or not as NotReady.
		m.mu.Lock()
		if prev, ok := m.bootIDs[n.Name]; ok && prev != n.Status.NodeInfo.BootID {
			rebooted[n.Name] = true
		}
		m.bootIDs[n.Name] = n.Status.NodeInfo.BootID
		m.mu.Unlock()
		if err := m.syncLonghornNode(ctx, n); err != nil {
			errs = append(errs, err)
		}
		if ready[n.Name] {
			if err := m.ensureInstanceManager(ctx, n.Name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := m.syncReplicas(ctx, ready, rebooted); err != nil {
		errs = append(errs, err)
	}
	if err := m.syncInstanceManagerPDBs(ctx, nodes.Items); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// syncLonghornNode writes the Longhorn Node's conditions as longhorn-manager's node
// controller does: Ready follows the Kubernetes node (reason KubernetesNodeNotReady),
// Schedulable is False with reason KubernetesNodeCordoned while the node is cordoned.
func (m *Manager) syncLonghornNode(ctx context.Context, n *corev1.Node) error {
	res := m.dyn.Resource(NodeGVR).Namespace(m.ns)
	ln, err := res.Get(ctx, n.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		ln, err = createCR(ctx, res, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": group + "/" + version, "kind": "Node",
			"metadata": map[string]any{"name": n.Name, "namespace": m.ns},
			"spec":     map[string]any{"name": n.Name, "allowScheduling": true},
		}})
	}
	if err != nil {
		return fmt.Errorf("longhorn node %s: %w", n.Name, err)
	}
	cond := func(typ string, ok bool, reason string) map[string]any {
		c := map[string]any{"type": typ, "status": "True", "reason": "", "message": ""}
		if !ok {
			c["status"], c["reason"] = "False", reason
		}
		return c
	}
	want := []any{
		cond("Ready", nodeReady(n), "KubernetesNodeNotReady"),
		cond("Schedulable", !n.Spec.Unschedulable, "KubernetesNodeCordoned"),
	}
	got, _, _ := unstructured.NestedSlice(ln.Object, "status", "conditions")
	if fmt.Sprint(got) == fmt.Sprint(want) {
		return nil
	}
	ln.Object["status"] = map[string]any{"conditions": want}
	if _, err := res.UpdateStatus(ctx, ln, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("longhorn node %s status: %w", n.Name, err)
	}
	return nil
}

// ensureInstanceManager runs the node's instance-manager pod: bound to the node, Running and
// Ready (no kubelet runs here, so the manager writes the status the kubelet would).
func (m *Manager) ensureInstanceManager(ctx context.Context, node string) error {
	pods := m.cs.CoreV1().Pods(m.ns)
	name := InstanceManagerName(node)
	if p, err := pods.Get(ctx, name, metav1.GetOptions{}); err == nil && p.DeletionTimestamp == nil {
		return nil
	} else if err == nil || !apierrors.IsNotFound(err) {
		return err // terminating (the kubelet's share deletes it) or an error
	}
	p, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelComponent: componentIM, LabelNode: node}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{
			Name: "instance-manager", Image: "longhornio/longhorn-instance-manager:v1.10.2"}}},
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("instance manager on %s: %w", node, err)
	}
	now := metav1.Now()
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}}
	if _, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("instance manager on %s status: %w", node, err)
	}
	return nil
}

// syncReplicas fails the replicas on nodes that are down and, once a node is back (or when it
// rebooted unnoticed: a new boot ID), rebuilds them (healthy after Options.RebuildTime); then
// every touched volume's robustness follows.
func (m *Manager) syncReplicas(ctx context.Context, ready, rebooted map[string]bool) error {
	list, err := m.dyn.Resource(ReplicaGVR).Namespace(m.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	touched := map[string]bool{}
	for i := range list.Items {
		r := &list.Items[i]
		node, _, _ := unstructured.NestedString(r.Object, "spec", "nodeID")
		failedAt, _, _ := unstructured.NestedString(r.Object, "spec", "failedAt")
		healthyAt, _, _ := unstructured.NestedString(r.Object, "spec", "healthyAt")
		up, known := ready[node]
		volume, _, _ := unstructured.NestedString(r.Object, "spec", "volumeName")
		switch {
		case known && !up && failedAt == "":
			m.logf("replica %s failed: node %s is down", r.GetName(), node)
			err = m.setReplicaState(ctx, r, false, true)
		case rebooted[node] && failedAt == "":
			m.logf("replica %s rebuilding: node %s rebooted", r.GetName(), node)
			m.rebuilding(r.GetName())
			err = m.setReplicaState(ctx, r, false, false)
		case up && failedAt != "":
			m.logf("replica %s rebuilding: node %s is back", r.GetName(), node)
			m.rebuilding(r.GetName())
			err = m.setReplicaState(ctx, r, false, false)
		case up && healthyAt == "" && m.rebuilt(r.GetName()):
			m.logf("replica %s rebuilt", r.GetName())
			err = m.setReplicaState(ctx, r, true, false)
		default:
			continue
		}
		if err != nil {
			return err
		}
		touched[volume] = true
	}
	for v := range touched {
		if err := m.syncRobustness(ctx, v); err != nil {
			return err
		}
	}
	return nil
}

// rebuilding starts the rebuild clock of a replica the manager rebuilds itself.
func (m *Manager) rebuilding(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rebuilds[name] = time.Now()
}

// rebuilt reports whether a rebuild the manager started is done. Replicas SetReplica made
// rebuilding stay so until SetReplica says otherwise.
func (m *Manager) rebuilt(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	started, ok := m.rebuilds[name]
	if !ok || time.Since(started) < m.rebuildTime {
		return false
	}
	delete(m.rebuilds, name)
	return true
}

// syncInstanceManagerPDBs keeps a PodDisruptionBudget (minAvailable 1) on a node's
// instance-manager while node-drain-policy is block-if-contains-last-replica and the node
// holds the last healthy replica of a volume, as longhorn-manager's instance manager
// controller does (controller/instance_manager_controller.go, syncInstanceManagerPDB).
// No kube-controller-manager runs here, so the manager also writes the status its
// disruption controller would: one healthy pod, none may go.
func (m *Manager) syncInstanceManagerPDBs(ctx context.Context, nodes []corev1.Node) error {
	policy, _, err := m.getSetting(ctx, drainPolicySetting)
	if err != nil {
		return err
	}
	last, err := m.lastReplicaNodes(ctx)
	if err != nil {
		return err
	}
	pdbs := m.cs.PolicyV1().PodDisruptionBudgets(m.ns)
	for _, n := range nodes {
		name := InstanceManagerName(n.Name)
		want := policy == drainBlockLastReplica && last[n.Name]
		_, err := pdbs.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err) && want:
			one := intstr.FromInt32(1)
			cur, err := pdbs.Create(ctx, &policyv1.PodDisruptionBudget{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{
					MatchLabels: map[string]string{LabelComponent: componentIM, LabelNode: n.Name}}},
			}, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("pdb %s: %w", name, err)
			}
			m.logf("pdb %s: node %s holds the last healthy replica of a volume", name, n.Name)
			cur.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: cur.Generation, CurrentHealthy: 1, DesiredHealthy: 1, ExpectedPods: 1}
			if _, err := pdbs.UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("pdb %s status: %w", name, err)
			}
		case err == nil && !want:
			m.logf("pdb %s deleted: node %s holds no last healthy replica", name, n.Name)
			if err := pdbs.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		case err != nil && !apierrors.IsNotFound(err):
			return err
		}
	}
	return nil
}

// lastReplicaNodes returns the nodes that hold the only healthy replica of some volume.
func (m *Manager) lastReplicaNodes(ctx context.Context) (map[string]bool, error) {
	list, err := m.dyn.Resource(ReplicaGVR).Namespace(m.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	healthyOn := map[string][]string{} // volume -> nodes with a healthy replica
	for _, r := range list.Items {
		if healthyReplica(r) {
			v, _, _ := unstructured.NestedString(r.Object, "spec", "volumeName")
			n, _, _ := unstructured.NestedString(r.Object, "spec", "nodeID")
			if !slices.Contains(healthyOn[v], n) {
				healthyOn[v] = append(healthyOn[v], n)
			}
		}
	}
	out := map[string]bool{}
	for _, nodes := range healthyOn {
		if len(nodes) == 1 {
			out[nodes[0]] = true
		}
	}
	return out, nil
}
