package restore_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/talforge/talforge/internal/testenv/e2e"
	"github.com/talforge/talforge/internal/testenv/kubeenv"
	"github.com/talforge/talforge/internal/testenv/lhmanager"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/restore"
)

var kube kubeenv.Shared

func TestMain(m *testing.M) { os.Exit(kube.Run(m)) }

const testProfile = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: rtest}
network: {cidr: 10.0.0.0/24, gateway: 10.0.0.1}
nodes:
  - {name: cp-1, role: controlplane, ip: 10.0.0.11, longhornDisk: 50G}
  - {name: w-1, role: worker, ip: 10.0.0.21, longhornDisk: 50G}
longhorn:
  version: 1.10.2
  repoURL: {{REPO_URL}}
  replicaCount: 2
  backup:
    target: s3://rtest-backups@eu-central-1/
    credentialsFile: secrets/aws-backup.sops.yaml
    recurringJobs:
      - {name: nightly, task: backup, cron: "0 3 * * *", retain: 7, groups: [critical]}
  storageClasses:
    - {name: longhorn-retain, reclaimPolicy: Retain, replicas: 2, recurringJobGroups: [critical]}
  volumes:
    - {name: traefik-data, namespace: traefik, claim: traefik, size: 1Gi, storageClass: longhorn-retain, recurringJobGroups: [critical]}
    - {name: blog, namespace: web, size: 2Gi}
`

type fixture struct {
	t       *testing.T
	ctx     context.Context
	env     *e2e.Env
	cluster *profile.Cluster
	rc      *restore.Client
	cs      kubernetes.Interface
	dyn     dynamic.Interface
	charts  string
}

var volumeGVR = schema.GroupVersionResource{Group: "longhorn.io", Version: "v1beta2", Resource: "volumes"}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	env := e2e.Start(t, kube.Get(t), e2e.Options{})
	proj := env.Project(t, "rtest", testProfile)
	c, err := profile.Load(proj.Profile)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, ctx: t.Context(), env: env, cluster: c, charts: t.TempDir(),
		cs: kubernetes.NewForConfigOrDie(env.Kube.Config), dyn: dynamic.NewForConfigOrDie(env.Kube.Config)}
	f.installLonghorn()
	f.rc, err = restore.New(env.Kube.Kubeconfig, restore.Options{Poll: 20 * time.Millisecond, SyncTimeout: 10 * time.Second,
		BackupTimeout: 20 * time.Second, RestoreTimeout: 20 * time.Second, Log: testLog{t}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) installLonghorn() {
	f.t.Helper()
	cl, err := longhorn.New(f.cluster, longhorn.Options{Kubeconfig: f.env.Kube.Kubeconfig, ChartCacheDir: f.charts, HelmTimeout: time.Minute,
		BackupTargetTimeout: 20 * time.Second, HealthTimeout: 20 * time.Second, Poll: 50 * time.Millisecond, Log: testLog{f.t}})
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := cl.Install(f.ctx); err != nil {
		f.t.Fatalf("install Longhorn: %v", err)
	}
}

func (f *fixture) declared() []restore.Declared {
	f.t.Helper()
	ds, err := restore.Declarations(f.cluster)
	if err != nil {
		f.t.Fatal(err)
	}
	return ds
}

func (f *fixture) volume(name string) *unstructured.Unstructured {
	f.t.Helper()
	u, err := f.dyn.Resource(volumeGVR).Namespace(restore.Namespace).Get(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatalf("volume %s: %v", name, err)
	}
	return u
}

func (f *fixture) waitFor(what string, cond func() (bool, string)) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.t.Fatalf("timed out waiting for %s: %s", what, last)
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestDeclarationsResolveStorageClassAndLabels(t *testing.T) {
	c, err := profile.Load(writeProfile(t, strings.ReplaceAll(testProfile, "{{REPO_URL}}", "https://charts.longhorn.io")))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := restore.Declarations(c)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		got, want any
		what      string
	}{
		{len(ds), 2, "count"},
		{ds[0].Name + " " + ds[0].Namespace + "/" + ds[0].Claim, "traefik-data traefik/traefik", "first"},
		{ds[0].Size, int64(1 << 30), "size"},
		{ds[0].Replicas, 2, "replicas from the StorageClass"},
		{ds[0].Labels["recurring-job-group.longhorn.io/critical"], "enabled", "group label"},
		{ds[1].Claim + " " + ds[1].StorageClass, "blog longhorn", "defaults"},
		{ds[1].Size, int64(2 << 30), "second size"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.what, tt.got, tt.want)
		}
	}
}

func writeProfile(t *testing.T, text string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/secrets", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/secrets/aws-backup.sops.yaml", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	p := dir + "/p.yaml"
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRestoreFromBackupIntoBoundClaims is the disaster: the volumes were backed up, the
// cluster is lost, a new one finds the backups in the bucket and restores every declared
// volume into a Volume, a PV and a PVC bound by name; a second run changes nothing.
func TestRestoreFromBackupIntoBoundClaims(t *testing.T) {
	f := newFixture(t)
	mgr := f.env.Manager()
	for _, v := range []string{"traefik-data", "blog"} {
		if err := mgr.CreateVolume(f.ctx, v, nil); err != nil {
			t.Fatal(err)
		}
	}
	backups := map[string]*restore.Backup{}
	for _, v := range []string{"traefik-data", "blog", "traefik-data"} { // two of traefik-data: the newer wins
		b, err := f.rc.BackupVolume(f.ctx, v)
		if err != nil {
			t.Fatalf("backup %s: %v", v, err)
		}
		if b.State != "Completed" || !strings.Contains(b.URL, "?backup="+b.Name+"&volume="+v) || b.VolumeSize != 1<<30 {
			t.Errorf("backup of %s: %+v", v, b)
		}
		backups[v] = b
		time.Sleep(1100 * time.Millisecond) // backupCreatedAt has second resolution
	}
	latest, err := f.rc.Latest(f.ctx, "traefik-data")
	if err != nil || latest == nil || latest.Name != backups["traefik-data"].Name {
		t.Fatalf("Latest(traefik-data) = %+v, %v; want %s", latest, err, backups["traefik-data"].Name)
	}

	if err := f.env.LoseCluster(f.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.dyn.Resource(volumeGVR).Namespace(restore.Namespace).Get(f.ctx, "traefik-data", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after the loss the volume should be gone: %v", err)
	}
	f.installLonghorn()

	var seen []string
	results, err := f.rc.RestoreAll(f.ctx, f.declared(), func(r restore.Result) { seen = append(seen, r.Volume.Name) })
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if strings.Join(seen, ",") != "traefik-data,blog" {
		t.Errorf("progress callbacks %v", seen)
	}
	for _, r := range results {
		want := backups[r.Volume.Name]
		if r.Action != restore.ActionRestored || r.Backup == nil || r.Backup.Name != want.Name || r.PV != "created" || r.PVC != "created" || r.Took <= 0 {
			t.Errorf("%s: %+v (backup %+v), want restored from %s with PV and PVC created", r.Volume.Name, r, r.Backup, want.Name)
		}
		v := f.volume(r.Volume.Name)
		from, _, _ := unstructured.NestedString(v.Object, "spec", "fromBackup")
		required, has, _ := unstructured.NestedBool(v.Object, "status", "restoreRequired")
		last, _, _ := unstructured.NestedString(v.Object, "status", "lastBackup")
		if from != want.URL || !has || required || last != want.Name {
			t.Errorf("volume %s: fromBackup %q restoreRequired %v/%v lastBackup %q", r.Volume.Name, from, required, has, last)
		}
	}
	if got := f.volume("traefik-data").GetLabels()["recurring-job-group.longhorn.io/critical"]; got != "enabled" {
		t.Errorf("restored volume lost its recurring-job group label: %q", got)
	}

	pv, err := f.cs.CoreV1().PersistentVolumes().Get(f.ctx, "traefik-data", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != "driver.longhorn.io" || pv.Spec.CSI.VolumeHandle != "traefik-data" ||
		pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.Namespace != "traefik" || pv.Spec.ClaimRef.Name != "traefik" ||
		pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain || pv.Spec.StorageClassName != "longhorn-retain" ||
		pv.Spec.Capacity.Storage().Cmp(resource.MustParse("1Gi")) != 0 {
		t.Errorf("PV traefik-data: %+v", pv.Spec)
	}
	pvc, err := f.cs.CoreV1().PersistentVolumeClaims("traefik").Get(f.ctx, "traefik", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pvc.Spec.VolumeName != "traefik-data" || pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != "longhorn-retain" {
		t.Errorf("PVC traefik/traefik: %+v", pvc.Spec)
	}
	f.waitFor("claims bound", func() (bool, string) {
		pvc, err := f.cs.CoreV1().PersistentVolumeClaims("web").Get(f.ctx, "blog", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return pvc.Status.Phase == corev1.ClaimBound, string(pvc.Status.Phase)
	})

	again, err := f.rc.RestoreAll(f.ctx, f.declared(), nil)
	if err != nil {
		t.Fatalf("second restore: %v", err)
	}
	for _, r := range again {
		if r.Action != restore.ActionAlreadyRestored || r.PV != "exists" || r.PVC != "exists" || r.Backup == nil || r.Backup.Name != backups[r.Volume.Name].Name {
			t.Errorf("second run, %s: %+v", r.Volume.Name, r)
		}
	}
}

func TestRestoreLeavesExistingVolumeAndRefusesForeignClaim(t *testing.T) {
	f := newFixture(t)
	if err := f.env.Manager().CreateVolume(f.ctx, "traefik-data", nil); err != nil {
		t.Fatal(err)
	}
	ds := f.declared()
	r, err := f.rc.Restore(f.ctx, ds[0])
	if err != nil {
		t.Fatal(err)
	}
	if r.Action != restore.ActionExists || r.Backup != nil || r.PV != "created" || r.PVC != "created" {
		t.Errorf("existing volume: %+v", r)
	}
	if from, _, _ := unstructured.NestedString(f.volume("traefik-data").Object, "spec", "fromBackup"); from != "" {
		t.Errorf("an existing volume was changed: fromBackup %q", from)
	}

	// A workload created its claim before the restore ran: talforge must not bind it.
	if _, err := f.cs.CoreV1().Namespaces().Create(f.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := f.cs.CoreV1().PersistentVolumeClaims("web").Create(f.ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "blog"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.env.Manager().CreateVolume(f.ctx, "blog", nil); err != nil {
		t.Fatal(err)
	}
	_, err = f.rc.Restore(f.ctx, ds[1])
	if err == nil || !strings.Contains(err.Error(), "PersistentVolumeClaim web/blog exists with no volume yet instead of the restored volume blog") {
		t.Fatalf("foreign claim: err = %v", err)
	}
}

func TestRestoreWithoutBackupSaysSo(t *testing.T) {
	f := newFixture(t)
	// Long enough for the backup target listing to finish on a slow machine, so the reason is
	// that the listing has no backup of the volume.
	rc, err := restore.New(f.env.Kube.Kubeconfig, restore.Options{Poll: 20 * time.Millisecond, SyncTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = rc.Restore(f.ctx, f.declared()[1])
	if !errors.Is(err, restore.ErrNoBackup) || !strings.Contains(err.Error(), "volume blog: find its latest backup") ||
		!strings.Contains(err.Error(), "Longhorn lists no completed backup of it yet") {
		t.Fatalf("err = %v", err)
	}
	if _, err := f.dyn.Resource(volumeGVR).Namespace(restore.Namespace).Get(f.ctx, "blog", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a volume was created without a backup: %v", err)
	}
}

func TestDRTestRestoresIntoANewVolumeAndCompares(t *testing.T) {
	f := newFixture(t)
	if err := f.env.Manager().CreateVolume(f.ctx, "traefik-data", nil); err != nil {
		t.Fatal(err)
	}
	res, err := f.rc.DRTest(f.ctx, "traefik-data", restore.DROptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || len(res.Checks) != 3 || res.RestoreTook <= 0 || res.BackupTook <= 0 || !strings.HasPrefix(res.Restored, "traefik-data-drtest-") {
		t.Errorf("DR test: %+v", res)
	}
	for _, c := range res.Checks {
		if !c.OK {
			t.Errorf("check %s failed: %s", c.Name, c.Detail)
		}
	}
	if got := f.env.Store.Backups("s3://rtest-backups@eu-central-1/"); len(got) != 1 || got[0].Name != res.Backup.Name {
		t.Errorf("bucket holds %+v, want the DR test's backup %s", got, res.Backup.Name)
	}
	f.waitFor("test volume deleted", func() (bool, string) {
		_, err := f.dyn.Resource(volumeGVR).Namespace(restore.Namespace).Get(f.ctx, res.Restored, metav1.GetOptions{})
		return apierrors.IsNotFound(err), "still there"
	})

	// A backup that does not restore is a failed DR test, not a pass.
	_, err = f.rc.DRTest(f.ctx, "nope", restore.DROptions{})
	if err == nil || !strings.Contains(err.Error(), "there is no Longhorn volume nope") {
		t.Errorf("missing volume: %v", err)
	}
}

// TestRestoreFailureIsReported: Longhorn lists a backup the bucket does not hold (deleted
// behind its back): the restore faults and talforge says so instead of binding a claim.
func TestRestoreFailureIsReported(t *testing.T) {
	f := newFixture(t)
	gvr := schema.GroupVersionResource{Group: "longhorn.io", Version: "v1beta2", Resource: "backups"}
	b, err := f.dyn.Resource(gvr).Namespace(restore.Namespace).Create(f.ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "longhorn.io/v1beta2", "kind": "Backup",
		"metadata": map[string]any{"name": "backup-gone", "labels": map[string]any{lhmanager.LabelBackupVolume: "blog", lhmanager.LabelBackupTarget: "default"}},
		"spec":     map[string]any{"snapshotName": ""},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.Object["status"] = map[string]any{"state": "Completed", "volumeName": "blog", "volumeSize": "2147483648", "backupCreatedAt": time.Now().UTC().Format(time.RFC3339),
		"url": "s3://rtest-backups@eu-central-1/?backup=backup-gone&volume=blog"}
	if _, err := f.dyn.Resource(gvr).Namespace(restore.Namespace).UpdateStatus(f.ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = f.rc.Restore(f.ctx, f.declared()[1])
	if err == nil || !strings.Contains(err.Error(), "restore failed, Longhorn reports: All replica restore failed") || !strings.Contains(err.Error(), "backup-gone") {
		t.Fatalf("err = %v", err)
	}
	if _, err := f.cs.CoreV1().PersistentVolumeClaims("web").Get(f.ctx, "blog", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a claim was created for a failed restore: %v", err)
	}
}
