package lhmanager

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/talforge/talforge/internal/testenv/lhdata"
)

// Names shared with the chart and with the real Longhorn.
const (
	Namespace                       = "longhorn-system"
	DefaultSettingConfigMap         = "longhorn-default-setting"
	DefaultResourceConfigMap        = "longhorn-default-resource"
	StorageClassConfigMap           = "longhorn-storageclass"
	ManagerDaemonSet                = "longhorn-manager"
	PreUpgradeJob                   = "longhorn-pre-upgrade"
	UninstallJob                    = "longhorn-uninstall"
	DefaultBackupTarget             = "default"
	DefaultStorageClass             = "longhorn"
	SettingCurrentLonghornVersion   = "current-longhorn-version"
	SettingDeletingConfirmationFlag = "deleting-confirmation-flag"
	ReasonFailedUpgradePreCheck     = "FailedUpgradePreCheck"

	annotationConfigMapResourceVersion = "longhorn.io/configmap-resource-version"
	annotationLastAppliedConfigMap     = "longhorn.io/last-applied-configmap"
	group                              = "longhorn.io"
	version                            = "v1beta2"
)

// Longhorn resources (longhorn.io/v1beta2).
var (
	SettingGVR      = schema.GroupVersionResource{Group: group, Version: version, Resource: "settings"}
	BackupTargetGVR = schema.GroupVersionResource{Group: group, Version: version, Resource: "backuptargets"}
	RecurringJobGVR = schema.GroupVersionResource{Group: group, Version: version, Resource: "recurringjobs"}
	VolumeGVR       = schema.GroupVersionResource{Group: group, Version: version, Resource: "volumes"}
	EngineGVR       = schema.GroupVersionResource{Group: group, Version: version, Resource: "engines"}
	BackupVolumeGVR = schema.GroupVersionResource{Group: group, Version: version, Resource: "backupvolumes"}
	BackupGVR       = schema.GroupVersionResource{Group: group, Version: version, Resource: "backups"}
)

// uninstallRefusal is upstream's message (controller/uninstall_controller.go checkPreconditions).
const uninstallRefusal = "cannot uninstall Longhorn because deleting-confirmation-flag is set to `false`. Please set it to `true` using Longhorn UI or kubectl -n longhorn-system edit settings.longhorn.io deleting-confirmation-flag"

// Options configure a Manager.
type Options struct {
	// Namespace Longhorn is installed in (default longhorn-system).
	Namespace string
	// Logf receives what the manager did or could not do (default: discarded).
	Logf func(format string, args ...any)
	// Resync is the period of a full reconcile besides watch events (default 300 ms).
	Resync time.Duration
	// Data holds the volumes' data. With it the Manager is backed by real data and a real
	// backup store: RunBackups must run beside Run, it decides the backup target's
	// availability by reaching the store and performs snapshots, backups, restores, clones
	// and provisioning. Without it there is no data path, the backup target's availability
	// is judged from its URL and Secret alone and backups can only be simulated.
	Data *lhdata.Store
}

// Manager is the fake longhorn-manager.
type Manager struct {
	cs     kubernetes.Interface
	dyn    dynamic.Interface
	ns     string
	logf   func(string, ...any)
	resync time.Duration
	kick   chan struct{}
	data   *lhdata.Store

	cms     corelisters.ConfigMapLister
	secrets corelisters.SecretLister
	jobs    batchlisters.JobLister
	dss     appslisters.DaemonSetLister
	deploys appslisters.DeploymentLister
	scs     storagelisters.StorageClassLister

	// state of the reconcile loop, touched only by Run's goroutine
	appliedSettingRV, appliedResourceRV string

	mu            sync.Mutex
	rolloutPaused bool
	storeError    string
	checks        []string
}

// New connects to the apiserver of cfg.
func New(cfg *rest.Config, opts Options) (*Manager, error) {
	// The apiserver warns on every write of Longhorn's finalizer "longhorn.io" (not
	// domain-qualified with a path); upstream lives with it, tests need not read it.
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler = rest.NoWarnings{}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	m := &Manager{cs: cs, dyn: dyn, ns: opts.Namespace, logf: opts.Logf, resync: opts.Resync, kick: make(chan struct{}, 1), data: opts.Data}
	if m.ns == "" {
		m.ns = Namespace
	}
	if m.logf == nil {
		m.logf = func(string, ...any) {}
	}
	if m.resync == 0 {
		m.resync = 300 * time.Millisecond
	}
	return m, nil
}

// Data is the volume data (Options.Data; nil without). Tests write and read volume bytes
// through it.
func (m *Manager) Data() *lhdata.Store { return m.data }

// Start runs a Manager without a data path (no Options.Data) for the test's duration.
func Start(t testing.TB, cfg *rest.Config) *Manager {
	t.Helper()
	m, err := New(cfg, Options{Logf: func(f string, a ...any) { t.Logf("lhmanager: "+f, a...) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("lhmanager: %v", err)
		}
	})
	return m
}

// Run reconciles until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	nsf := informers.NewSharedInformerFactoryWithOptions(m.cs, 0, informers.WithNamespace(m.ns))
	clf := informers.NewSharedInformerFactory(m.cs, 0)
	m.cms = nsf.Core().V1().ConfigMaps().Lister()
	m.secrets = nsf.Core().V1().Secrets().Lister()
	m.jobs = nsf.Batch().V1().Jobs().Lister()
	m.dss = nsf.Apps().V1().DaemonSets().Lister()
	m.deploys = nsf.Apps().V1().Deployments().Lister()
	m.scs = clf.Storage().V1().StorageClasses().Lister()
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { m.poke() },
		UpdateFunc: func(any, any) { m.poke() },
		DeleteFunc: func(any) { m.poke() },
	}
	for _, inf := range []cache.SharedIndexInformer{
		nsf.Core().V1().ConfigMaps().Informer(), nsf.Core().V1().Secrets().Informer(), nsf.Batch().V1().Jobs().Informer(),
		nsf.Apps().V1().DaemonSets().Informer(), nsf.Apps().V1().Deployments().Informer(), clf.Storage().V1().StorageClasses().Informer(),
	} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
	}
	nsf.Start(ctx.Done())
	clf.Start(ctx.Done())
	defer nsf.Shutdown()
	defer clf.Shutdown()
	nsf.WaitForCacheSync(ctx.Done())
	clf.WaitForCacheSync(ctx.Done())

	tick := time.NewTicker(m.resync)
	defer tick.Stop()
	for {
		if err := m.sync(ctx); err != nil && ctx.Err() == nil {
			m.logf("%v", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.kick:
		case <-tick.C:
		}
	}
}

func (m *Manager) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

func (m *Manager) sync(ctx context.Context) error {
	var errs []error
	for _, step := range []struct {
		name string
		fn   func(context.Context) error
	}{
		{"hook jobs", m.syncJobs},
		{"settings", m.syncSettings},
		{"backup target", m.syncBackupTarget},
		{"storage class", m.syncStorageClass},
		{"workloads", m.syncWorkloads},
	} {
		if err := step.fn(ctx); err != nil && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("%s: %w", step.name, err))
		}
	}
	return errors.Join(errs...)
}

// SetRolloutPaused holds (true) or releases the manager DaemonSet/Deployment rollouts,
// for health-gate tests.
func (m *Manager) SetRolloutPaused(paused bool) {
	m.mu.Lock()
	m.rolloutPaused = paused
	m.mu.Unlock()
	m.poke()
}

// SetBackupStoreError makes the backup target unavailable with msg (e.g. an S3
// AccessDenied) whatever the store says; "" restores normal behaviour.
func (m *Manager) SetBackupStoreError(msg string) {
	m.mu.Lock()
	m.storeError = msg
	m.mu.Unlock()
	m.poke()
}

// UpgradeChecks lists the pre-upgrade checks run so far, as "<from> -> <to>: ok|<error>".
func (m *Manager) UpgradeChecks() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.checks...)
}

// ---------------------------------------------------------------- hook Jobs

func (m *Manager) syncJobs(ctx context.Context) error {
	jobs, err := m.jobs.Jobs(m.ns).List(labels.Everything())
	if err != nil {
		return err
	}
	var errs []error
	for _, j := range jobs {
		if jobFinished(j) {
			continue
		}
		var failure string
		switch j.Name {
		case PreUpgradeJob:
			current, _, err := m.getSetting(ctx, SettingCurrentLonghornVersion)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			next := imageTag(j.Spec.Template.Spec.Containers)
			check := checkUpgradePath(current, next)
			m.recordCheck(current, next, check)
			if check != nil {
				failure = check.Error()
				m.event(ctx, &corev1.ObjectReference{Kind: "Job", APIVersion: "batch/v1", Name: j.Name, Namespace: j.Namespace, UID: j.UID},
					corev1.EventTypeWarning, ReasonFailedUpgradePreCheck, failure)
			}
		case UninstallJob:
			flag, _, err := m.getSetting(ctx, SettingDeletingConfirmationFlag)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if flag != "true" {
				failure = uninstallRefusal
				m.event(ctx, &corev1.ObjectReference{Kind: "Job", APIVersion: "batch/v1", Name: j.Name, Namespace: j.Namespace, UID: j.UID},
					corev1.EventTypeWarning, "FailedUninstall", failure)
			} else if err := m.deleteAllVolumes(ctx); err != nil {
				errs = append(errs, err)
				continue
			} else if err := m.keepRemoteBackups(ctx); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if err := m.finishJob(ctx, j, failure); err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", j.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) recordCheck(current, next string, err error) {
	res := "ok"
	if err != nil {
		res = err.Error()
	}
	if current == "" {
		current = "(none)"
	}
	m.mu.Lock()
	m.checks = append(m.checks, fmt.Sprintf("%s -> %s: %s", current, next, res))
	m.mu.Unlock()
}

func jobFinished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// finishJob sets the status the Job controller would set after its pod succeeded, or
// after the pod failed backoffLimit+1 times when failure is not empty.
func (m *Manager) finishJob(ctx context.Context, j *batchv1.Job, failure string) error {
	if failure == "" {
		return updateJobFinished(ctx, m.cs, j, 0, "")
	}
	backoff := int32(6)
	if j.Spec.BackoffLimit != nil {
		backoff = *j.Spec.BackoffLimit
	}
	m.logf("job %s failed: %s", j.Name, failure)
	return updateJobFinished(ctx, m.cs, j, backoff+1, "Job has reached the specified backoff limit")
}

// updateJobFinished writes the status the Job controller writes when j ends: Complete
// with one succeeded pod when failMsg is empty, else Failed after failedPods failed pods
// with failMsg as the message of its conditions (the conditions and reasons of
// k8s.io/kubernetes pkg/controller/job/job_controller.go).
func updateJobFinished(ctx context.Context, cs kubernetes.Interface, j *batchv1.Job, failedPods int32, failMsg string) error {
	j = j.DeepCopy()
	now := metav1.Now()
	if j.Status.StartTime == nil { // immutable once set
		j.Status.StartTime = &now
	}
	zero := int32(0)
	j.Status.Active, j.Status.Ready = 0, &zero
	if failMsg == "" {
		j.Status.Succeeded = 1
		j.Status.CompletionTime = &now
		j.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastProbeTime: now, LastTransitionTime: now, Reason: batchv1.JobReasonCompletionsReached, Message: "Reached expected number of succeeded pods"},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastProbeTime: now, LastTransitionTime: now, Reason: batchv1.JobReasonCompletionsReached, Message: "Reached expected number of succeeded pods"},
		}
	} else {
		j.Status.Failed = failedPods
		j.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, LastProbeTime: now, LastTransitionTime: now, Reason: batchv1.JobReasonBackoffLimitExceeded, Message: failMsg},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, LastProbeTime: now, LastTransitionTime: now, Reason: batchv1.JobReasonBackoffLimitExceeded, Message: failMsg},
		}
	}
	_, err := cs.BatchV1().Jobs(j.Namespace).UpdateStatus(ctx, j, metav1.UpdateOptions{})
	return err
}

func (m *Manager) event(ctx context.Context, obj *corev1.ObjectReference, typ, reason, msg string) {
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: obj.Name + ".", Namespace: m.ns},
		InvolvedObject: *obj,
		Reason:         reason,
		Message:        msg,
		Type:           typ,
		Source:         corev1.EventSource{Component: "longhorn-manager"},
		FirstTimestamp: now,
		LastTimestamp:  now,
		Count:          1,
	}
	if _, err := m.cs.CoreV1().Events(m.ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		m.logf("event %s: %v", reason, err)
	}
}

func imageTag(cs []corev1.Container) string {
	for _, c := range cs {
		if i := strings.LastIndex(c.Image, ":"); i >= 0 {
			return c.Image[i+1:]
		}
	}
	return ""
}

// ---------------------------------------------------------------- Settings

// getSetting returns a Setting's value; ok is false when it (or its CRD) does not exist.
func (m *Manager) getSetting(ctx context.Context, name string) (value string, ok bool, err error) {
	u, err := m.dyn.Resource(SettingGVR).Namespace(m.ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	v, _, _ := unstructured.NestedString(u.Object, "value")
	return v, true, nil
}

// setSetting creates or updates a Setting, optionally stamping the ConfigMap resourceVersion.
func (m *Manager) setSetting(ctx context.Context, name, value, cmRV string) error {
	res := m.dyn.Resource(SettingGVR).Namespace(m.ns)
	u, err := res.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		u = &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": group + "/" + version, "kind": "Setting",
			"metadata": map[string]any{"name": name, "namespace": m.ns},
			"value":    value,
		}}
		if cmRV != "" {
			u.SetAnnotations(map[string]string{annotationConfigMapResourceVersion: cmRV})
		}
		_, err = res.Create(ctx, u, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	old, _, _ := unstructured.NestedString(u.Object, "value")
	ann := u.GetAnnotations()
	if old == value && (cmRV == "" || ann[annotationConfigMapResourceVersion] == cmRV) {
		return nil
	}
	u.Object["value"] = value
	if cmRV != "" {
		if ann == nil {
			ann = map[string]string{}
		}
		ann[annotationConfigMapResourceVersion] = cmRV
		u.SetAnnotations(ann)
	}
	_, err = res.Update(ctx, u, metav1.UpdateOptions{})
	return err
}

// syncSettings applies longhorn-default-setting as upstream's UpdateCustomizedSettings:
// on every change of the ConfigMap every present key overwrites its Setting (UI edits
// are lost), unknown names are skipped, and missing Settings are created with their
// built-in default.
func (m *Manager) syncSettings(ctx context.Context) error {
	cm, err := m.cms.ConfigMaps(m.ns).Get(DefaultSettingConfigMap)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if cm.ResourceVersion == m.appliedSettingRV {
		return nil
	}
	if ok, err := m.crdServed(ctx, SettingGVR); !ok {
		return err
	}
	minor := chartMinor(cm)
	custom, err := parseFlatYAML(cm.Data["default-setting.yaml"])
	if err != nil {
		m.logf("customized settings are invalid, will give up using them: %v", err)
		custom = nil
	}
	for name := range custom {
		if def, ok := definitions[name]; !ok || !def.in(minor) {
			m.logf("customized settings are invalid, will give up using them: undefined setting %v", name)
			delete(custom, name)
		}
	}
	// As upstream: first every missing Setting is created (customized values become the
	// defaults), then the existing ones are overwritten with the customized values.
	for _, name := range sortedNames(definitions) {
		def := definitions[name]
		if !def.in(minor) {
			continue
		}
		if _, ok, err := m.getSetting(ctx, name); err != nil {
			return err
		} else if !ok {
			value, customized := custom[name]
			if !customized {
				value = def.value
			}
			rv := ""
			if customized {
				rv = cm.ResourceVersion
			}
			if err := m.setSetting(ctx, name, value, rv); err != nil {
				return fmt.Errorf("setting %s: %w", name, err)
			}
		}
	}
	for _, name := range sortedNames(custom) {
		if err := m.setSetting(ctx, name, custom[name], cm.ResourceVersion); err != nil {
			return fmt.Errorf("setting %s: %w", name, err)
		}
	}
	m.appliedSettingRV = cm.ResourceVersion
	return nil
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

type definition struct {
	value      string
	sinceMinor uint64 // 0: all
	untilMinor uint64 // 0: all; else last minor that has it
}

func (d definition) in(minor uint64) bool {
	return (d.sinceMinor == 0 || minor == 0 || minor >= d.sinceMinor) && (d.untilMinor == 0 || minor == 0 || minor <= d.untilMinor)
}

// definitions: the Settings this fake knows, with longhorn-manager's built-in defaults.
var definitions = map[string]definition{
	"allow-recurring-job-while-volume-detached":          {value: "false"},
	"create-default-disk-labeled-nodes":                  {value: "false"},
	"default-data-path":                                  {value: "/var/lib/longhorn/"},
	"default-data-locality":                              {value: "disabled"},
	"replica-soft-anti-affinity":                         {value: "false"},
	"replica-auto-balance":                               {value: "disabled"},
	"storage-over-provisioning-percentage":               {value: "100"},
	"storage-minimal-available-percentage":               {value: "25"},
	"storage-reserved-percentage-for-default-disk":       {value: "30"},
	"upgrade-checker":                                    {value: "true"},
	"default-replica-count":                              {value: "3"},
	"recurring-job-max-retention":                        {value: "100"},
	"node-drain-policy":                                  {value: "block-if-contains-last-replica"},
	"disable-revision-counter":                           {value: "true"},
	"auto-cleanup-recurring-job-backup-snapshot":         {value: "true"},
	"concurrent-automatic-engine-upgrade-per-node-limit": {value: "0"},
	"guaranteed-instance-manager-cpu":                    {value: "12"},
	SettingDeletingConfirmationFlag:                      {value: "false"},
	"v1-data-engine":                                     {value: "true"},
	"v2-data-engine":                                     {value: "false"},
	"orphan-auto-deletion":                               {value: "false", untilMinor: 8},
	"orphan-resource-auto-deletion":                      {value: "", sinceMinor: 9},
	"offline-replica-rebuilding":                         {value: "false", sinceMinor: 9},
	"default-backup-block-size":                          {value: "2", sinceMinor: 10},
	"replica-rebuilding-bandwidth-limit":                 {value: "0", sinceMinor: 10},
	"data-engine-log-level":                              {value: "Notice", sinceMinor: 10},
	"node-disk-health-monitoring":                        {value: "true", sinceMinor: 11},
}

// chartMinor is the minor version of the chart that rendered cm (its version label).
func chartMinor(cm *corev1.ConfigMap) uint64 {
	v := strings.TrimPrefix(cm.Labels["app.kubernetes.io/version"], "v")
	parts := strings.Split(v, ".")
	if len(parts) < 2 {
		return 0
	}
	n, _ := strconv.ParseUint(parts[1], 10, 64)
	return n
}

// parseFlatYAML reads "key: value" lines as longhorn-manager does: every scalar becomes
// its string form, an empty value an empty string.
func parseFlatYAML(s string) (map[string]string, error) {
	var raw map[string]any
	if err := yaml.Unmarshal([]byte(s), &raw); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		switch x := v.(type) {
		case nil:
			out[k] = ""
		case string:
			out[k] = x
		case bool:
			out[k] = strconv.FormatBool(x)
		case int:
			out[k] = strconv.Itoa(x)
		case float64:
			out[k] = strconv.FormatFloat(x, 'f', -1, 64)
		default:
			out[k] = fmt.Sprint(x)
		}
	}
	return out, nil
}

func (m *Manager) crdServed(ctx context.Context, gvr schema.GroupVersionResource) (bool, error) {
	_, err := m.dyn.Resource(gvr).Namespace(m.ns).List(ctx, metav1.ListOptions{Limit: 1})
	if err == nil {
		return true, nil
	}
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return false, nil
	}
	return false, err
}

// ---------------------------------------------------------------- BackupTarget

// syncBackupTarget applies longhorn-default-resource to BackupTarget "default" as
// upstream's CreateOrUpdateDefaultBackupTarget (keys absent from the ConfigMap keep the
// CR's value; poll interval defaults to 300 s), then reports availability.
func (m *Manager) syncBackupTarget(ctx context.Context) error {
	cm, err := m.cms.ConfigMaps(m.ns).Get(DefaultResourceConfigMap)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	res := m.dyn.Resource(BackupTargetGVR).Namespace(m.ns)
	bt, err := res.Get(ctx, DefaultBackupTarget, metav1.GetOptions{})
	switch {
	case meta.IsNoMatchError(err):
		return nil
	case apierrors.IsNotFound(err):
		if ok, err := m.crdServed(ctx, BackupTargetGVR); !ok {
			return err
		}
		bt = &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": group + "/" + version, "kind": "BackupTarget",
			"metadata": map[string]any{"name": DefaultBackupTarget, "namespace": m.ns},
			"spec":     map[string]any{"backupTargetURL": "", "credentialSecret": "", "pollInterval": (300 * time.Second).String()},
		}}
		m.appliedResourceRV = ""
	case err != nil:
		return err
	}
	if cm.ResourceVersion != m.appliedResourceRV {
		custom, err := parseFlatYAML(cm.Data["default-resource.yaml"])
		if err != nil {
			m.logf("default resource ConfigMap is invalid: %v", err)
			custom = nil
		}
		spec, _, _ := unstructured.NestedMap(bt.Object, "spec")
		if spec == nil {
			spec = map[string]any{}
		}
		if v, ok := custom["backup-target"]; ok {
			spec["backupTargetURL"] = v
		}
		if v, ok := custom["backup-target-credential-secret"]; ok {
			spec["credentialSecret"] = v
		}
		if v, ok := custom["backupstore-poll-interval"]; ok {
			secs, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				m.logf("invalid backupstore-poll-interval %q: %v", v, err)
			} else {
				spec["pollInterval"] = (time.Duration(secs) * time.Second).String()
			}
		}
		spec["syncRequestedAt"] = time.Now().UTC().Format(time.RFC3339)
		bt.Object["spec"] = spec
		if bt.GetResourceVersion() == "" {
			bt, err = res.Create(ctx, bt, metav1.CreateOptions{})
		} else {
			bt, err = res.Update(ctx, bt, metav1.UpdateOptions{})
		}
		if err != nil {
			return err
		}
		m.appliedResourceRV = cm.ResourceVersion
	}
	if m.data != nil {
		return nil // RunBackups reaches the store and reports availability
	}
	return m.updateBackupTargetStatus(ctx, bt)
}

func (m *Manager) updateBackupTargetStatus(ctx context.Context, bt *unstructured.Unstructured) error {
	url, _, _ := unstructured.NestedString(bt.Object, "spec", "backupTargetURL")
	secret, _, _ := unstructured.NestedString(bt.Object, "spec", "credentialSecret")
	problem := m.backupStoreProblem(url, secret, m.secrets.Secrets(m.ns).Get)
	available := problem == ""
	oldAvail, _, _ := unstructured.NestedBool(bt.Object, "status", "available")
	oldConds, _, _ := unstructured.NestedSlice(bt.Object, "status", "conditions")
	oldMsg := ""
	if len(oldConds) > 0 {
		if c, ok := oldConds[0].(map[string]any); ok {
			oldMsg, _ = c["message"].(string)
		}
	}
	if _, has, _ := unstructured.NestedFieldNoCopy(bt.Object, "status", "available"); has && oldAvail == available && oldMsg == problem {
		return nil
	}
	now := time.Now().UTC().Format(time.RFC3339)
	status := map[string]any{"available": available, "ownerID": "node-1"}
	// lastSyncedAt says when the backup store was last listed: only the backup loop sets it.
	if last, ok, _ := unstructured.NestedString(bt.Object, "status", "lastSyncedAt"); ok {
		status["lastSyncedAt"] = last
	}
	if available {
		status["conditions"] = []any{map[string]any{"type": "Unavailable", "status": "False", "reason": "", "message": "", "lastTransitionTime": now}}
	} else {
		status["conditions"] = []any{map[string]any{"type": "Unavailable", "status": "True", "reason": "Unavailable", "message": problem, "lastTransitionTime": now}}
	}
	bt.Object["status"] = status
	_, err := m.dyn.Resource(BackupTargetGVR).Namespace(m.ns).UpdateStatus(ctx, bt, metav1.UpdateOptions{})
	return err
}

// credentialKeys are the Secret keys Longhorn refuses with surrounding whitespace.
var credentialKeys = []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINTS", "AWS_CERT", "AWS_IAM_ROLE_ARN", "VIRTUAL_HOSTED_STYLE"}

// backupStoreProblem says why the backup store cannot be used before trying it (the URL's
// form, the credential Secret), or "" when nothing stands in the way; getSecret reads the
// Secret from the namespace.
func (m *Manager) backupStoreProblem(url, secretName string, getSecret func(name string) (*corev1.Secret, error)) string {
	if url == "" {
		return "backup target URL is empty"
	}
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return fmt.Sprintf("invalid backup target URL %s: missing scheme", url)
	}
	switch scheme {
	case "s3":
		host, _, hasPath := strings.Cut(rest, "/")
		bucket, _, _ := strings.Cut(host, "@")
		if bucket == "" || !hasPath {
			return "invalid URL. Must be either s3://bucket@region/path/, or s3://bucket/path"
		}
	case "nfs", "cifs", "azblob":
	default:
		return fmt.Sprintf("failed to init backup target clients: unsupported backup store type %q", scheme)
	}
	if strings.ContainsAny(rest, "$") {
		return fmt.Sprintf("url %s contains an invalid character", url)
	}
	if secretName != "" {
		sec, err := getSecret(secretName)
		if apierrors.IsNotFound(err) {
			// the apiserver's wording (the lister says "secret")
			err = apierrors.NewNotFound(corev1.Resource("secrets"), secretName)
		}
		if err != nil {
			return fmt.Sprintf("failed to get credential secret %s/%s: %v", m.ns, secretName, err)
		}
		var bad []string
		for _, k := range credentialKeys {
			v := string(sec.Data[k])
			if v == strings.TrimSpace(v) {
				continue
			}
			where, c := "leading", v[0]
			if v != strings.TrimRight(v, " \t\r\n") {
				where, c = "trailing", v[len(v)-1]
			}
			kind := "space"
			if c == '\n' || c == '\r' {
				kind = "newline"
			}
			bad = append(bad, fmt.Sprintf("invalid %s %s in %s", where, kind, k))
		}
		if len(bad) > 0 {
			return "credential validation error(s): " + strings.Join(bad, "; ")
		}
		// Without a data path nothing tries the keys; with one the S3 driver reports what is
		// missing, as in Longhorn.
		if m.data == nil && scheme == "s3" && len(sec.Data["AWS_IAM_ROLE_ARN"]) == 0 {
			for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
				if len(sec.Data[k]) == 0 {
					return fmt.Sprintf("credential secret %s/%s has no %s", m.ns, secretName, k)
				}
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.storeError
}

// ---------------------------------------------------------------- StorageClass

// syncStorageClass creates StorageClass "longhorn" from longhorn-storageclass and
// re-creates it (StorageClass parameters are immutable) whenever the YAML changes.
func (m *Manager) syncStorageClass(ctx context.Context) error {
	cm, err := m.cms.ConfigMaps(m.ns).Get(StorageClassConfigMap)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	raw := cm.Data["storageclass.yaml"]
	existing, err := m.scs.Get(DefaultStorageClass)
	if err == nil && existing.Annotations[annotationLastAppliedConfigMap] == raw {
		return nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	var sc storagev1.StorageClass
	if err := sigsyaml.UnmarshalStrict([]byte(raw), &sc); err != nil {
		return fmt.Errorf("%s: %w", StorageClassConfigMap, err)
	}
	if sc.Annotations == nil {
		sc.Annotations = map[string]string{}
	}
	sc.Annotations[annotationLastAppliedConfigMap] = raw
	if existing != nil {
		if err := m.cs.StorageV1().StorageClasses().Delete(ctx, DefaultStorageClass, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	_, err = m.cs.StorageV1().StorageClasses().Create(ctx, &sc, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil // the informer had not seen it yet; next round
	}
	return err
}

// ---------------------------------------------------------------- workloads

func (m *Manager) syncWorkloads(ctx context.Context) error {
	m.mu.Lock()
	paused := m.rolloutPaused
	m.mu.Unlock()
	if paused {
		return nil
	}
	var errs []error
	deps, err := m.deploys.Deployments(m.ns).List(labels.Everything())
	if err != nil {
		return err
	}
	for _, d := range deps {
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		s := d.Status
		if s.ObservedGeneration == d.Generation && s.UpdatedReplicas == want && s.ReadyReplicas == want && s.AvailableReplicas == want && s.Replicas == want {
			continue
		}
		d = d.DeepCopy()
		now := metav1.Now()
		d.Status = appsv1.DeploymentStatus{
			ObservedGeneration: d.Generation, Replicas: want, UpdatedReplicas: want, ReadyReplicas: want, AvailableReplicas: want,
			Conditions: []appsv1.DeploymentCondition{
				{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable", LastUpdateTime: now, LastTransitionTime: now},
				{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable", LastUpdateTime: now, LastTransitionTime: now},
			},
		}
		if _, err := m.cs.AppsV1().Deployments(m.ns).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("deployment %s: %w", d.Name, err))
		}
	}
	if err := m.syncManagerDaemonSet(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// syncManagerDaemonSet "starts" longhorn-manager at the DaemonSet's version: like the
// real manager it re-checks the upgrade path first (a refused path leaves it not ready),
// then records current-longhorn-version.
func (m *Manager) syncManagerDaemonSet(ctx context.Context) error {
	ds, err := m.dss.DaemonSets(m.ns).Get(ManagerDaemonSet)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	next := imageTag(ds.Spec.Template.Spec.Containers)
	current, _, err := m.getSetting(ctx, SettingCurrentLonghornVersion)
	if err != nil {
		return err
	}
	s := ds.Status
	rolledOut := s.ObservedGeneration == ds.Generation && s.NumberReady == 1 && s.UpdatedNumberScheduled == 1 && s.NumberAvailable == 1
	if rolledOut && current == next {
		return nil
	}
	check := checkUpgradePath(current, next)
	ds = ds.DeepCopy()
	ready := int32(1)
	if check != nil {
		ready = 0
	}
	if !rolledOut || check != nil {
		ds.Status = appsv1.DaemonSetStatus{
			ObservedGeneration: ds.Generation, DesiredNumberScheduled: 1, CurrentNumberScheduled: 1,
			UpdatedNumberScheduled: 1, NumberReady: ready, NumberAvailable: ready, NumberUnavailable: 1 - ready,
		}
		if s.ObservedGeneration != ds.Generation || s.NumberReady != ready {
			if _, err := m.cs.AppsV1().DaemonSets(m.ns).UpdateStatus(ctx, ds, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("daemonset %s: %w", ds.Name, err)
			}
			if check != nil {
				m.event(ctx, &corev1.ObjectReference{Kind: "DaemonSet", APIVersion: "apps/v1", Name: ds.Name, Namespace: ds.Namespace, UID: ds.UID},
					corev1.EventTypeWarning, ReasonFailedUpgradePreCheck, check.Error())
			}
		}
	}
	if check != nil {
		return nil
	}
	if ok, err := m.crdServed(ctx, SettingGVR); !ok {
		return err
	}
	return m.setSetting(ctx, SettingCurrentLonghornVersion, next, "")
}
