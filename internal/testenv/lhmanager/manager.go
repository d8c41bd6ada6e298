// The Manager: its names and resources, construction and the reconcile loop of Run.

package lhmanager

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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
	ReplicaGVR      = schema.GroupVersionResource{Group: group, Version: version, Resource: "replicas"}
	NodeGVR         = schema.GroupVersionResource{Group: group, Version: version, Resource: "nodes"}
)

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
	// RebuildTime is how long a replica takes to rebuild once its node is back (default 300 ms).
	RebuildTime time.Duration
	// RolloutTime is how long longhorn-manager takes to roll out after a Helm install or
	// upgrade of the chart began (its release Secret appeared): image pulls and pod starts, as
	// one figure of a latency model. The manager makes its Settings and BackupTarget meanwhile,
	// as a starting pod does before it reports ready, but until then the DaemonSet and the
	// Deployments are not marked rolled out and the BackupTarget is not reported available.
	// Default 0: at once.
	RolloutTime time.Duration
}

// Manager is the fake longhorn-manager.
type Manager struct {
	cs     kubernetes.Interface
	dyn    dynamic.Interface
	ns     string
	logf   func(string, ...any)
	resync time.Duration
	kick   chan struct{}
	// targetKick wakes RunBackups' backup target controller (the rollout ended).
	targetKick chan struct{}
	data       *lhdata.Store

	cms     corelisters.ConfigMapLister
	secrets corelisters.SecretLister
	jobs    batchlisters.JobLister
	dss     appslisters.DaemonSetLister
	deploys appslisters.DeploymentLister
	scs     storagelisters.StorageClassLister

	// state of the reconcile loop, touched only by Run's goroutine
	appliedSettingRV, appliedResourceRV string

	mu            sync.Mutex
	rebuildTime   time.Duration
	rebuilds      map[string]time.Time // replica -> when the manager started rebuilding it
	bootIDs       map[string]string    // node -> the boot ID it last reported
	rolloutPaused bool
	rolloutTime   time.Duration
	releaseSeen   map[string]time.Time // Helm release Secret -> when the manager first saw it
	wakeAt        time.Time            // when rolledOut last asked to be woken
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
	m := &Manager{cs: cs, dyn: dyn, ns: opts.Namespace, logf: opts.Logf, resync: opts.Resync, kick: make(chan struct{}, 1), targetKick: make(chan struct{}, 1), data: opts.Data}
	if m.ns == "" {
		m.ns = Namespace
	}
	if m.logf == nil {
		m.logf = func(string, ...any) {}
	}
	if m.resync == 0 {
		m.resync = 300 * time.Millisecond
	}
	m.rebuildTime, m.rebuilds, m.bootIDs = opts.RebuildTime, map[string]time.Time{}, map[string]string{}
	m.rolloutTime, m.releaseSeen = opts.RolloutTime, map[string]time.Time{}
	if m.rebuildTime == 0 {
		m.rebuildTime = 300 * time.Millisecond
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
		{"nodes", m.syncNodes},
	} {
		if err := step.fn(ctx); err != nil && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("%s: %w", step.name, err))
		}
	}
	return errors.Join(errs...)
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

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// createCR creates a custom resource the manager makes when it starts (Settings, BackupTarget
// "default", the Longhorn Nodes). It goes through server-side apply rather than a POST: the
// apiserver holds every POST of a kind whose CRD became Established less than 2 s before for
// 2 s (apiextensions-apiserver customresource_handler.go, for HA apiservers). A real manager, whose
// pods take a minute to start after Helm made the CRDs, never meets that; in a latency model
// scaled down to Options.RolloutTime it would be the longest step of an install. An apply that
// creates makes the same object.
func createCR(ctx context.Context, res dynamic.ResourceInterface, u *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	return res.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: "longhorn-manager"})
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
