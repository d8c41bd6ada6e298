// The kubelet's and kube-controller-manager's share on the test control plane: Node objects
// for configured nodes and pre-bound PV/PVC pairs marked Bound.

package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/siderolabs/talos/pkg/machinery/config/configloader"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// syncKube registers configured nodes with Kubernetes and keeps their Ready condition and
// versions in step with the Talos node (the kubelet's job), deletes pods the apiserver marked
// for deletion (the kubelet stops them), and binds pre-bound PV/PVC pairs
// (kube-controller-manager's).
func (e *Env) syncKube(ctx context.Context) error {
	var regs []nodeReport
	e.mu.Lock()
	for _, n := range e.nodes {
		cfg := n.node.ActiveConfig()
		if cfg == nil || n.name == "" && !n.node.Up() {
			continue
		}
		if n.node.Up() {
			n.name = n.node.Hostname()
		}
		regs = append(regs, nodeReport{name: n.name, ip: n.ip, ready: n.node.Up(), talos: n.node.Version(), kubelet: n.kubeletOf(cfg), bootID: n.node.BootID()})
	}
	e.mu.Unlock()
	// Each kubelet registers and posts its status on its own, at the same time as the others: one
	// after another, a dozen nodes took 50-200 ms (three requests each), which a real cluster's
	// kubelets do not add to a registration wait.
	errs := make([]error, len(regs))
	var wg sync.WaitGroup
	for i, r := range regs {
		wg.Go(func() { errs[i] = e.reportNode(ctx, r) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	pods, err := e.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	running, err := e.finishDeletedPods(ctx, pods.Items)
	if err != nil {
		return err
	}
	if err := e.releaseProtection(ctx, running); err != nil {
		return err
	}
	return e.bindVolumes(ctx)
}

// Finalizers the apiserver's StorageObjectInUseProtection admission adds to every claim and
// volume; kube-controller-manager's pvc- and pv-protection controllers remove them.
const (
	pvcProtection = "kubernetes.io/pvc-protection"
	pvProtection  = "kubernetes.io/pv-protection"
)

// releaseProtection lets deleted claims and volumes go as kube-controller-manager's protection
// controllers do: a claim once no running pod mounts it (pkg/controller/volume/pvcprotection),
// a volume once its claim is gone (pvprotection: not bound).
func (e *Env) releaseProtection(ctx context.Context, pods []corev1.Pod) error {
	pvcs, err := e.cs.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	inUse := map[string]bool{}
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil {
				inUse[p.Namespace+"/"+v.PersistentVolumeClaim.ClaimName] = true
			}
		}
	}
	claims := map[string]bool{}
	for _, c := range pvcs.Items {
		claims[c.Namespace+"/"+c.Name] = true
		if c.DeletionTimestamp == nil || inUse[c.Namespace+"/"+c.Name] || !slices.Contains(c.Finalizers, pvcProtection) {
			continue
		}
		c.Finalizers = slices.DeleteFunc(c.Finalizers, func(f string) bool { return f == pvcProtection })
		if _, err := e.cs.CoreV1().PersistentVolumeClaims(c.Namespace).Update(ctx, &c, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("claim %s/%s: %w", c.Namespace, c.Name, err)
		}
	}
	pvs, err := e.cs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, pv := range pvs.Items {
		if pv.DeletionTimestamp == nil || !slices.Contains(pv.Finalizers, pvProtection) {
			continue
		}
		if ref := pv.Spec.ClaimRef; ref != nil && claims[ref.Namespace+"/"+ref.Name] {
			continue
		}
		pv.Finalizers = slices.DeleteFunc(pv.Finalizers, func(f string) bool { return f == pvProtection })
		if _, err := e.cs.CoreV1().PersistentVolumes().Update(ctx, &pv, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("volume %s: %w", pv.Name, err)
		}
	}
	return nil
}

// nodeReport is what a node's kubelet posts.
type nodeReport struct {
	name, ip       string
	ready          bool
	talos, kubelet string
	bootID         string
}

// kubeletVersion reads the kubelet image tag of a machine config (what the kubelet reports).
func kubeletVersion(cfg []byte) string {
	c, err := configloader.NewFromBytes(cfg)
	if err != nil || c.K8sKubeletConfig() == nil {
		return ""
	}
	img := c.K8sKubeletConfig().Image()
	if i := strings.LastIndex(img, ":"); i >= 0 {
		return img[i+1:]
	}
	return ""
}

// reportNode registers the node once and posts its status when it changed: Ready while the
// Talos node is up, its OS image and kubelet version.
func (e *Env) reportNode(ctx context.Context, r nodeReport) error {
	n, err := e.cs.CoreV1().Nodes().Get(ctx, r.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if !r.ready {
			return nil
		}
		n, err = e.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name: r.name, Labels: map[string]string{"kubernetes.io/hostname": r.name},
		}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("register node %s: %w", r.name, err)
	}
	status, reason, msg := corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"
	if !r.ready {
		status, reason, msg = corev1.ConditionUnknown, "NodeStatusUnknown", "Kubelet stopped posting node status."
	}
	osImage := "Talos (" + r.talos + ")"
	var cur *corev1.NodeCondition
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			cur = &n.Status.Conditions[i]
		}
	}
	// A kubelet posts its status when it starts, so a new boot is seen even when the node was
	// down too briefly for anyone to notice.
	if cur != nil && cur.Status == status && n.Status.NodeInfo.OSImage == osImage && n.Status.NodeInfo.KubeletVersion == r.kubelet &&
		(!r.ready || n.Status.NodeInfo.BootID == r.bootID) {
		return nil
	}
	now := metav1.Now()
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: r.ip}, {Type: corev1.NodeHostName, Address: r.name}}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, Reason: reason,
		Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}}
	n.Status.NodeInfo.OSImage, n.Status.NodeInfo.KubeletVersion = osImage, r.kubelet
	if r.ready {
		n.Status.NodeInfo.BootID = r.bootID
	}
	n.Status.NodeInfo.OperatingSystem, n.Status.NodeInfo.Architecture = "linux", "amd64"
	if _, err := e.cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("node %s status: %w", r.name, err)
	}
	return nil
}

// finishDeletedPods removes the pods a graceful delete (an eviction) marked: the kubelet
// stops their containers and deletes them for good. It returns the pods that stay.
func (e *Env) finishDeletedPods(ctx context.Context, pods []corev1.Pod) ([]corev1.Pod, error) {
	zero := int64(0)
	var stay []corev1.Pod
	for _, p := range pods {
		if p.DeletionTimestamp == nil {
			stay = append(stay, p)
			continue
		}
		err := e.cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("delete pod %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	return stay, nil
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
