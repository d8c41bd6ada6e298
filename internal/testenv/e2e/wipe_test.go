package e2e

import (
	"context"
	"testing"
	"time"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// TestWipeLeavesNoCustomResourceBehind: a custom resource whose controller is gone keeps its
// finalizer. If the wipe removed its CRD before it, the object would stay in etcd and come
// back with the CRD (as Longhorn's volumes did when a rebuilt cluster installed Longhorn
// again): after a wipe and the CRD's return, there is none.
func TestWipeLeavesNoCustomResourceBehind(t *testing.T) {
	env := lab.Start(t, Options{})
	ctx := t.Context()
	ext := apiextclient.NewForConfigOrDie(env.Kube.Config).ApiextensionsV1().CustomResourceDefinitions()
	dyn := dynamic.NewForConfigOrDie(env.Kube.Config)
	gvr := schema.GroupVersionResource{Group: "wipetest.talforge.dev", Version: "v1", Resource: "widgets"}
	preserve := true
	crd := &apiextv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "widgets.wipetest.talforge.dev"},
		Spec: apiextv1.CustomResourceDefinitionSpec{
			Group: gvr.Group, Scope: apiextv1.NamespaceScoped,
			Names: apiextv1.CustomResourceDefinitionNames{Plural: "widgets", Singular: "widget", Kind: "Widget", ListKind: "WidgetList"},
			Versions: []apiextv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
				Schema: &apiextv1.CustomResourceValidation{OpenAPIV3Schema: &apiextv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: &preserve}}}},
		},
	}
	establish := func() {
		t.Helper()
		if _, err := ext.Create(ctx, crd, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := dyn.Resource(gvr).Namespace("default").List(ctx, metav1.ListOptions{})
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("CRD not served: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	establish()
	t.Cleanup(func() { _ = Wipe(context.Background(), env.Kube.Config) })
	w := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "wipetest.talforge.dev/v1", "kind": "Widget",
		"metadata": map[string]any{"name": "kept", "namespace": "default", "finalizers": []any{"wipetest.talforge.dev/controller-gone"}},
	}}
	if _, err := dyn.Resource(gvr).Namespace("default").Create(ctx, w, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	if err := Wipe(ctx, env.Kube.Config); err != nil {
		t.Fatal(err)
	}
	if _, err := ext.Get(ctx, crd.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the CRD survived the wipe: %v", err)
	}
	establish()
	list, err := dyn.Resource(gvr).Namespace("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) > 0 {
		t.Errorf("the wipe left %d widget(s) in etcd, back with their CRD: %s (deleting since %v)",
			len(list.Items), list.Items[0].GetName(), list.Items[0].GetDeletionTimestamp())
	}
}
