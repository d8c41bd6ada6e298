package longhorn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/release"
	corev1 "k8s.io/api/core/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/talforge/talforge/pkg/claim"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// Longhorn resources talforge reads or writes (longhorn.io/v1beta2).
var (
	settingGVR      = schema.GroupVersionResource{Group: "longhorn.io", Version: "v1beta2", Resource: "settings"}
	backupTargetGVR = schema.GroupVersionResource{Group: "longhorn.io", Version: "v1beta2", Resource: "backuptargets"}
	recurringJobGVR = schema.GroupVersionResource{Group: "longhorn.io", Version: "v1beta2", Resource: "recurringjobs"}
	volumeGVR       = schema.GroupVersionResource{Group: "longhorn.io", Version: "v1beta2", Resource: "volumes"}
	engineGVR       = schema.GroupVersionResource{Group: "longhorn.io", Version: "v1beta2", Resource: "engines"}
	storageClassGVR = schema.GroupVersionResource{Group: "storage.k8s.io", Version: "v1", Resource: "storageclasses"}
	namespaceGVR    = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
)

const (
	settingDeletingConfirmationFlag = "deleting-confirmation-flag"
	settingCurrentLonghornVersion   = "current-longhorn-version"
	defaultBackupTargetName         = "default"
	reasonFailedUpgradePreCheck     = "FailedUpgradePreCheck"
)

// Options configure a Client.
type Options struct {
	// Kubeconfig is the cluster's kubeconfig, decrypted in memory (required).
	Kubeconfig []byte
	// ChartCacheDir holds downloaded charts (default <user cache dir>/talforge/charts).
	ChartCacheDir string
	// Decrypt decrypts a sops file in memory (default sopsfile.DecryptFile).
	Decrypt func(path string) ([]byte, error)
	// HelmTimeout bounds each Helm action, hooks included (default 15m: Longhorn's hook
	// Jobs have a 900 s deadline).
	HelmTimeout time.Duration
	// BackupTargetTimeout bounds the wait for BackupTarget "default" (default 3m).
	BackupTargetTimeout time.Duration
	// HealthTimeout bounds each health gate of an upgrade (default 30m).
	HealthTimeout time.Duration
	// Poll is the interval of status polls (default 2s).
	Poll time.Duration
	// Log receives progress lines (default: discarded). Never secrets.
	Log io.Writer
	// Preflight, when set, checks the profile's backup target with the decrypted
	// credentials (the credential Secret's data) before Install and Upgrade run Helm; its
	// error stops them. cmd/talforge sets it to backuptarget.Preflight; nil skips the check.
	Preflight func(ctx context.Context, target string, creds map[string]string) error
}

// Client manages Longhorn on one cluster.
type Client struct {
	cluster *profile.Cluster
	opts    Options
	cs      kubernetes.Interface
	dyn     dynamic.Interface
	ext     apiextclient.Interface
	helm    *helmOps
}

// New checks the profile's Longhorn section and connects to the cluster (lazily: no
// request is made yet).
func New(c *profile.Cluster, opts Options) (*Client, error) {
	if c.Longhorn == nil {
		return nil, errors.New("the profile has no longhorn section: add one to manage Longhorn")
	}
	if len(opts.Kubeconfig) == 0 {
		return nil, errors.New("no kubeconfig")
	}
	if opts.ChartCacheDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("chart cache: %w (set a cache directory)", err)
		}
		opts.ChartCacheDir = filepath.Join(dir, "talforge", "charts")
	}
	if opts.Decrypt == nil {
		opts.Decrypt = sopsfile.DecryptFile
	}
	if opts.HelmTimeout == 0 {
		opts.HelmTimeout = 15 * time.Minute
	}
	if opts.BackupTargetTimeout == 0 {
		opts.BackupTargetTimeout = 3 * time.Minute
	}
	if opts.HealthTimeout == 0 {
		opts.HealthTimeout = 30 * time.Minute
	}
	if opts.Poll == 0 {
		opts.Poll = 2 * time.Second
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	g, err := newKubeGetter(opts.Kubeconfig, Namespace)
	if err != nil {
		return nil, err
	}
	cfg, _ := g.ToRESTConfig()
	cl := &Client{cluster: c, opts: opts}
	if cl.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if cl.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if cl.ext, err = apiextclient.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if cl.helm, err = newHelmOps(g, c.Longhorn.RepoURL, opts.ChartCacheDir, opts.HelmTimeout, func(string, ...any) {}); err != nil {
		return nil, err
	}
	return cl, nil
}

func (cl *Client) logf(format string, args ...any) {
	fmt.Fprintf(cl.opts.Log, format+"\n", args...)
}

// ErrDeletionConfirmed is returned by every operation while Longhorn's
// deleting-confirmation-flag is "true".
var ErrDeletionConfirmed = errors.New(`the Longhorn setting deleting-confirmation-flag is "true"`)

// preflight refuses to touch anything while deleting-confirmation-flag is "true": with
// it, a Helm operation that ends in an uninstall (a failed --atomic install, a mistaken
// `helm uninstall`) deletes every volume and its replica data.
func (cl *Client) preflight(ctx context.Context) error {
	v, ok, err := cl.setting(ctx, settingDeletingConfirmationFlag)
	if err != nil {
		return fmt.Errorf("read setting %s: %w", settingDeletingConfirmationFlag, err)
	}
	if ok && v == "true" {
		return fmt.Errorf("refusing to run: %w, so an uninstall would delete every Longhorn volume and its data. "+
			"If that is not what you want, set it back first: kubectl -n %s patch settings.longhorn.io %s --type merge -p '{\"value\":\"false\"}'",
			ErrDeletionConfirmed, Namespace, settingDeletingConfirmationFlag)
	}
	return nil
}

// setting reads a Setting's value; ok is false when it or its CRD does not exist.
func (cl *Client) setting(ctx context.Context, name string) (string, bool, error) {
	u, err := cl.dyn.Resource(settingGVR).Namespace(Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	v, _, _ := unstructured.NestedString(u.Object, "value")
	return v, true, nil
}

// InstallResult says what Install did.
type InstallResult struct {
	// Action is "install", "upgrade" (values changed) or "unchanged".
	Action   string
	Version  string
	Revision int
}

// Install converges Longhorn on the profile at the profile's version: namespace and
// credentials Secret, the chart (first install, or an upgrade at the same version when
// the values changed; nothing when they did not), RecurringJobs, StorageClasses and
// volume labels, then waits for BackupTarget "default". It never changes the installed
// version: that is Upgrade's job, one minor at a time. Before any Helm action it runs
// Options.Preflight on the backup target, when set.
func (cl *Client) Install(ctx context.Context) (*InstallResult, error) {
	l := cl.cluster.Longhorn
	version := l.Version
	vals, err := Values(cl.cluster, version)
	if err != nil {
		return nil, err
	}
	objs, err := BuildObjects(cl.cluster, version)
	if err != nil {
		return nil, err
	}
	if err := cl.preflight(ctx); err != nil {
		return nil, err
	}
	if err := cl.backupPreflight(ctx); err != nil {
		return nil, err
	}
	rel, err := cl.helm.lastRelease()
	if err != nil {
		return nil, err
	}
	if err := notPending(rel); err != nil {
		return nil, err
	}
	res := &InstallResult{Version: version}
	if rel != nil {
		installed := rel.Chart.Metadata.Version
		if installed != version {
			return nil, versionMismatch(installed, version)
		}
	}
	if err := cl.applyPreChart(ctx, objs); err != nil {
		return nil, err
	}
	switch {
	case rel == nil:
		ch, err := cl.helm.chart(version)
		if err != nil {
			return nil, err
		}
		cl.logf("helm install %s %s", ChartName, version)
		r, err := cl.helm.install(ctx, ch, vals, false)
		if err != nil {
			return nil, fmt.Errorf("helm install longhorn %s: %w", version, err)
		}
		res.Action, res.Revision = "install", r.Version
	case rel.Info.Status == "deployed" && sameValues(rel.Config, vals):
		cl.logf("helm release longhorn %s (revision %d): unchanged", version, rel.Version)
		res.Action, res.Revision = "unchanged", rel.Version
	default:
		r, err := cl.upgradeTo(ctx, version, vals)
		if err != nil {
			return nil, err
		}
		res.Action, res.Revision = "upgrade", r
	}
	if err := cl.applyPostChart(ctx, objs); err != nil {
		return nil, err
	}
	if res.Action != "unchanged" {
		if err := cl.waitSettings(ctx); err != nil {
			return nil, err
		}
	}
	if err := cl.waitBackupTarget(ctx); err != nil {
		return nil, err
	}
	return res, nil
}

// waitSettings waits until longhorn-manager has applied the owned defaultSettings from the
// chart's ConfigMap to the Setting CRs (it does so asynchronously, at start and on every
// change of the ConfigMap).
func (cl *Client) waitSettings(ctx context.Context) error {
	return cl.poll(ctx, cl.opts.BackupTargetTimeout, "Longhorn settings applied", func() (bool, string, error) {
		var pending []string
		for _, s := range OwnedSettings(cl.cluster.Longhorn) {
			got, ok, err := cl.setting(ctx, s.Setting)
			if err != nil {
				return false, "", err
			}
			if !ok || !settingEqual(s.Value, got) {
				pending = append(pending, fmt.Sprintf("%s is %q, want %q", s.Setting, got, s.Value))
			}
		}
		return len(pending) == 0, strings.Join(pending, "; "), nil
	})
}

// notPending refuses to start while the release is in a pending state (an interrupted
// run): Helm would refuse anyway, and the way out needs a person to look.
func notPending(rel *release.Release) error {
	if rel == nil || !rel.Info.Status.IsPending() {
		return nil
	}
	return fmt.Errorf("the Helm release %s/%s is %s at revision %d (chart %s), probably from an interrupted run; "+
		"check `helm history %s -n %s`, and once nothing is running, `helm rollback %s <revision> -n %s` to the last deployed revision "+
		"whose chart version equals Longhorn's current-longhorn-version (a rollback to an older version is a downgrade Longhorn refuses)",
		Namespace, ReleaseName, rel.Info.Status, rel.Version, rel.Chart.Metadata.Version, ReleaseName, Namespace, ReleaseName, Namespace)
}

func versionMismatch(installed, wanted string) error {
	iv, err1 := parseVersion(installed)
	wv, err2 := parseVersion(wanted)
	if err1 == nil && err2 == nil && wv.LessThan(iv) {
		return fmt.Errorf("installed Longhorn %s is newer than the profile's %s: Longhorn cannot be downgraded; set longhorn.version to %s", installed, wanted, installed)
	}
	return fmt.Errorf("installed Longhorn %s differs from the profile's %s: install never changes the version; run `talforge longhorn upgrade --to %s` (it goes one minor at a time, with health checks between steps)", installed, wanted, wanted)
}

// upgradeTo runs helm upgrade to version and, when Longhorn's pre-upgrade hook refused
// it, says why with Longhorn's own message.
func (cl *Client) upgradeTo(ctx context.Context, version string, vals map[string]any) (int, error) {
	ch, err := cl.helm.chart(version)
	if err != nil {
		return 0, err
	}
	started := time.Now()
	cl.logf("helm upgrade %s to %s", ChartName, version)
	r, err := cl.helm.upgrade(ctx, ch, vals)
	if err != nil {
		if msg := cl.preUpgradeRefusal(ctx, started); msg != "" {
			return 0, fmt.Errorf("the Longhorn pre-upgrade check refused the upgrade to %s: %s (helm: %w)", version, msg, err)
		}
		return 0, fmt.Errorf("helm upgrade longhorn to %s: %w", version, err)
	}
	return r.Version, nil
}

// preUpgradeRefusal finds the FailedUpgradePreCheck event Longhorn's pre-upgrade Job
// emitted since started (the Job itself is gone: its hook-delete-policy includes
// hook-failed).
func (cl *Client) preUpgradeRefusal(ctx context.Context, started time.Time) string {
	evs, err := cl.cs.CoreV1().Events(Namespace).List(ctx, metav1.ListOptions{FieldSelector: "reason=" + reasonFailedUpgradePreCheck})
	if err != nil {
		return ""
	}
	var newest *corev1.Event
	for i := range evs.Items {
		e := &evs.Items[i]
		if eventTime(e).Before(started.Add(-2 * time.Second)) {
			continue
		}
		if newest == nil || eventTime(e).After(eventTime(newest)) {
			newest = e
		}
	}
	if newest == nil {
		return ""
	}
	return newest.Message
}

func eventTime(e *corev1.Event) time.Time {
	for _, t := range []time.Time{e.LastTimestamp.Time, e.EventTime.Time, e.FirstTimestamp.Time} {
		if !t.IsZero() {
			return t
		}
	}
	return e.CreationTimestamp.Time
}

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
	secrets := cl.cs.CoreV1().Secrets(Namespace)
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
		got.Labels[ManagedByLabel] = managedBy
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
		if err := cl.apply(ctx, recurringJobGVR, rj); err != nil {
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
	var ri dynamic.ResourceInterface = cl.dyn.Resource(gvr)
	if ns := obj.GetNamespace(); ns != "" {
		ri = cl.dyn.Resource(gvr).Namespace(ns)
	}
	if _, err := ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("apply %s %s: %w", obj.GetKind(), obj.GetName(), err)
	}
	return nil
}

// applyStorageClass applies a StorageClass; parameters and reclaim policy are immutable,
// so a changed one is deleted and created again (existing volumes keep their PVs).
func (cl *Client) applyStorageClass(ctx context.Context, sc *unstructured.Unstructured) error {
	live, err := cl.cs.StorageV1().StorageClasses().Get(ctx, sc.GetName(), metav1.GetOptions{})
	if err == nil && live.Labels[ManagedByLabel] != managedBy {
		// Someone else's StorageClass: re-creating it would change what its volumes get, and
		// applying over it would take it over. Neither is talforge's to decide.
		return fmt.Errorf("StorageClass %s exists and talforge did not create it (no label %s=%s, provisioner %s): "+
			"give the profile's StorageClass another name (longhorn.storageClasses), or delete or label that StorageClass yourself if it is meant to be talforge's",
			sc.GetName(), ManagedByLabel, managedBy, live.Provisioner)
	}
	if err == nil && storageClassDiffers(sc, live) {
		cl.logf("StorageClass %s changed: re-creating it (existing volumes are not affected)", sc.GetName())
		if err := cl.cs.StorageV1().StorageClasses().Delete(ctx, sc.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("re-create StorageClass %s: %w", sc.GetName(), err)
		}
	} else if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("read StorageClass %s: %w", sc.GetName(), err)
	}
	return cl.apply(ctx, storageClassGVR, sc)
}

// applyVolumeLabels puts the recurring-job labels on the Longhorn volumes behind the
// profile's declared claims. A claim that does not exist or is not bound yet is skipped: its
// StorageClass's recurringJobSelector labels the volume at birth, and the next run checks.
func (cl *Client) applyVolumeLabels(ctx context.Context) error {
	for _, v := range cl.cluster.Longhorn.Volumes {
		labels := volumeLabels(v)
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
		if err := cl.apply(ctx, volumeGVR, patch); err != nil {
			return fmt.Errorf("claim %s/%s: %w", v.Namespace, v.Claim, err)
		}
	}
	return nil
}

// declaredVolume is the Longhorn volume behind a declared claim, or "" (with a log line)
// when there is none yet.
func (cl *Client) declaredVolume(ctx context.Context, v profile.Volume) (string, error) {
	r, err := claim.Resolve(ctx, cl.cs, v.Namespace, v.Claim, v.Name)
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
	_, err = cl.dyn.Resource(volumeGVR).Namespace(Namespace).Get(ctx, r.Volume, metav1.GetOptions{})
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
	return cl.poll(ctx, 2*time.Minute, "Longhorn CRDs established", func() (bool, string, error) {
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

// waitBackupTarget waits for BackupTarget "default" to point at the profile's target and
// be available, and otherwise says why from its status.
func (cl *Client) waitBackupTarget(ctx context.Context) error {
	b := cl.cluster.Longhorn.Backup
	if b == nil {
		return nil
	}
	err := cl.poll(ctx, cl.opts.BackupTargetTimeout, "BackupTarget "+defaultBackupTargetName+" available", func() (bool, string, error) {
		st, err := cl.backupTarget(ctx)
		if err != nil {
			return false, "", err
		}
		switch {
		case !st.Exists:
			return false, "it does not exist yet (longhorn-manager creates it from the longhorn-default-resource ConfigMap)", nil
		case st.URL != b.Target:
			return false, fmt.Sprintf("it points at %q, not %q yet", st.URL, b.Target), nil
		case !st.Available:
			if st.Message == "" {
				return false, "Longhorn has not reported it available", nil
			}
			return false, "Longhorn reports: " + st.Message, nil
		}
		return true, "", nil
	})
	if err != nil {
		return fmt.Errorf("backups are not working: %w", err)
	}
	cl.logf("BackupTarget %s available: %s", defaultBackupTargetName, b.Target)
	return nil
}

// BackupTargetStatus is what Longhorn reports about BackupTarget "default".
type BackupTargetStatus struct {
	Exists       bool
	URL          string
	Secret       string
	PollInterval string
	Available    bool
	Message      string
}

func (cl *Client) backupTarget(ctx context.Context) (BackupTargetStatus, error) {
	u, err := cl.dyn.Resource(backupTargetGVR).Namespace(Namespace).Get(ctx, defaultBackupTargetName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return BackupTargetStatus{}, nil
	}
	if err != nil {
		return BackupTargetStatus{}, err
	}
	st := BackupTargetStatus{Exists: true}
	st.URL, _, _ = unstructured.NestedString(u.Object, "spec", "backupTargetURL")
	st.Secret, _, _ = unstructured.NestedString(u.Object, "spec", "credentialSecret")
	st.PollInterval, _, _ = unstructured.NestedString(u.Object, "spec", "pollInterval")
	st.Available, _, _ = unstructured.NestedBool(u.Object, "status", "available")
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["status"] == "True" {
			if msg, _ := m["message"].(string); msg != "" {
				st.Message = msg
			}
		}
	}
	return st, nil
}

// poll calls check every Poll until it reports done, fails, or timeout passes; the
// timeout error carries check's last explanation.
func (cl *Client) poll(ctx context.Context, timeout time.Duration, what string, check func() (bool, string, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		done, why, err := check()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not after %s: %s", what, timeout, why)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %s)", what, ctx.Err(), why)
		case <-time.After(cl.opts.Poll):
		}
	}
}
