// The Longhorn half of a hand-made cluster: `helm install` with the person's values.yaml,
// `kubectl create secret`, `kubectl apply -f` of RecurringJobs and StorageClasses, claims,
// and backups from the UI or from a RecurringJob.

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/talforge/talforge/internal/testenv/lhchart"
	"github.com/talforge/talforge/internal/testenv/lhmanager"
)

// HandMadeLonghorn is Longhorn as the person installed and used it.
type HandMadeLonghorn struct {
	// Release (default "longhorn") and Namespace (default "longhorn-system") of
	// `helm install RELEASE longhorn/longhorn -n NAMESPACE`.
	Release, Namespace string
	// Version is the chart version (--version), one of lhchart.Versions.
	Version string
	// Values is the values.yaml given with -f, as the person wrote it, e.g.
	//
	//	defaultBackupStore:
	//	  backupTarget: s3://homelab-backups@us-east-1/
	//	  backupTargetCredentialSecret: s3-backup
	//	persistence:
	//	  defaultClassReplicaCount: 2
	//
	// The buckets of s3:// URLs in it are created on the Env's S3 server first.
	Values string
	// CredentialSecret, when set, is created in Namespace before the install with the Env's
	// S3 credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINTS), as
	// `kubectl create secret generic` would.
	CredentialSecret string
	// RecurringJobs and StorageClasses are YAML manifests applied after the install, as
	// `kubectl apply -f` would (a RecurringJob without a namespace goes to Namespace).
	RecurringJobs, StorageClasses []string
	// Claims are created and waited for until bound (the Env's longhorn-manager provisions
	// them).
	Claims []HandMadeClaim
	// Backups are taken in order once every claim is bound.
	Backups []HandMadeBackup
}

// HandMadeClaim is a PersistentVolumeClaim of an application.
type HandMadeClaim struct {
	Namespace, Name string
	// Size is the requested storage, e.g. "1Gi".
	Size string
	// StorageClass is the claim's class; empty: the cluster's default class.
	StorageClass string
	// Data, when set, is written at the start of the volume (what the application stored).
	Data []byte
}

// HandMadeBackup is one backup action: exactly one of Job and Claim is set.
type HandMadeBackup struct {
	// Job runs the RecurringJob now, as its cron would (lhmanager.RunRecurringJob).
	Job string
	// Claim ("namespace/name") is backed up from the Longhorn UI: a snapshot, then a backup
	// of it labelled with the volume's KubernetesStatus (longhorn-manager api/snapshot.go).
	Claim string
}

// HandMadeBackupResult is a backup HandMade took.
type HandMadeBackupResult struct {
	// Name is the Backup object's name, Volume its volume, URL its backup URL.
	Name, Volume, URL string
	// Claim is the claim the volume was bound to ("namespace/name").
	Claim string
}

func (l *HandMadeLonghorn) defaults() {
	if l.Release == "" {
		l.Release = lhchart.Name
	}
	if l.Namespace == "" {
		l.Namespace = "longhorn-system"
	}
}

func (e *Env) handMadeLonghorn(ctx context.Context, l *HandMadeLonghorn, h *HandMade) error {
	l.defaults()
	dir, err := os.MkdirTemp("", "talforge-handmade-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir) //nolint:errcheck // a temp dir
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, h.Kubeconfig, 0o600); err != nil {
		return err
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(h.Kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}

	if err := e.createBuckets(ctx, l.Values); err != nil {
		return err
	}
	// The Longhorn docs for Talos: the namespace runs privileged pods.
	if err := ensureNamespace(ctx, cs, l.Namespace, map[string]string{
		"pod-security.kubernetes.io/enforce": "privileged", "pod-security.kubernetes.io/audit": "privileged", "pod-security.kubernetes.io/warn": "privileged",
	}); err != nil {
		return err
	}
	if l.CredentialSecret != "" {
		data := map[string][]byte{}
		for k, v := range e.S3Credentials() {
			data[k] = []byte(v)
		}
		if _, err := cs.CoreV1().Secrets(l.Namespace).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: l.CredentialSecret, Namespace: l.Namespace}, Type: corev1.SecretTypeOpaque, Data: data,
		}, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("credential secret %s: %w", l.CredentialSecret, err)
		}
	}
	if err := e.helmInstall(ctx, l, dir, kubeconfigPath); err != nil {
		return err
	}

	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cs.Discovery()))
	for _, m := range append(append([]string(nil), l.RecurringJobs...), l.StorageClasses...) {
		if err := kubectlApply(ctx, dyn, mapper, l.Namespace, m); err != nil {
			return err
		}
	}

	for _, c := range l.Claims {
		vol, err := e.handMadeClaim(ctx, cs, c)
		if err != nil {
			return fmt.Errorf("claim %s/%s: %w", c.Namespace, c.Name, err)
		}
		h.Volumes[c.Namespace+"/"+c.Name] = vol
	}
	// A person backs up once the UI shows the backup target available.
	if len(l.Backups) > 0 {
		if err := waitBackupTargetAvailable(ctx, dyn, l.Namespace); err != nil {
			return err
		}
	}
	for _, b := range l.Backups {
		res, err := e.handMadeBackup(ctx, dyn, l.Namespace, b, h.Volumes)
		if err != nil {
			return fmt.Errorf("backup %+v: %w", b, err)
		}
		h.Backups = append(h.Backups, res...)
	}
	return nil
}

// helmInstall is `helm repo add longhorn URL && helm install RELEASE longhorn/longhorn -n NS
// --version V -f values.yaml`, with Helm's own chart lookup and values reading
// (pkg/cli/values/options.go reads -f files with the same YAML decoding as ReadValues).
func (e *Env) helmInstall(ctx context.Context, l *HandMadeLonghorn, dir, kubeconfigPath string) error {
	settings := cli.New()
	settings.KubeConfig = kubeconfigPath
	settings.SetNamespace(l.Namespace)
	settings.RepositoryCache = filepath.Join(dir, "helm-cache")
	settings.RepositoryConfig = filepath.Join(dir, "repositories.yaml")
	// The CLI's kube flags, with their discovery cache kept out of $HOME.
	flags := genericclioptions.NewConfigFlags(true)
	cacheDir, ns := filepath.Join(dir, "kube-cache"), l.Namespace
	flags.KubeConfig, flags.CacheDir, flags.Namespace = &kubeconfigPath, &cacheDir, &ns

	cfg := new(action.Configuration)
	if err := cfg.Init(flags, l.Namespace, "secret", func(string, ...any) {}); err != nil {
		return fmt.Errorf("helm: %w", err)
	}
	in := action.NewInstall(cfg)
	in.ReleaseName, in.Namespace = l.Release, l.Namespace
	in.Version, in.RepoURL = l.Version, e.Repo.URL
	in.Timeout = time.Minute
	path, err := in.LocateChart(lhchart.Name, settings)
	if err != nil {
		return fmt.Errorf("helm: chart %s %s: %w", lhchart.Name, l.Version, err)
	}
	ch, err := loader.Load(path)
	if err != nil {
		return fmt.Errorf("helm: %w", err)
	}
	vals, err := chartutil.ReadValues([]byte(l.Values))
	if err != nil {
		return fmt.Errorf("helm: values: %w", err)
	}
	if _, err := in.RunWithContext(ctx, ch, vals); err != nil {
		return fmt.Errorf("helm install %s: %w", l.Release, err)
	}
	return nil
}

func ensureNamespace(ctx context.Context, cs kubernetes.Interface, name string, labels map[string]string) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	return nil
}

// kubectlApply creates the objects of a YAML manifest as `kubectl apply -f` does the first
// time: with the last-applied-configuration annotation holding the manifest
// (k8s.io/kubectl pkg/util/apply.go CreateApplyAnnotation).
func kubectlApply(ctx context.Context, dyn dynamic.Interface, mapper *restmapper.DeferredDiscoveryRESTMapper, defaultNS, manifest string) error {
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("manifest: %w", err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		gvk := obj.GroupVersionKind()
		var mapping *meta.RESTMapping
		// The chart's CRDs are served a moment after the install.
		if err := retry(ctx, func(context.Context) error {
			var err error
			if mapping, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
				mapper.Reset()
			}
			return err
		}); err != nil {
			return fmt.Errorf("%s: %w", gvk, err)
		}
		original, err := json.Marshal(obj.Object)
		if err != nil {
			return err
		}
		ann := obj.GetAnnotations()
		if ann == nil {
			ann = map[string]string{}
		}
		ann[corev1.LastAppliedConfigAnnotation] = string(original)
		obj.SetAnnotations(ann)
		var res dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == "namespace" {
			if obj.GetNamespace() == "" {
				obj.SetNamespace(defaultNS)
			}
			res = dyn.Resource(mapping.Resource).Namespace(obj.GetNamespace())
		}
		if _, err := res.Create(ctx, &obj, metav1.CreateOptions{FieldManager: "kubectl-client-side-apply"}); err != nil {
			return fmt.Errorf("apply %s %s: %w", gvk.Kind, obj.GetName(), err)
		}
	}
}

// handMadeClaim creates the claim, waits until it is bound and writes its data; it returns
// the Longhorn volume's name.
func (e *Env) handMadeClaim(ctx context.Context, cs kubernetes.Interface, c HandMadeClaim) (string, error) {
	if err := ensureNamespace(ctx, cs, c.Namespace, nil); err != nil {
		return "", err
	}
	size, err := resource.ParseQuantity(c.Size)
	if err != nil {
		return "", fmt.Errorf("size %q: %w", c.Size, err)
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: c.Name, Namespace: c.Namespace},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}
	if c.StorageClass != "" {
		pvc.Spec.StorageClassName = &c.StorageClass
	}
	if _, err := cs.CoreV1().PersistentVolumeClaims(c.Namespace).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	var vol string
	if err := retry(ctx, func(ctx context.Context) error {
		got, err := cs.CoreV1().PersistentVolumeClaims(c.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got.Status.Phase != corev1.ClaimBound || got.Spec.VolumeName == "" {
			return fmt.Errorf("not bound (phase %q)", got.Status.Phase)
		}
		vol = got.Spec.VolumeName
		return nil
	}); err != nil {
		return "", err
	}
	if len(c.Data) > 0 {
		if err := e.Data().Write(vol, 0, c.Data); err != nil {
			return "", fmt.Errorf("write data: %w", err)
		}
	}
	return vol, nil
}

// handMadeBackup takes one backup action and returns the backups it made.
func (e *Env) handMadeBackup(ctx context.Context, dyn dynamic.Interface, ns string, b HandMadeBackup, volumes map[string]string) ([]HandMadeBackupResult, error) {
	if (b.Job == "") == (b.Claim == "") {
		return nil, errors.New("set exactly one of Job and Claim")
	}
	backups := dyn.Resource(lhmanager.BackupGVR).Namespace(ns)
	before := map[string]bool{}
	list, err := backups.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, it := range list.Items {
		before[it.GetName()] = true
	}
	// The claims' volumes must know their claim first, or the backups carry no
	// KubernetesStatus label (the manager's PV controller sets it).
	for claim, vol := range volumes {
		if err := retry(ctx, func(ctx context.Context) error {
			v, err := dyn.Resource(lhmanager.VolumeGVR).Namespace(ns).Get(ctx, vol, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if pvc, _, _ := unstructured.NestedString(v.Object, "status", "kubernetesStatus", "pvcName"); pvc == "" {
				return fmt.Errorf("volume %s of %s: no kubernetesStatus yet", vol, claim)
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}

	if b.Job != "" {
		if err := e.Manager().RunRecurringJob(ctx, b.Job); err != nil {
			return nil, err
		}
	} else {
		vol, ok := volumes[b.Claim]
		if !ok {
			return nil, fmt.Errorf("claim %s is not one of the claims", b.Claim)
		}
		if err := uiBackup(ctx, dyn, ns, vol); err != nil {
			return nil, err
		}
	}

	claimOf := map[string]string{}
	for c, v := range volumes {
		claimOf[v] = c
	}
	list, err = backups.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []HandMadeBackupResult
	for _, it := range list.Items {
		if before[it.GetName()] {
			continue
		}
		vol, _, _ := unstructured.NestedString(it.Object, "status", "volumeName")
		url, _, _ := unstructured.NestedString(it.Object, "status", "url")
		out = append(out, HandMadeBackupResult{Name: it.GetName(), Volume: vol, URL: url, Claim: claimOf[vol]})
	}
	return out, nil
}

// uiBackup is the UI's "Create Backup": longhorn-manager's SnapshotBackup (api/snapshot.go)
// takes a snapshot, then a backup of it labelled KubernetesStatus=<the volume's
// status.kubernetesStatus as JSON>, and the backup controller uploads it.
func uiBackup(ctx context.Context, dyn dynamic.Interface, ns, vol string) error {
	v, err := dyn.Resource(lhmanager.VolumeGVR).Namespace(ns).Get(ctx, vol, metav1.GetOptions{})
	if err != nil {
		return err
	}
	ks, _, _ := unstructured.NestedMap(v.Object, "status", "kubernetesStatus")
	// A map marshals its keys sorted, upstream's struct in field order: both parse the same.
	label, err := json.Marshal(ks)
	if err != nil {
		return err
	}
	// The UI names the snapshot with a UUID, the manager the backup with bsutil.GenerateName.
	snap := randomUUID()
	snaps := dyn.Resource(lhmanager.SnapshotGVR).Namespace(ns)
	if _, err := snaps.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "longhorn.io/v1beta2", "kind": "Snapshot",
		"metadata": map[string]any{"name": snap, "namespace": ns, "labels": map[string]any{"longhornvolume": vol}},
		"spec":     map[string]any{"volume": vol, "createSnapshot": true},
	}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := retry(ctx, func(ctx context.Context) error {
		s, err := snaps.Get(ctx, snap, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ready, _, _ := unstructured.NestedBool(s.Object, "status", "readyToUse"); !ready {
			return fmt.Errorf("snapshot %s not ready", snap)
		}
		return nil
	}); err != nil {
		return err
	}
	name := "backup-" + hex.EncodeToString(randomBytes(8))
	backups := dyn.Resource(lhmanager.BackupGVR).Namespace(ns)
	if _, err := backups.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "longhorn.io/v1beta2", "kind": "Backup",
		"metadata": map[string]any{"name": name, "namespace": ns,
			"labels": map[string]any{lhmanager.LabelBackupVolume: vol, lhmanager.LabelBackupTarget: lhmanager.DefaultBackupTarget}},
		"spec": map[string]any{"snapshotName": snap, "labels": map[string]any{lhmanager.KubernetesStatusLabel: string(label)}},
	}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return retry(ctx, func(ctx context.Context) error {
		b, err := backups.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		switch state, _, _ := unstructured.NestedString(b.Object, "status", "state"); state {
		case lhmanager.BackupStateCompleted:
			return nil
		case lhmanager.BackupStateError:
			msg, _, _ := unstructured.NestedString(b.Object, "status", "error")
			return stop(fmt.Errorf("backup %s failed: %s", name, msg))
		default:
			return fmt.Errorf("backup %s in state %q", name, state)
		}
	})
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return b
}

func randomUUID() string {
	b := randomBytes(16)
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// waitBackupTargetAvailable waits up to 30 s for BackupTarget "default" to be available.
func waitBackupTargetAvailable(ctx context.Context, dyn dynamic.Interface, ns string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		bt, err := dyn.Resource(lhmanager.BackupTargetGVR).Namespace(ns).Get(ctx, lhmanager.DefaultBackupTarget, metav1.GetOptions{})
		if err == nil {
			if ok, _, _ := unstructured.NestedBool(bt.Object, "status", "available"); ok {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("backup target %s is not available after 30s (%v)", lhmanager.DefaultBackupTarget, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
