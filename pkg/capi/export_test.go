package capi_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	sigyaml "sigs.k8s.io/yaml"

	"github.com/talforge/talforge/internal/testenv/kubeenv"
	"github.com/talforge/talforge/pkg/capi"
	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
)

// envRequireCRDs makes a missing CRD fixture fail the test instead of skipping it (CI).
const envRequireCRDs = "TALFORGE_REQUIRE_CAPI_CRDS"

// crdDir is ../shared/fixtures/capi beside the repository.
func crdDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "shared", "fixtures", "capi")
	if _, err := os.Stat(filepath.Join(dir, "cluster.x-k8s.io_clusters.yaml")); err != nil {
		if os.Getenv(envRequireCRDs) == "1" {
			t.Fatalf("the Cluster API CRD fixtures are missing (%v) and %s=1", err, envRequireCRDs)
		}
		t.Skipf("skipping: the Cluster API CRD fixtures are not at %s (they live beside the repository)", dir)
	}
	return dir
}

// noCRDFixture are the kinds whose CRDs ../shared/fixtures/capi does not hold: the Helm add-on
// provider's HelmChartProxy and CAPI's ClusterResourceSet (their fields follow CAAPH
// api/v1alpha1 helmchartproxy_types.go and CAPI api/addons/v1beta2 clusterresourceset_types.go).
var noCRDFixture = map[string]bool{"HelmChartProxy": true, "ClusterResourceSet": true}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installCRDs creates the upstream CRDs and waits until each is established.
func installCRDs(t *testing.T, dyn dynamic.Interface, dir string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) < 9 {
		t.Fatalf("CRD fixtures in %s: %v %v", dir, files, err)
	}
	var names []string
	for _, f := range files {
		for _, obj := range decodeAll(t, f) {
			if _, err := dyn.Resource(crdGVR).Create(t.Context(), obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("CRD %s: %v", obj.GetName(), err)
			}
			names = append(names, obj.GetName())
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, name := range names {
		for {
			u, err := dyn.Resource(crdGVR).Get(t.Context(), name, metav1.GetOptions{})
			if err == nil && established(u) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("CRD %s not established: %v", name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func established(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

func decodeAll(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(obj) > 0 {
			out = append(out, &unstructured.Unstructured{Object: obj})
		}
	}
}

// TestExportedObjectsAreAccepted: for the example profiles (tazlab on one PVE host, ha with
// three control planes and workers on two hosts), every exported object is created in a real
// kube-apiserver that serves the upstream CRDs of CAPI v1.13.5, CAPMOX v0.9.0, CACPPT v0.5.12
// and CABPT v0.6.12, with strict field validation (an unknown or misplaced field fails), and
// what the objects cannot say is reported field by field.
func TestExportedObjectsAreAccepted(t *testing.T) {
	dir := crdDir(t)
	kube := kubeenv.Start(t)
	dyn := dynamic.NewForConfigOrDie(kube.Config)
	installCRDs(t, dyn, dir)
	cs := kubernetes.NewForConfigOrDie(kube.Config)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(kube.Config)))

	for _, tt := range []struct {
		profile string
		lossy   []string
	}{
		{"tazlab", []string{"network.vip", "nodes[0].vmid (tazlab-cp-1)", "nodes[1].vmid (tazlab-worker-1)"}},
		{"ha", []string{"nodes[1].pveNode (cp-2)", "nodes[4].pveNode (worker-2)"}},
	} {
		t.Run(tt.profile, func(t *testing.T) {
			c, err := profile.Load(filepath.Join("..", "..", "profiles", tt.profile+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			r, err := generate.RenderThrowaway(t.Context(), c)
			if err != nil {
				t.Fatal(err)
			}
			ns := "fleet-" + tt.profile
			values, err := longhorn.RenderValues(c)
			if err != nil {
				t.Fatal(err)
			}
			manifests, err := longhorn.RenderManifests(c)
			if err != nil {
				t.Fatal(err)
			}
			const s3Secret = "s3-secret-key-for-the-test"
			creds := []byte("apiVersion: v1\nkind: Secret\nmetadata: {name: s3, namespace: longhorn-system}\nstringData: {AWS_SECRET_ACCESS_KEY: " + s3Secret + "}\n")
			exp, err := capi.Build(t.Context(), r, capi.Options{Namespace: ns,
				Longhorn: &capi.Longhorn{Version: c.Longhorn.Version, Values: values, Manifests: manifests, Credentials: creds}})
			if err != nil {
				t.Fatal(err)
			}
			var fields []string
			for _, l := range exp.Lossy {
				fields = append(fields, l.Field)
			}
			if !slices.Equal(fields, tt.lossy) || !errors.Is(exp.Err(), capi.ErrLossy) {
				t.Errorf("lossy fields %q, want %q", fields, tt.lossy)
			}

			if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			kinds := map[string]int{}
			for _, o := range append(slices.Clone(exp.Objects), exp.Secrets...) {
				kinds[o.Kind]++
				if noCRDFixture[o.Kind] {
					continue
				}
				create(t.Context(), t, dyn, mapper, o)
			}
			want := map[string]int{"Cluster": 1, "ProxmoxCluster": 1, "ProxmoxMachineTemplate": 2, "TalosControlPlane": 1,
				"TalosConfigTemplate": 1, "MachineDeployment": 1, "Secret": 2, "ConfigMap": 1, "HelmChartProxy": 1, "ClusterResourceSet": 1}
			for k, n := range want {
				if kinds[k] != n {
					t.Errorf("%d %s object(s), want %d", kinds[k], k, n)
				}
			}

			// Longhorn: the chart at the profile's version with talforge's values, the manifests and
			// the S3 credentials for the ClusterResourceSet, the credentials only among the Secrets.
			for _, o := range exp.Objects {
				switch o.Kind {
				case "HelmChartProxy":
					if o.Spec["version"] != c.Longhorn.Version || o.Spec["valuesTemplate"] != string(values) || o.Spec["chartName"] != "longhorn" {
						t.Errorf("HelmChartProxy: %v", o.Spec)
					}
				case "ClusterResourceSet":
					res := o.Spec["resources"].([]any)
					if len(res) != 2 || res[1].(map[string]any)["name"] != c.Metadata.Name+"-longhorn-credentials" {
						t.Errorf("ClusterResourceSet resources %v", res)
					}
				}
				if data, _ := sigyaml.Marshal(o); strings.Contains(string(data), s3Secret) {
					t.Errorf("%s %s holds the S3 secret key in clear", o.Kind, o.Metadata.Name)
				}
			}
			cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), c.Metadata.Name+"-longhorn-manifests", metav1.GetOptions{})
			if err != nil || cm.Data["manifests.yaml"] != string(manifests) {
				t.Errorf("the manifests ConfigMap: %v", err)
			}
			cred, err := cs.CoreV1().Secrets(ns).Get(t.Context(), c.Metadata.Name+"-longhorn-credentials", metav1.GetOptions{})
			if err != nil || string(cred.Type) != "addons.cluster.x-k8s.io/resource-set" || !strings.Contains(string(cred.Data["credentials.yaml"]), s3Secret) {
				t.Errorf("the credentials Secret: %v", err)
			}

			// The bundle Secret holds the cluster's own identity, as CABPT reads it.
			sec, err := cs.CoreV1().Secrets(ns).Get(t.Context(), c.Metadata.Name+"-talos", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if b := string(sec.Data["bundle"]); !strings.Contains(b, r.Bundle.Cluster.ID) || !strings.Contains(b, "k8sserviceaccount") {
				t.Errorf("the bundle Secret does not hold the cluster's bundle:\n%.200s", b)
			}
		})
	}
}

// create creates one exported object as the management cluster would receive it, rejecting
// unknown fields.
func create(ctx context.Context, t *testing.T, dyn dynamic.Interface, mapper meta.RESTMapper, o capi.Object) {
	t.Helper()
	data, err := sigyaml.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := sigyaml.Unmarshal(data, &obj); err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: obj}
	gvk := u.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Fatalf("%s: %v", gvk, err)
	}
	if _, err := dyn.Resource(m.Resource).Namespace(o.Metadata.Namespace).Create(ctx, u, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
		t.Errorf("%s %s refused: %v\n%s", o.Kind, o.Metadata.Name, err, data)
	}
}
