package adopt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/talforge/talforge/internal/testenv/helmrepo"
	"github.com/talforge/talforge/internal/testenv/kubeenv"
	"github.com/talforge/talforge/internal/testenv/lhchart"
	"github.com/talforge/talforge/internal/testenv/lhmanager"
	"github.com/talforge/talforge/pkg/backuptarget"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
)

// handMadeValues is the values.yaml a person gave `helm install lh longhorn/longhorn -f`.
const handMadeValues = `
defaultBackupStore:
  backupTarget: s3://homelab-backups@us-east-1/
  backupTargetCredentialSecret: s3-backup
  pollInterval: 600
persistence:
  defaultClassReplicaCount: 2
  defaultFsType: xfs
defaultSettings:
  storageOverProvisioningPercentage: 200
  nodeDrainPolicy: allow-if-replica-is-stopped
  backupTarget: s3://old-style@us-east-1/
privateRegistry:
  registryUrl: registry.example.net
  registryUser: homelab
  registryPasswd: REGISTRY_PASSWORD
`

// TestDiscoverLonghorn installs the test chart as a person would with the helm CLI (release
// "lh", plain values), lets the fake longhorn-manager turn it into Settings, the default
// StorageClass and BackupTarget, adds what kubectl and the manager would (RecurringJobs,
// StorageClasses, claims, volumes, backups, a UI edit of a Setting), and checks the import
// field by field.
func TestDiscoverLonghorn(t *testing.T) {
	const version = "1.10.2"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cp := kubeenv.Start(t)
	cs := kubernetes.NewForConfigOrDie(cp.Config)
	dyn := dynamic.NewForConfigOrDie(cp.Config)
	ns := longhorn.Namespace

	secretValue := "s3secret-" + randomHex(t)
	registryPassword := "regpass-" + randomHex(t)
	mustCreate(t, func() error {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		return err
	})
	mustCreate(t, func() error {
		_, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "s3-backup", Namespace: ns},
			StringData: map[string]string{"AWS_ACCESS_KEY_ID": "AKIAHANDMADE0001", "AWS_SECRET_ACCESS_KEY": secretValue, "AWS_ENDPOINTS": "https://s3.example.net"},
		}, metav1.CreateOptions{})
		return err
	})
	ch, err := lhchart.Chart(version)
	if err != nil {
		t.Fatal(err)
	}
	repo := helmrepo.Start(t, ch)
	lhmanager.Start(t, cp.Config)
	helmCLIInstall(t, ctx, cp.Kubeconfig, repo.URL, "lh", ns, version, strings.ReplaceAll(handMadeValues, "REGISTRY_PASSWORD", registryPassword))

	// longhorn-manager's work: Settings from the chart's ConfigMap, BackupTarget "default".
	waitFor(t, "Settings and BackupTarget from the chart", func() (bool, string) {
		s, err := dyn.Resource(longhorn.SettingGVR).Namespace(ns).Get(ctx, "storage-over-provisioning-percentage", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if v, _, _ := unstructured.NestedString(s.Object, "value"); v != "200" {
			return false, "storage-over-provisioning-percentage is " + v
		}
		b, err := dyn.Resource(longhorn.BackupTargetGVR).Namespace(ns).Get(ctx, "default", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		url, _, _ := unstructured.NestedString(b.Object, "spec", "backupTargetURL")
		return url == "s3://homelab-backups@us-east-1/", "backup target " + url
	})
	// A Setting changed in the UI, one the values do not set.
	setSetting(t, ctx, dyn, ns, "replica-auto-balance", "best-effort")

	for _, obj := range []map[string]any{
		{"apiVersion": "longhorn.io/v1beta2", "kind": "RecurringJob", "metadata": map[string]any{"name": "nightly", "namespace": ns},
			"spec": map[string]any{"name": "nightly", "task": "backup", "cron": "0 3 * * *", "retain": int64(7), "concurrency": int64(2),
				"groups": []any{"default", "critical"}, "labels": map[string]any{"made-by": "hand"}, "parameters": map[string]any{"full-backup-interval": "7"}}},
		{"apiVersion": "longhorn.io/v1beta2", "kind": "RecurringJob", "metadata": map[string]any{"name": "trim", "namespace": ns},
			"spec": map[string]any{"name": "trim", "task": "filesystem-trim", "cron": "0 4 * * 0", "retain": int64(0), "concurrency": int64(0), "groups": []any{"critical"}}},
	} {
		mustCreate(t, func() error {
			_, err := dyn.Resource(longhorn.RecurringJobGVR).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
			return err
		})
	}
	retain, del := corev1.PersistentVolumeReclaimRetain, corev1.PersistentVolumeReclaimDelete
	immediate, wait := storagev1.VolumeBindingImmediate, storagev1.VolumeBindingWaitForFirstConsumer
	yes := true
	for _, sc := range []*storagev1.StorageClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "longhorn-retain"}, Provisioner: longhorn.CSIDriver, ReclaimPolicy: &retain, VolumeBindingMode: &immediate, AllowVolumeExpansion: &yes,
			Parameters: map[string]string{"numberOfReplicas": "2", "staleReplicaTimeout": "30", "fromBackup": "", "fsType": "ext4", "dataLocality": "best-effort",
				"backupTargetName": "default", "recurringJobSelector": `[{"name":"critical","isGroup":true},{"name":"nightly","isGroup":false}]`}},
		{ObjectMeta: metav1.ObjectMeta{Name: "longhorn-ssd"}, Provisioner: longhorn.CSIDriver, ReclaimPolicy: &del, VolumeBindingMode: &wait, AllowVolumeExpansion: &yes,
			Parameters: map[string]string{"numberOfReplicas": "1", "staleReplicaTimeout": "30", "fromBackup": "", "diskSelector": "ssd", "backupTargetName": "default"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "longhorn-static"}, Provisioner: longhorn.CSIDriver, ReclaimPolicy: &del, Parameters: map[string]string{"numberOfReplicas": "3"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "local-path"}, Provisioner: "rancher.io/local-path", ReclaimPolicy: &del},
	} {
		mustCreate(t, func() error {
			_, err := cs.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{})
			return err
		})
	}
	waitFor(t, "StorageClass longhorn from the chart's ConfigMap", func() (bool, string) {
		_, err := cs.StorageV1().StorageClasses().Get(ctx, "longhorn", metav1.GetOptions{})
		return err == nil, "StorageClass longhorn: " + errString(err)
	})

	// Claims bound to Longhorn volumes, as the CSI provisioner and longhorn-manager's PV
	// controller leave them; then backups as longhorn-manager records them.
	data := bindClaim(t, ctx, cs, dyn, ns, "app", "data", "2Gi", "longhorn-retain", "", map[string]string{"recurring-job-group.longhorn.io/critical": "enabled", "recurring-job.longhorn.io/nightly": "enabled"})
	pg := bindClaim(t, ctx, cs, dyn, ns, "db", "pg", "5Gi", "longhorn", "pg-data", nil)
	cache := bindClaim(t, ctx, cs, dyn, ns, "app", "cache", "1Gi", "longhorn", "", nil)
	ks := backuptarget.KubernetesStatus{Namespace: "app", PVCName: "data", PVName: data, PVStatus: "Bound"}
	createBackup(t, ctx, dyn, ns, "backup-data-1", data, 2<<30, longhorn.BackupStateCompleted, map[string]string{backuptarget.KubernetesStatusLabel: ks.Label()})
	createBackup(t, ctx, dyn, ns, "backup-data-2", data, 2<<30, longhorn.BackupStateCompleted, map[string]string{backuptarget.KubernetesStatusLabel: ks.Label()})
	// No label: the claim comes from the volume's status.kubernetesStatus.
	createBackup(t, ctx, dyn, ns, "backup-pg-1", pg, 5<<30, longhorn.BackupStateCompleted, nil)
	// A failed backup does not make a claim "backed up".
	createBackup(t, ctx, dyn, ns, "backup-cache-1", cache, 1<<30, longhorn.BackupStateError, nil)
	// A backup of a volume that is gone and named no claim.
	createBackup(t, ctx, dyn, ns, "backup-old-1", "old-volume", 1<<30, longhorn.BackupStateCompleted, nil)
	// A backup of a claim that no longer exists, with its label.
	goneKS := backuptarget.KubernetesStatus{Namespace: "app", PVCName: "gone", PVName: "pvc-gone", LastPVCRefAt: "2026-01-01T00:00:00Z"}
	createBackup(t, ctx, dyn, ns, "backup-gone-1", "pvc-gone", 3<<30, longhorn.BackupStateCompleted, map[string]string{backuptarget.KubernetesStatusLabel: goneKS.Label()})

	// Longhorn's nodes and their disks (upstream's shape, longhorn.io/v1beta2 nodes,
	// spec.disks by name).
	for node, path := range map[string]string{"w-1": "/var/lib/longhorn/", "w-2": "/var/mnt/longhorn"} {
		mustCreate(t, func() error {
			_, err := dyn.Resource(nodeGVR).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "longhorn.io/v1beta2", "kind": "Node", "metadata": map[string]any{"name": node, "namespace": ns},
				"spec": map[string]any{"disks": map[string]any{"default-disk-1": map[string]any{"path": path, "allowScheduling": true}}},
			}}, metav1.CreateOptions{})
			return err
		})
	}

	imp, err := DiscoverLonghorn(ctx, cp.Kubeconfig)
	if err != nil {
		t.Fatalf("DiscoverLonghorn: %v", err)
	}
	for _, n := range imp.Notes {
		t.Logf("note: %s", n)
	}

	if imp.Release != "lh/"+ns {
		t.Errorf("Release = %q, want lh/%s", imp.Release, ns)
	}
	if imp.DataPath != "/var/lib/longhorn/" {
		t.Errorf("DataPath = %q, want Longhorn's default /var/lib/longhorn/", imp.DataPath)
	}
	l := imp.Longhorn
	if l.Version != version || l.RepoURL != "" || l.ReplicaCount != 2 {
		t.Errorf("version/repoURL/replicaCount = %q/%q/%d, want %s//2", l.Version, l.RepoURL, l.ReplicaCount, version)
	}
	wantBackup := &profile.LonghornBackup{
		Target: "s3://homelab-backups@us-east-1/", CredentialsFile: "secrets/aws-backup.sops.yaml", CredentialSecret: "s3-backup", PollInterval: "10m",
		RecurringJobs: []profile.RecurringJob{
			{Name: "nightly", Task: "backup", Cron: "0 3 * * *", Retain: 7, Concurrency: 2, Groups: []string{"default", "critical"},
				Labels: map[string]string{"made-by": "hand"}, Parameters: map[string]string{"full-backup-interval": "7"}},
			{Name: "trim", Task: "filesystem-trim", Cron: "0 4 * * 0", Concurrency: 10, Groups: []string{"critical"}},
		},
	}
	if !reflect.DeepEqual(l.Backup, wantBackup) {
		t.Errorf("backup:\n got %s\nwant %s", js(l.Backup), js(wantBackup))
	}
	wantSC := []profile.StorageClass{
		{Name: "longhorn-retain", ReclaimPolicy: "Retain", Replicas: 2, RecurringJobs: []string{"nightly"}, RecurringJobGroups: []string{"critical"}, FSType: "ext4", DataLocality: "best-effort"},
		{Name: "longhorn-ssd", ReclaimPolicy: "Delete", Replicas: 1, FSType: "ext4", DataLocality: "disabled"},
	}
	if !reflect.DeepEqual(l.StorageClasses, wantSC) {
		t.Errorf("storageClasses:\n got %s\nwant %s", js(l.StorageClasses), js(wantSC))
	}
	wantVols := []profile.Volume{
		{Namespace: "app", Claim: "data", Size: "2Gi", StorageClass: "longhorn-retain", RecurringJobGroups: []string{"critical"}, RecurringJobs: []string{"nightly"}},
		{Namespace: "app", Claim: "gone", Size: "3Gi"},
		{Namespace: "db", Claim: "pg", Name: "pg-data", Size: "5Gi", StorageClass: "longhorn"},
	}
	if !reflect.DeepEqual(l.Volumes, wantVols) {
		t.Errorf("volumes:\n got %s\nwant %s", js(l.Volumes), js(wantVols))
	}
	// Only what talforge does not model: not the backup store, the replica count, an owned
	// setting, the ignored defaultSettings.backupTarget, nor the registry password.
	wantValues := map[string]any{
		"persistence":     map[string]any{"defaultFsType": "xfs"},
		"defaultSettings": map[string]any{"storageOverProvisioningPercentage": int64(200)},
		"privateRegistry": map[string]any{"registryUrl": "registry.example.net", "registryUser": "homelab"},
	}
	if !reflect.DeepEqual(l.Values, wantValues) {
		t.Errorf("values:\n got %s\nwant %s", js(l.Values), js(wantValues))
	}
	wantSettings := map[string]string{"replica-auto-balance": "best-effort"}
	if !reflect.DeepEqual(imp.Settings, wantSettings) {
		t.Errorf("Settings = %v, want %v", imp.Settings, wantSettings)
	}
	notes := strings.Join(imp.Notes, "\n")
	for _, want := range []string{
		"release is lh in namespace longhorn-system; talforge expects release longhorn",
		"Longhorn data is on the Talos system disk (the Longhorn disks are /var/lib/longhorn/ on w-1:",
		"defaultSettings.backupTarget",
		"credential at privateRegistry.registryPasswd",
		"RecurringJob trim has concurrency 0",
		"StorageClass longhorn-ssd has what the profile cannot say: ",
		`parameters.diskSelector "ssd" (talforge: <absent>)`,
		"volumeBindingMode \"WaitForFirstConsumer\" (talforge: Immediate)",
		"backups of volume(s) old-volume name no claim",
		"claim app/gone has backups but no longer exists",
		"replica-auto-balance=best-effort (Longhorn's default disabled)",
		`node-drain-policy is "allow-if-replica-is-stopped" here, talforge sets "block-if-contains-last-replica"`,
		`default-data-path is "/var/lib/longhorn/" here, talforge sets "/var/mnt/longhorn"`,
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("no note says %q", want)
		}
	}
	// The keys are the caller's to take (talforge import stores them encrypted): this package
	// neither reads them nor tells the user to type them again.
	for _, unwanted := range []string{"longhorn-retain has what", "static", "local-path", "talforge secret set"} {
		if strings.Contains(notes, unwanted) {
			t.Errorf("a note mentions %q", unwanted)
		}
	}

	// No Secret value anywhere in the result.
	all, err := json.Marshal(imp)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.Marshal(imp.Longhorn)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{secretValue, "AKIAHANDMADE0001", "s3.example.net", registryPassword} {
		if strings.Contains(string(all), s) || strings.Contains(string(y), s) {
			t.Errorf("the result holds the secret value %q", s)
		}
	}

	// talforge accepts the block: its values render, and the user's unmodelled values come
	// through unchanged.
	vals, err := longhorn.Values(&profile.Cluster{Longhorn: l}, l.Version)
	if err != nil {
		t.Fatalf("longhorn.Values of the imported block: %v", err)
	}
	if got := nested(vals, "persistence", "defaultFsType"); got != "xfs" {
		t.Errorf("rendered persistence.defaultFsType = %v", got)
	}
	if got := nested(vals, "defaultBackupStore", "pollInterval"); got != "600" {
		t.Errorf("rendered defaultBackupStore.pollInterval = %v, want the release's 600", got)
	}
}

// TestDiscoverLonghornNoRelease: a cluster without a Helm release of the chart is an error
// that says so.
func TestDiscoverLonghornNoRelease(t *testing.T) {
	cp := kubeenv.Start(t)
	_, err := DiscoverLonghorn(context.Background(), cp.Kubeconfig)
	if !errors.Is(err, ErrNoLonghornRelease) {
		t.Fatalf("err = %v, want ErrNoLonghornRelease", err)
	}
}

func TestLonghornSplitUserValues(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		rest      map[string]any
		classRC   int
		target    string
		owned     map[string]string
		noteParts []string
	}{
		{name: "empty", in: "{}", rest: map[string]any{}},
		{
			name: "everything modelled",
			in: `{"defaultBackupStore":{"backupTarget":"s3://b@r/","backupTargetCredentialSecret":"c","pollInterval":300},
			      "persistence":{"defaultClassReplicaCount":3},"defaultSettings":{"defaultReplicaCount":3,"createDefaultDiskLabeledNodes":true}}`,
			rest: map[string]any{}, classRC: 3, target: "s3://b@r/", owned: map[string]string{"create-default-disk-labeled-nodes": "true"},
		},
		{
			name:      "refused and secret keys",
			in:        `{"deletingConfirmationFlag":true,"preUpgradeChecker":{"jobEnabled":false,"upgradeVersionCheck":true},"ui":{"token":"abc","tokenSecretName":""}}`,
			rest:      map[string]any{"preUpgradeChecker": map[string]any{"upgradeVersionCheck": true}, "ui": map[string]any{"tokenSecretName": ""}},
			noteParts: []string{"deletingConfirmationFlag", "preUpgradeChecker.jobEnabled", "credential at ui.token"},
		},
		{
			name: "numbers and lists are kept",
			in:   `{"longhornManager":{"tolerations":[{"key":"a","value":"b"}],"priority":1.5},"csi":{"attacherReplicaCount":2}}`,
			rest: map[string]any{"longhornManager": map[string]any{"tolerations": []any{map[string]any{"key": "a", "value": "b"}}, "priority": 1.5},
				"csi": map[string]any{"attacherReplicaCount": int64(2)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg map[string]any
			if err := json.Unmarshal([]byte(tt.in), &cfg); err != nil {
				t.Fatal(err)
			}
			before := js(cfg)
			s := splitUserValues(cfg)
			if js(cfg) != before {
				t.Errorf("the release's values were modified")
			}
			if !reflect.DeepEqual(s.rest, tt.rest) {
				t.Errorf("rest = %s, want %s", js(s.rest), js(tt.rest))
			}
			if s.classReplicaCount != tt.classRC {
				t.Errorf("classReplicaCount = %d, want %d", s.classReplicaCount, tt.classRC)
			}
			if got := ""; s.backupTarget != nil {
				got = *s.backupTarget
				if got != tt.target {
					t.Errorf("backupTarget = %q, want %q", got, tt.target)
				}
			} else if tt.target != "" {
				t.Errorf("backupTarget not found, want %q", tt.target)
			}
			if tt.owned == nil {
				tt.owned = map[string]string{}
			}
			if !reflect.DeepEqual(s.owned, tt.owned) {
				t.Errorf("owned = %v, want %v", s.owned, tt.owned)
			}
			notes := strings.Join(s.notes, "\n")
			for _, p := range tt.noteParts {
				if !strings.Contains(notes, p) {
					t.Errorf("no note mentions %q: %s", p, notes)
				}
			}
			if len(tt.noteParts) == 0 && len(s.notes) > 0 {
				t.Errorf("unexpected notes: %s", notes)
			}
		})
	}
}

func TestLonghornSettingSame(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"3", "3", true},
		{"3", `{"v1":"3","v2":"3"}`, true},
		{`{"v1":"3","v2":"3"}`, "3", true},
		{"2", `{"v1":"3","v2":"3"}`, false},
		{`{"v1":"2","v2":"3"}`, `{"v2":"3","v1":"2"}`, true},
		{"Notice", `{"v2":"Notice"}`, true},
		{"true", "false", false},
		{"{not json", "{not json", true},
	}
	for _, tt := range tests {
		if got := settingSame(tt.a, tt.b); got != tt.want {
			t.Errorf("settingSame(%q, %q) = %t, want %t", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestLonghornBuiltinDefaults(t *testing.T) {
	tests := []struct {
		name  string
		minor uint64
		want  string
		ok    bool
	}{
		{"default-replica-count", 9, "3", true},
		{"default-replica-count", 10, `{"v1":"3","v2":"3"}`, true},
		{"default-data-path", 11, "/var/lib/longhorn/", true},
		{"orphan-auto-deletion", 8, "false", true},
		{"orphan-auto-deletion", 9, "", false},
		{"node-disk-health-monitoring", 10, "", false},
		{"node-disk-health-monitoring", 12, "true", true}, // beyond the table: its newest minor
		{"current-longhorn-version", 10, "", false},       // read-only
		{"support-bundle-manager-image", 10, "", false},   // set from flags
	}
	for _, tt := range tests {
		got, ok := builtinDefaultOK(tt.name, tt.minor)
		if got != tt.want || ok != tt.ok {
			t.Errorf("builtinDefaultOK(%s, %d) = %q, %t; want %q, %t", tt.name, tt.minor, got, ok, tt.want, tt.ok)
		}
	}
}

func TestLonghornOnSystemDisk(t *testing.T) {
	for p, want := range map[string]bool{
		"/var/lib/longhorn/": true, "/var/lib/longhorn": true, "/var/mnt/longhorn": false, "/var/mnt/longhorn/": false,
		"/var/mnt": false, "/var/mnt-other": true, "/var/mnt/../lib/longhorn": true,
	} {
		if got := onSystemDisk(p); got != want {
			t.Errorf("onSystemDisk(%q) = %t, want %t", p, got, want)
		}
	}
}

func TestLonghornFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0s", 300 * time.Second: "5m", 2 * time.Hour: "2h", 90 * time.Second: "90s", 1500 * time.Millisecond: "1.5s"} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// helmCLIInstall is `helm repo add` + `helm install NAME longhorn/longhorn -n NS --version V
// -f values.yaml` through Helm's own CLI plumbing (kube flags over a kubeconfig file, chart
// located in the repository, values read as -f reads them).
func helmCLIInstall(t *testing.T, ctx context.Context, kubeconfig []byte, repoURL, name, ns, version, values string) {
	t.Helper()
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	settings := cli.New()
	settings.KubeConfig = kc
	settings.SetNamespace(ns)
	settings.RepositoryCache = filepath.Join(dir, "cache")
	settings.RepositoryConfig = filepath.Join(dir, "repositories.yaml")
	flags := genericclioptions.NewConfigFlags(true)
	cacheDir := filepath.Join(dir, "kube-cache")
	flags.KubeConfig, flags.CacheDir, flags.Namespace = &kc, &cacheDir, &ns
	cfg := new(action.Configuration)
	if err := cfg.Init(flags, ns, "secret", func(string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	in := action.NewInstall(cfg)
	in.ReleaseName, in.Namespace, in.Version, in.RepoURL, in.Timeout = name, ns, version, repoURL, time.Minute
	path, err := in.LocateChart(lhchart.Name, settings)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := loader.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ReadValues([]byte(values))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.RunWithContext(ctx, ch, vals); err != nil {
		t.Fatalf("helm install: %v", err)
	}
}

// bindClaim creates a claim bound to a PV of a Longhorn volume, as the CSI provisioner does
// (volume pvc-<claim uid>, or static for a statically provisioned one), and the Volume with
// status.kubernetesStatus as longhorn-manager's PV controller sets it.
func bindClaim(t *testing.T, ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface, lhNS, ns, name, size, class, static string, labels map[string]string) string {
	t.Helper()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	q := resource.MustParse(size)
	pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &class,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: q}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vol := "pvc-" + string(pvc.UID)
	if static != "" {
		vol = static
	}
	if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: vol},
		Spec: corev1.PersistentVolumeSpec{
			Capacity: corev1.ResourceList{corev1.ResourceStorage: q}, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: class, ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: ns, Name: name, UID: pvc.UID},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: longhorn.CSIDriver, VolumeHandle: vol}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pvc.Spec.VolumeName = vol
	if pvc, err = cs.CoreV1().PersistentVolumeClaims(ns).Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pvc.Status.Phase = corev1.ClaimBound
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).UpdateStatus(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res := dyn.Resource(longhorn.VolumeGVR).Namespace(lhNS)
	lbl := map[string]any{}
	for k, v := range labels {
		lbl[k] = v
	}
	v, err := res.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "longhorn.io/v1beta2", "kind": "Volume",
		"metadata": map[string]any{"name": vol, "namespace": lhNS, "labels": lbl},
		"spec":     map[string]any{"size": q.String(), "numberOfReplicas": int64(2), "frontend": "blockdev", "dataEngine": "v1"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v.Object["status"] = map[string]any{"state": "detached", "robustness": "unknown",
		"kubernetesStatus": map[string]any{"namespace": ns, "pvcName": name, "pvName": vol, "pvStatus": "Bound"}}
	if _, err := res.UpdateStatus(ctx, v, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return vol
}

// createBackup records a Backup as longhorn-manager's backup controller leaves it: labels
// backup-volume / backup-target, and in status the state, volume, size and the backup's
// labels (KubernetesStatus among them when the volume had a claim).
func createBackup(t *testing.T, ctx context.Context, dyn dynamic.Interface, ns, name, vol string, size int64, state string, labels map[string]string) {
	t.Helper()
	res := dyn.Resource(longhorn.BackupGVR).Namespace(ns)
	lbl := map[string]any{}
	for k, v := range labels {
		lbl[k] = v
	}
	if _, err := res.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "longhorn.io/v1beta2", "kind": "Backup",
		"metadata": map[string]any{"name": name, "namespace": ns, "labels": map[string]any{longhorn.BackupVolumeLabel: vol, longhorn.BackupTargetLabel: "default"}},
		"spec":     map[string]any{"snapshotName": name + "-snap", "labels": lbl},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The manager adds its finalizer meanwhile, as longhorn-manager does: update the latest.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		b, err := res.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		b.Object["status"] = map[string]any{"state": state, "volumeName": vol, "volumeSize": strconv.FormatInt(size, 10), "labels": lbl,
			"backupTargetName": "default", "url": "s3://homelab-backups@us-east-1/?backup=" + name + "&volume=" + vol}
		_, err = res.UpdateStatus(ctx, b, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func setSetting(t *testing.T, ctx context.Context, dyn dynamic.Interface, ns, name, value string) {
	t.Helper()
	res := dyn.Resource(longhorn.SettingGVR).Namespace(ns)
	var u *unstructured.Unstructured
	waitFor(t, "Setting "+name, func() (bool, string) {
		var err error
		u, err = res.Get(ctx, name, metav1.GetOptions{})
		return err == nil, errString(err)
	})
	u.Object["value"] = value
	if _, err := res.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
	}
	t.Fatalf("timed out waiting for %s: %s", what, last)
}

func mustCreate(t *testing.T, f func() error) {
	t.Helper()
	if err := f(); err != nil {
		t.Fatal(err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func randomHex(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
