package longhorn

import (
	"context"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/talforge/talforge/pkg/claim"
	"github.com/talforge/talforge/pkg/profile"
)

// applyPreChart creates the namespace (with Pod Security labels) and the credentials Secret.
func (cl *Client) applyPreChart(ctx context.Context, objs *Objects) error {
	if err := cl.apply(ctx, namespaceGVR, objs.Namespace); err != nil {
		return err
	}
	if cl.cluster.Longhorn.Backup == nil {
		return nil
	}
	return cl.applyCredentials(ctx)
}

// applyCredentials creates or updates the S3 credentials Secret, decrypted in memory.
func (cl *Client) applyCredentials(ctx context.Context) error {
	want, err := credentialsSecret(cl.cluster, cl.opts.Decrypt)
	if err != nil {
		return err
	}
	secrets := cl.kube.CS.CoreV1().Secrets(Namespace)
	got, err := secrets.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := secrets.Create(ctx, want, metav1.CreateOptions{FieldManager: FieldManager}); err != nil {
			return fmt.Errorf("create Secret %s/%s: %w", Namespace, want.Name, err)
		}
		cl.logf("created Secret %s/%s from %s", Namespace, want.Name, cl.cluster.Longhorn.Backup.CredentialsFile)
	case err != nil:
		return fmt.Errorf("read Secret %s/%s: %w", Namespace, want.Name, err)
	case !sameSecretData(got.Data, want.Data) || got.Type != want.Type:
		got.Data, got.StringData = want.Data, nil
		if got.Labels == nil {
			got.Labels = map[string]string{}
		}
		got.Labels[ManagedByLabel] = ManagedBy
		if _, err := secrets.Update(ctx, got, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
			return fmt.Errorf("update Secret %s/%s: %w", Namespace, want.Name, err)
		}
		cl.logf("updated Secret %s/%s from %s", Namespace, want.Name, cl.cluster.Longhorn.Backup.CredentialsFile)
	}
	return nil
}

// applyPostChart applies RecurringJobs, StorageClasses and volume labels, once the
// chart's CRDs are established.
func (cl *Client) applyPostChart(ctx context.Context, objs *Objects) error {
	if len(objs.RecurringJobs) > 0 || len(cl.cluster.Longhorn.Volumes) > 0 {
		if err := cl.waitCRDs(ctx, "recurringjobs.longhorn.io", "volumes.longhorn.io"); err != nil {
			return err
		}
	}
	for _, rj := range objs.RecurringJobs {
		if err := cl.apply(ctx, RecurringJobGVR, rj); err != nil {
			return err
		}
	}
	for _, sc := range objs.StorageClasses {
		if err := cl.applyStorageClass(ctx, sc); err != nil {
			return err
		}
	}
	return cl.applyVolumeLabels(ctx)
}

// apply server-side applies obj with talforge's field manager. Force: talforge owns
// these fields; a kubectl edit of them is drift that talforge puts back.
func (cl *Client) apply(ctx context.Context, gvr schema.GroupVersionResource, obj *unstructured.Unstructured) error {
	var ri dynamic.ResourceInterface = cl.kube.Dyn.Resource(gvr)
	if ns := obj.GetNamespace(); ns != "" {
		ri = cl.kube.Dyn.Resource(gvr).Namespace(ns)
	}
	if _, err := ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("apply %s %s: %w", obj.GetKind(), obj.GetName(), err)
	}
	return nil
}

// applyStorageClass applies a StorageClass; parameters and reclaim policy are immutable,
// so a changed one is deleted and created again (existing volumes keep their PVs).
func (cl *Client) applyStorageClass(ctx context.Context, sc *unstructured.Unstructured) error {
	live, err := cl.kube.CS.StorageV1().StorageClasses().Get(ctx, sc.GetName(), metav1.GetOptions{})
	if err == nil && live.Labels[ManagedByLabel] != ManagedBy && cl.adoptedClass(sc.GetName()) {
		// Made by hand and adopted by the profile: the label is all talforge changes.
		if storageClassDiffers(sc, live) {
			return fmt.Errorf("StorageClass %s was adopted (longhorn.storageClasses[].adopted) but differs from the profile: %s; "+
				"a StorageClass cannot change, and talforge never re-creates one it adopted: make the profile say what the class is",
				sc.GetName(), describeDiffs(storageClassFieldDiffs(sc, live)))
		}
		if live.Labels == nil {
			live.Labels = map[string]string{}
		}
		live.Labels[ManagedByLabel] = ManagedBy
		cl.logf("StorageClass %s: adopted (labelled %s=%s)", sc.GetName(), ManagedByLabel, ManagedBy)
		if _, err := cl.kube.CS.StorageV1().StorageClasses().Update(ctx, live, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("adopt StorageClass %s: %w", sc.GetName(), err)
		}
		return nil
	}
	if err == nil && live.Labels[ManagedByLabel] != ManagedBy {
		// Someone else's StorageClass: re-creating it would change what its volumes get, and
		// applying over it would take it over. Neither is talforge's to decide.
		return fmt.Errorf("StorageClass %s exists and talforge did not create it (no label %s=%s, provisioner %s): "+
			"give the profile's StorageClass another name (longhorn.storageClasses), or delete or label that StorageClass yourself if it is meant to be talforge's",
			sc.GetName(), ManagedByLabel, ManagedBy, live.Provisioner)
	}
	if err == nil && storageClassDiffers(sc, live) {
		cl.logf("StorageClass %s changed: re-creating it (existing volumes are not affected)", sc.GetName())
		if err := cl.kube.CS.StorageV1().StorageClasses().Delete(ctx, sc.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("re-create StorageClass %s: %w", sc.GetName(), err)
		}
	} else if err == nil {
		// The same class, perhaps with a parameter left out where talforge writes Longhorn's
		// default (an adopted class): the apiserver refuses any change to the parameters map,
		// so send the live one and apply only what may change.
		sc = sc.DeepCopy()
		if err := unstructured.SetNestedStringMap(sc.Object, live.Parameters, "parameters"); err != nil {
			return fmt.Errorf("StorageClass %s: %w", sc.GetName(), err)
		}
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("read StorageClass %s: %w", sc.GetName(), err)
	}
	return cl.apply(ctx, storageClassGVR, sc)
}

// applyVolumeLabels puts the recurring-job labels on the Longhorn volumes behind the
// profile's declared claims. A claim that does not exist or is not bound yet is skipped: its
// StorageClass's recurringJobSelector labels the volume at birth, and the next run checks.
func (cl *Client) applyVolumeLabels(ctx context.Context) error {
	for _, v := range cl.cluster.Longhorn.Volumes {
		labels := VolumeLabels(v)
		if len(labels) == 0 {
			continue
		}
		name, err := cl.declaredVolume(ctx, v)
		if err != nil {
			return err
		}
		if name == "" {
			continue
		}
		lm := map[string]any{}
		for k, val := range labels {
			lm[k] = val
		}
		patch := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "longhorn.io/v1beta2", "kind": "Volume",
			"metadata": map[string]any{"name": name, "namespace": Namespace, "labels": lm},
		}}
		if err := cl.apply(ctx, VolumeGVR, patch); err != nil {
			return fmt.Errorf("claim %s/%s: %w", v.Namespace, v.Claim, err)
		}
	}
	return nil
}

// declaredVolume is the Longhorn volume behind a declared claim, or "" (with a log line)
// when there is none yet.
func (cl *Client) declaredVolume(ctx context.Context, v profile.Volume) (string, error) {
	r, err := claim.Resolve(ctx, cl.kube.CS, v.Namespace, v.Claim, v.Name)
	if err != nil {
		return "", err
	}
	if r.Volume == "" {
		why := "does not exist yet"
		if r.Exists {
			why = "is not bound yet (" + r.Phase + ")"
		}
		cl.logf("claim %s %s: its volume's recurring-job labels are applied on a later run", r, why)
		return "", nil
	}
	_, err = cl.kube.Resource(VolumeGVR).Get(ctx, r.Volume, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cl.logf("claim %s: Longhorn volume %s does not exist yet: its recurring-job labels are applied on a later run", r, r.Volume)
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("claim %s: read volume %s: %w", r, r.Volume, err)
	}
	return r.Volume, nil
}

// waitCRDs waits until the named CRDs are established (the chart creates them).
func (cl *Client) waitCRDs(ctx context.Context, names ...string) error {
	return cl.kube.Wait(ctx, 2*time.Minute, "Longhorn CRDs established", func(ctx context.Context) (bool, string, error) {
		for _, n := range names {
			crd, err := cl.ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, n, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, n + " does not exist", nil
			}
			if err != nil {
				return false, "", err
			}
			established := false
			for _, c := range crd.Status.Conditions {
				if c.Type == "Established" && c.Status == "True" {
					established = true
				}
			}
			if !established {
				return false, n + " is not established", nil
			}
		}
		return true, "", nil
	})
}

// describeDiffs lists differences for a message: "parameters.fsType: want "xfs", got "ext4"".
func describeDiffs(ds []Difference) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%s: want %s, got %s", d.Field, d.Want, d.Got))
	}
	return strings.Join(parts, "; ")
}
