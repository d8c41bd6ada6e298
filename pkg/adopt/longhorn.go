package adopt

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"
	"helm.sh/helm/v3/pkg/release"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"

	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
)

// LonghornImport describes a Longhorn that a person installed with the helm CLI, as the
// profile's longhorn block plus what the profile cannot say.
type LonghornImport struct {
	// Longhorn is the profile block: the chart version of the release, replicaCount, the
	// backup target (the credential Secret's name only, never its data), recurring jobs,
	// the StorageClasses Longhorn provisions besides the chart's own "longhorn", the claims
	// whose volumes have backups, and in values the user-supplied Helm values that no field
	// above expresses. RepoURL stays empty: a Helm release does not record the repository
	// its chart came from.
	Longhorn *profile.Longhorn
	// Release is the Helm release as found, "name/namespace" (talforge's own is
	// longhorn/longhorn-system; a Note says when it differs).
	Release string
	// DataPath is the default-data-path Setting in use, e.g. /var/lib/longhorn/.
	DataPath string
	// Settings are the Longhorn Settings whose value differs from the built-in default of
	// the installed version and that neither the Helm values nor another field carries
	// (edited in the UI or with kubectl), by Setting name.
	Settings map[string]string
	// Notes say, in plain words, what the profile cannot express or what talforge would
	// change, and what the user must do (the credentials file, a data path on the system
	// disk).
	Notes []string
}

// ErrNoLonghornRelease: the cluster has no Helm release of the longhorn chart (Longhorn
// installed from manifests, by a GitOps tool that renders the chart itself, or not at all).
var ErrNoLonghornRelease = errors.New("no Helm release of the longhorn chart")

// Names DiscoverLonghorn relies on besides pkg/longhorn's.
const (
	// defaultSettingConfigMap is the ConfigMap the chart renders from defaultSettings
	// (chart/templates/default-setting.yaml).
	defaultSettingConfigMap = "longhorn-default-setting"
	// lastAppliedConfigMapAnnotation marks the StorageClass longhorn-manager creates from
	// the chart's longhorn-storageclass ConfigMap (controller/kubernetes_configmap_controller.go).
	lastAppliedConfigMapAnnotation = "longhorn.io/last-applied-configmap"
	// staticStorageClassSetting names the StorageClass longhorn-manager creates for
	// statically provisioned volumes (types/setting.go, default longhorn-static).
	staticStorageClassSetting = "default-longhorn-static-storage-class"
	// credentialsFile is where `talforge secret set aws-backup` writes the S3 keys, as
	// `talforge init` lays a project out.
	credentialsFile = "secrets/aws-backup.sops.yaml"
)

// nodeGVR are Longhorn's nodes (longhorn.io/v1beta2 nodes), whose spec.disks say where each
// node really keeps replicas; pkg/longhorn does not use them.
var nodeGVR = schema.GroupVersionResource{Group: "longhorn.io", Version: "v1beta2", Resource: "nodes"}

// DiscoverLonghorn reads the cluster behind kubeconfig and describes its Longhorn. It only
// reads: the Helm release record (its user-supplied values, release.Config), Longhorn's
// Settings, BackupTarget "default", RecurringJobs, Volumes, Backups and Nodes,
// StorageClasses, claims and volumes. The backup credential Secret is looked at through the
// metadata API only, so its data never reaches this process.
func DiscoverLonghorn(ctx context.Context, kubeconfig []byte) (*LonghornImport, error) {
	rel, driver, err := findLonghornRelease(kubeconfig)
	if err != nil {
		return nil, err
	}
	version := rel.Chart.Metadata.Version
	v, err := semver.StrictNewVersion(strings.TrimPrefix(version, "v"))
	if err != nil {
		return nil, fmt.Errorf("the Helm release %s/%s has chart version %q, not a version: %w", rel.Namespace, rel.Name, version, err)
	}
	rc, err := longhorn.RESTConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	conn, err := longhorn.NewConn(rc, longhorn.ConnOptions{})
	if err != nil {
		return nil, err
	}
	md, err := metadata.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes metadata client: %w", err)
	}
	r := &lhReader{conn: conn, meta: md, ns: rel.Namespace, rel: rel, minor: v.Minor(), version: version}
	r.out = &LonghornImport{
		Longhorn: &profile.Longhorn{Version: version},
		Release:  rel.Name + "/" + rel.Namespace,
		Settings: map[string]string{},
	}
	r.releaseNotes(v, driver)
	if err := r.read(ctx); err != nil {
		return nil, err
	}
	return r.out, nil
}

// lhReader carries one discovery.
type lhReader struct {
	conn    *longhorn.Conn
	meta    metadata.Interface
	ns      string
	rel     *release.Release
	minor   uint64
	version string

	live  map[string]string // Setting name → value, as Longhorn holds it
	split splitValues
	out   *LonghornImport
}

func (r *lhReader) note(format string, args ...any) {
	r.out.Notes = append(r.out.Notes, fmt.Sprintf(format, args...))
}

// res is a Longhorn resource in the release's namespace (pkg/longhorn's Conn.Resource is
// fixed to longhorn-system, which a hand-made install need not use).
func (r *lhReader) res(gvr schema.GroupVersionResource) dynamic.ResourceInterface {
	return r.conn.Dyn.Resource(gvr).Namespace(r.ns)
}

func (r *lhReader) releaseNotes(v *semver.Version, driver string) {
	rel := r.rel
	if rel.Name != longhorn.ReleaseName || rel.Namespace != longhorn.Namespace {
		r.note("the Helm release is %s in namespace %s; talforge expects release %s in namespace %s: "+
			"until it is moved, talforge's Helm actions would not find it (and would try a second install)",
			rel.Name, rel.Namespace, longhorn.ReleaseName, longhorn.Namespace)
	}
	if driver != "secret" {
		r.note("the Helm release is stored in %ss (HELM_DRIVER=%s); talforge's Helm actions read Secrets, the helm CLI's default", driver, driver)
	}
	if rel.Info != nil && rel.Info.Status != release.StatusDeployed {
		r.note("the last Helm revision (%d) of the release is %q, not deployed: run `helm history %s -n %s` and settle it before talforge upgrades Longhorn",
			rel.Version, rel.Info.Status, rel.Name, rel.Namespace)
	}
	if _, ok := profile.LonghornLatestPatch(v.Major(), v.Minor()); !ok {
		r.note("Longhorn %s is outside the versions talforge supports (%s): the profile will not validate until Longhorn is upgraded or talforge learns it",
			v, profile.SupportedLonghorn())
	}
	r.note("the Helm release does not record the chart repository it came from: talforge will use %s unless longhorn.repoURL names your mirror",
		profile.DefaultLonghornRepoURL)
}

func (r *lhReader) read(ctx context.Context) error {
	var err error
	if r.live, err = r.liveSettings(ctx); err != nil {
		return err
	}
	r.split = splitUserValues(r.rel.Config)
	r.out.Notes = append(r.out.Notes, r.split.notes...)
	l := r.out.Longhorn
	if len(r.split.rest) > 0 {
		l.Values = r.split.rest
	}
	r.replicaCount()
	r.dataPath(ctx)
	if err := r.backup(ctx); err != nil {
		return err
	}
	if err := r.recurringJobs(ctx); err != nil {
		return err
	}
	if err := r.storageClasses(ctx); err != nil {
		return err
	}
	if err := r.volumes(ctx); err != nil {
		return err
	}
	r.settings()
	r.ownedSettings()
	return nil
}

// liveSettings lists Longhorn's Settings.
func (r *lhReader) liveSettings(ctx context.Context) (map[string]string, error) {
	list, err := r.res(longhorn.SettingGVR).List(ctx, metav1.ListOptions{})
	if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("no Longhorn Settings in %s: the Longhorn CRDs are not installed (%w)", r.ns, err)
	}
	if err != nil {
		return nil, fmt.Errorf("list Longhorn Settings in %s: %w", r.ns, err)
	}
	out := map[string]string{}
	for _, s := range list.Items {
		v, _, _ := unstructured.NestedString(s.Object, "value")
		out[s.GetName()] = v
	}
	return out, nil
}

// replicaCount: the profile's one replicaCount is both the default class's
// numberOfReplicas and the default-replica-count Setting (pkg/longhorn values.go).
func (r *lhReader) replicaCount() {
	s := r.split
	classRC, classFrom := s.classReplicaCount, "persistence.defaultClassReplicaCount"
	if classRC == 0 {
		classRC, _ = intOf(nested(r.rel.Chart.Values, "persistence", "defaultClassReplicaCount"))
		classFrom = "the chart's default class"
	}
	settingRC, _ := intOf(engineValue(r.live["default-replica-count"]))
	switch {
	case s.classReplicaCount > 0:
		r.out.Longhorn.ReplicaCount = s.classReplicaCount
	case s.defaultReplicaCount > 0:
		r.out.Longhorn.ReplicaCount = s.defaultReplicaCount
	case settingRC > 0:
		r.out.Longhorn.ReplicaCount = settingRC
	default:
		r.out.Longhorn.ReplicaCount = classRC
	}
	if settingRC > 0 && classRC > 0 && settingRC != classRC {
		r.note("the default StorageClass makes %d replicas (%s) but the Setting default-replica-count is %d: the profile has one replicaCount (%d), which talforge renders into both",
			classRC, classFrom, settingRC, r.out.Longhorn.ReplicaCount)
	}
}

// dataPath records default-data-path and where the nodes' disks really are, and warns when
// replicas live on the Talos system disk.
func (r *lhReader) dataPath(ctx context.Context) {
	dp, ok := r.live["default-data-path"]
	if !ok {
		dp = r.split.dataPath
	}
	if dp == "" {
		dp = builtinDefault("default-data-path", r.minor)
	}
	r.out.DataPath = dp

	disks := r.nodeDisks(ctx) // path → nodes
	var onSystem []string
	for _, p := range lhKeys(disks) {
		if onSystemDisk(p) {
			onSystem = append(onSystem, fmt.Sprintf("%s on %s", p, strings.Join(disks[p], ", ")))
		}
	}
	if !onSystemDisk(dp) && len(onSystem) == 0 {
		return
	}
	where := fmt.Sprintf("default-data-path is %s", dp)
	if len(onSystem) > 0 {
		where = "the Longhorn disks are " + strings.Join(onSystem, "; ")
	}
	r.note("Longhorn data is on the Talos system disk (%s: under /var, Talos' EPHEMERAL partition, not a dedicated user volume under /var/mnt). "+
		"import keeps it there, as it is. A Talos reset of a node (`talosctl reset`, or a reinstall that wipes the system disk) deletes every replica on that node; "+
		"resetting several nodes loses each volume that has no replica left elsewhere, and what is not in a backup is gone. "+
		"To move the data later: give the nodes a data disk (longhornDisk), add it to each Longhorn node as a disk, "+
		"disable scheduling on the old disk and request eviction of its replicas, and remove the old disk once it is empty", where)
}

// nodeDisks maps each disk path of Longhorn's nodes to the nodes that have it (nil when
// the Node resource is not there).
func (r *lhReader) nodeDisks(ctx context.Context) map[string][]string {
	list, err := r.res(nodeGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		if !meta.IsNoMatchError(err) && !apierrors.IsNotFound(err) {
			r.note("Longhorn nodes could not be read (%v): where each node keeps its replicas is not known, only default-data-path", err)
		}
		return nil
	}
	out := map[string][]string{}
	for _, n := range list.Items {
		disks, _, _ := unstructured.NestedMap(n.Object, "spec", "disks")
		for _, d := range disks {
			m, _ := d.(map[string]any)
			if p, _ := m["path"].(string); p != "" {
				out[p] = append(out[p], n.GetName())
			}
		}
	}
	for p := range out {
		slices.Sort(out[p])
		out[p] = slices.Compact(out[p])
	}
	return out
}

// onSystemDisk: on Talos everything under /var but /var/mnt/<volume> (user volumes, which
// talforge puts on a dedicated disk) is the EPHEMERAL partition of the system disk.
func onSystemDisk(p string) bool {
	p = path.Clean(p)
	return !strings.HasPrefix(p+"/", "/var/mnt/") && p != "/var/mnt"
}

func lhKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
