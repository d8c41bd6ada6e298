// The kubelet's and kube-controller-manager's share on the test control plane: Node objects
// for configured nodes and pre-bound PV/PVC pairs marked Bound.

package e2e

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// syncKube registers configured nodes with Kubernetes (the kubelet's job) and binds
// pre-bound PV/PVC pairs (kube-controller-manager's).
func (e *Env) syncKube(ctx context.Context) error {
	type reg struct{ name, ip string }
	var regs []reg
	e.mu.Lock()
	for _, n := range e.nodes {
		if n.node.Up() && n.node.ActiveConfig() != nil {
			regs = append(regs, reg{n.node.Hostname(), n.ip})
		}
	}
	e.mu.Unlock()
	for _, r := range regs {
		if err := e.registerNode(ctx, r.name, r.ip); err != nil {
			return err
		}
	}
	return e.bindVolumes(ctx)
}

func (e *Env) registerNode(ctx context.Context, name, ip string) error {
	if _, err := e.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); err == nil {
		return nil
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	n, err := e.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: name, Labels: map[string]string{"kubernetes.io/hostname": name},
	}}, metav1.CreateOptions{})
	if err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return fmt.Errorf("register node %s: %w", name, err)
	}
	now := metav1.Now()
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		Message: "kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now}}
	if _, err := e.cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("node %s status: %w", name, err)
	}
	return nil
}

func (e *Env) bindVolumes(ctx context.Context) error {
	pvs, err := e.cs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range pvs.Items {
		pv := &pvs.Items[i]
		ref := pv.Spec.ClaimRef
		if ref == nil || pv.Status.Phase == corev1.VolumeBound {
			continue
		}
		pvc, err := e.cs.CoreV1().PersistentVolumeClaims(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		if pvc.Spec.VolumeName != pv.Name {
			continue
		}
		pv.Status.Phase = corev1.VolumeBound
		if _, err := e.cs.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("bind PV %s: %w", pv.Name, err)
		}
		pvc.Status.Phase = corev1.ClaimBound
		pvc.Status.AccessModes = pv.Spec.AccessModes
		pvc.Status.Capacity = pv.Spec.Capacity
		if _, err := e.cs.CoreV1().PersistentVolumeClaims(ref.Namespace).UpdateStatus(ctx, pvc, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("bind PVC %s/%s: %w", ref.Namespace, ref.Name, err)
		}
	}
	return nil
}
