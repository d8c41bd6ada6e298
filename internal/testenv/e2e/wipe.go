package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// systemNamespaces hold what the control plane itself keeps.
var systemNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

// clusterScoped are the cluster-scoped resources a cluster's users create (and a new etcd
// lacks); everything else cluster-scoped goes only when Helm or talforge made it.
var clusterScoped = []string{"nodes", "persistentvolumes", "storageclasses", "customresourcedefinitions"}

// kept reports objects the apiserver (or, in a real cluster, kube-controller-manager)
// re-creates by itself in every namespace.
func kept(resource, namespace, name string) bool {
	switch {
	case resource == "serviceaccounts" && name == "default",
		resource == "configmaps" && name == "kube-root-ca.crt",
		namespace == "default" && name == "kubernetes":
		return true
	}
	return false
}

// Wipe deletes from a test control plane what a brand-new etcd would not hold: every object
// outside the system namespaces (Helm releases, Longhorn's objects, claims, secrets), and
// nodes, persistent volumes, storage classes, CRDs (with their custom resources) and
// anything labelled as managed by Helm or talforge. Namespaces stay (no namespace controller
// runs to finalize their deletion) but end up empty. Finalizers that only a missing
// controller would remove are removed; a CRD's, the apiserver's own, is left to it.
func Wipe(ctx context.Context, cfg *rest.Config) error {
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler = rest.NoWarnings{} // listing v1 Endpoints warns on every call
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	// A group whose discovery failed (an API group in flux while CRDs come and go) would be
	// left out of the wipe, and its objects would survive the "lost" cluster: ask again until
	// every group answers.
	deadline := time.Now().Add(30 * time.Second)
	lists, err := disc.ServerPreferredResources()
	for discovery.IsGroupDiscoveryFailedError(err) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		lists, err = disc.ServerPreferredResources()
	}
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	var targets []schema.GroupVersionResource
	namespaced := map[schema.GroupVersionResource]bool{}
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") || !slices.Contains(r.Verbs, "delete") {
				continue
			}
			gvr := gv.WithResource(r.Name)
			targets = append(targets, gvr)
			namespaced[gvr] = r.Namespaced
		}
	}
	// The objects first, then their CRDs: apiextensions' CRD finalizer deletes a CRD's
	// objects itself, but polls every 5 s for them to go, and an object whose controller is
	// gone keeps its finalizer until the wipe removes it.
	crds := slices.DeleteFunc(slices.Clone(targets), func(gvr schema.GroupVersionResource) bool { return gvr.Resource != "customresourcedefinitions" })
	objects := slices.DeleteFunc(targets, func(gvr schema.GroupVersionResource) bool { return gvr.Resource == "customresourcedefinitions" })
	for _, phase := range [][]schema.GroupVersionResource{objects, crds} {
		if err := wipeUntilGone(ctx, dyn, phase, namespaced); err != nil {
			return err
		}
	}
	return nil
}

// wipeUntilGone repeats wipeOnce until nothing of targets is left, for 30 s at most.
func wipeUntilGone(ctx context.Context, dyn dynamic.Interface, targets []schema.GroupVersionResource, namespaced map[schema.GroupVersionResource]bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		left, err := wipeOnce(ctx, dyn, targets, namespaced)
		if err != nil {
			return err
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still there after 30s: %s", strings.Join(left, ", "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wipeOnce deletes every object to wipe and returns those that still exist.
func wipeOnce(ctx context.Context, dyn dynamic.Interface, targets []schema.GroupVersionResource, namespaced map[schema.GroupVersionResource]bool) ([]string, error) {
	var left []string
	var errs []error
	for _, gvr := range targets {
		list, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{})
		if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("list %s: %w", gvr.Resource, err))
			continue
		}
		for _, item := range list.Items {
			ns, name := item.GetNamespace(), item.GetName()
			if namespaced[gvr] {
				if slices.Contains(systemNamespaces, ns) || kept(gvr.Resource, ns, name) {
					continue
				}
			} else {
				if gvr.Resource == "namespaces" {
					continue // no namespace controller runs to finalize a deletion
				}
				managed := item.GetLabels()["app.kubernetes.io/managed-by"]
				if !slices.Contains(clusterScoped, gvr.Resource) && managed != "Helm" && managed != "talforge" {
					continue
				}
			}
			left = append(left, gvr.Resource+" "+strings.TrimPrefix(ns+"/"+name, "/"))
			var ri dynamic.ResourceInterface = dyn.Resource(gvr)
			if ns != "" {
				ri = dyn.Resource(gvr).Namespace(ns)
			}
			zero := int64(0)
			if gvr.Resource == "pods" {
				// A pod bound to a node waits for its kubelet to stop it; none runs here.
				if err := ri.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !apierrors.IsNotFound(err) {
					errs = append(errs, fmt.Errorf("delete pod %s/%s: %w", ns, name, err))
				}
				continue
			}
			if item.GetDeletionTimestamp() != nil {
				// A CRD's finalizer is the apiserver's own (apiextensions' CRD finalizer
				// controller): it deletes the CRD's objects first. Removing it would drop the
				// CRD with its objects still in etcd, to come back with the next install.
				if len(item.GetFinalizers()) > 0 && gvr.Resource != "customresourcedefinitions" {
					_, err := ri.Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
					if err != nil && !apierrors.IsNotFound(err) {
						errs = append(errs, fmt.Errorf("remove finalizers of %s %s/%s: %w", gvr.Resource, ns, name, err))
					}
				}
				continue
			}
			bg := metav1.DeletePropagationBackground
			if err := ri.Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete %s %s/%s: %w", gvr.Resource, ns, name, err))
			}
		}
	}
	return left, errors.Join(errs...)
}
