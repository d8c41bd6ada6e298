package lhmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/talforge/talforge/internal/testenv/helmrepo"
	"github.com/talforge/talforge/internal/testenv/kubeenv"
	"github.com/talforge/talforge/internal/testenv/lhchart"
	"github.com/talforge/talforge/internal/testenv/lhdata"
	"github.com/talforge/talforge/internal/testenv/s3server"
	"github.com/talforge/talforge/pkg/backuptarget"
)

const testBucket = "lhmanager"

var (
	s3user     = s3server.NewUser("longhorn", "Read:"+testBucket, "Write:"+testBucket, "List:"+testBucket)
	s3readOnly = s3server.NewUser("reader", "Read:"+testBucket, "List:"+testBucket)
)

type schemaGVR = schema.GroupVersionResource

// sharedS3 is one S3 server for the package, stopped by TestMain after kube.Run (two
// Shared.Run cannot both own m.Run).
type sharedS3 struct {
	once sync.Once
	srv  *s3server.Server
	err  error
}

func (s *sharedS3) get(t testing.TB) *s3server.Server {
	t.Helper()
	s.once.Do(func() {
		s.srv, s.err = s3server.Launch(context.Background(), s3server.Options{Users: []s3server.User{s3user, s3readOnly}, Buckets: []string{testBucket}})
	})
	if errors.Is(s.err, s3server.ErrWeedMissing) && !s3server.Required() {
		t.Skipf("skipping: %v", s.err)
	}
	if s.err != nil {
		t.Fatalf("s3server: %v", s.err)
	}
	return s.srv
}

func (s *sharedS3) stop() error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Stop()
}

// dataEnv is a control plane with the test chart installed, a Manager with a data path and
// an S3 bucket behind BackupTarget "default".
type dataEnv struct {
	t    *testing.T
	ctx  context.Context
	cs   kubernetes.Interface
	dyn  dynamic.Interface
	mgr  *Manager
	srv  *s3server.Server
	url  string
	cred backuptarget.Credentials
}

func newDataEnv(t *testing.T) *dataEnv {
	srv := s3.get(t)
	cp := kubeenv.Start(t)
	e := &dataEnv{t: t, ctx: t.Context(), cs: kubernetes.NewForConfigOrDie(cp.Config), dyn: dynamic.NewForConfigOrDie(cp.Config), srv: srv,
		url: "s3://" + testBucket + "@" + srv.Region + "/" + strings.ToLower(t.Name()) + "/", cred: srv.Credentials(s3user)}
	m, err := New(cp.Config, Options{Logf: func(f string, a ...any) { t.Logf("lhmanager: "+f, a...) }, Resync: 150 * time.Millisecond, Data: lhdata.New(t.TempDir())})
	if err != nil {
		t.Fatal(err)
	}
	e.mgr = m
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = m.Run(ctx) })        // ends with ctx
	wg.Go(func() { _ = m.RunBackups(ctx) }) // ends with ctx
	t.Cleanup(func() { cancel(); wg.Wait() })

	ch, err := lhchart.Chart("1.10.2")
	if err != nil {
		t.Fatal(err)
	}
	repo := helmrepo.Start(t, ch)
	if _, err := e.cs.CoreV1().Namespaces().Create(e.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.secret("longhorn-s3", e.cred)
	h := newHelmEnv(t, cp, repo.URL)
	if err := h.upgradeInstall("1.10.2", fmt.Sprintf(`defaultBackupStore:
  backupTarget: %s
  backupTargetCredentialSecret: longhorn-s3
  pollInterval: 300
persistence:
  defaultClassReplicaCount: 2
  recurringJobSelector:
    enable: true
    jobList: '[{"name":"nightly","isGroup":true}]'
`, e.url)); err != nil {
		t.Fatalf("install: %v", err)
	}
	waitFor(t, "backup target available", func() (bool, string) {
		ok, msg := backupTargetState(e.ctx, e.dyn)
		return ok, msg
	})
	// Helm's CRDs are served one by one as each becomes Established: a Volume created while its
	// CRD is not yet served is a 404 (it failed so in CI once), as it would be for any client.
	waitFor(t, "Longhorn resources served", func() (bool, string) {
		for _, gvr := range []schemaGVR{VolumeGVR, SnapshotGVR, BackupGVR, BackupVolumeGVR, RecurringJobGVR, EngineGVR, ReplicaGVR} {
			if ok, err := m.crdServed(e.ctx, gvr); !ok {
				return false, fmt.Sprintf("%s not served yet (%v)", gvr.Resource, err)
			}
		}
		return true, ""
	})
	return e
}

func (e *dataEnv) secret(name string, data map[string]string) {
	e.t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace}, StringData: data}
	if _, err := e.cs.CoreV1().Secrets(Namespace).Create(e.ctx, s, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		_, err = e.cs.CoreV1().Secrets(Namespace).Update(e.ctx, s, metav1.UpdateOptions{})
		if err != nil {
			e.t.Fatal(err)
		}
	} else if err != nil {
		e.t.Fatal(err)
	}
}

func (e *dataEnv) get(gvr schemaGVR, name string) *unstructured.Unstructured {
	e.t.Helper()
	u, err := e.dyn.Resource(gvr).Namespace(Namespace).Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatalf("%s %s: %v", gvr.Resource, name, err)
	}
	return u
}

func (e *dataEnv) create(gvr schemaGVR, kind, name string, labels map[string]any, spec map[string]any) {
	e.t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": group + "/" + version, "kind": kind,
		"metadata": map[string]any{"name": name, "namespace": Namespace, "labels": labels},
		"spec":     spec,
	}}
	if _, err := e.dyn.Resource(gvr).Namespace(Namespace).Create(e.ctx, u, metav1.CreateOptions{}); err != nil {
		e.t.Fatalf("create %s %s: %v", kind, name, err)
	}
}

// snapshot takes a snapshot through a Snapshot object.
func (e *dataEnv) snapshot(volume, name string) {
	e.t.Helper()
	e.create(SnapshotGVR, "Snapshot", name, nil, map[string]any{"volume": volume, "createSnapshot": true})
	waitFor(e.t, "snapshot "+name, func() (bool, string) {
		s := e.get(SnapshotGVR, name)
		ready, _, _ := unstructured.NestedBool(s.Object, "status", "readyToUse")
		msg, _, _ := unstructured.NestedString(s.Object, "status", "error")
		return ready, msg
	})
}

// backup creates a Backup of a snapshot and waits for a final state.
func (e *dataEnv) backup(volume, snapshot, name string, labels map[string]any) *unstructured.Unstructured {
	e.t.Helper()
	e.create(BackupGVR, "Backup", name, map[string]any{LabelBackupVolume: volume}, map[string]any{"snapshotName": snapshot, "labels": labels})
	var b *unstructured.Unstructured
	waitFor(e.t, "backup "+name, func() (bool, string) {
		b = e.get(BackupGVR, name)
		state, _, _ := unstructured.NestedString(b.Object, "status", "state")
		return state == BackupStateCompleted || state == BackupStateError, state
	})
	return b
}

func str(u *unstructured.Unstructured, path ...string) string {
	v, _, _ := unstructured.NestedString(u.Object, path...)
	return v
}

func randomData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

// bindStatic creates a Longhorn PV for volume pre-bound to claim ns/name and the claim, both
// Bound (what talforge's restore creates and kube-controller-manager binds).
func (e *dataEnv) bindStatic(volume, ns, claim string) {
	e.t.Helper()
	if _, err := e.cs.CoreV1().Namespaces().Create(e.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		e.t.Fatal(err)
	}
	size := resource.MustParse("1Gi")
	pv, err := e.cs.CoreV1().PersistentVolumes().Create(e.ctx, &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: volume},
		Spec: corev1.PersistentVolumeSpec{
			Capacity: corev1.ResourceList{corev1.ResourceStorage: size}, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain, StorageClassName: "longhorn-static",
			ClaimRef:               &corev1.ObjectReference{APIVersion: "v1", Kind: "PersistentVolumeClaim", Namespace: ns, Name: claim},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: CSIDriver, VolumeHandle: volume}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	sc := "longhorn-static"
	pvc, err := e.cs.CoreV1().PersistentVolumeClaims(ns).Create(e.ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: claim},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &sc, VolumeName: volume,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}}},
	}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	pv.Status.Phase = corev1.VolumeBound
	if _, err := e.cs.CoreV1().PersistentVolumes().UpdateStatus(e.ctx, pv, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	pvc.Status.Phase = corev1.ClaimBound
	if _, err := e.cs.CoreV1().PersistentVolumeClaims(ns).UpdateStatus(e.ctx, pvc, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *dataEnv) kubeStatus(volume string) kubeStatus { return kubeStatusOf(e.get(VolumeGVR, volume)) }

func (e *dataEnv) restored(volume, from string) {
	e.t.Helper()
	e.create(VolumeGVR, "Volume", volume, nil, map[string]any{"size": "1073741824", "numberOfReplicas": int64(2), "fromBackup": from})
	waitFor(e.t, "restore of "+volume, func() (bool, string) {
		v := e.get(VolumeGVR, volume)
		required, has, _ := unstructured.NestedBool(v.Object, "status", "restoreRequired")
		return has && !required, fmt.Sprintf("restoreRequired %v/%v robustness %s", required, has, str(v, "status", "robustness"))
	})
}

// TestDataPathAgainstS3 drives the data path end to end against the real S3 server:
// snapshots, backups (labels into the backup config, the driver's errors into status),
// restores with the KubernetesStatus label, clones, dynamic provisioning, recurring jobs with
// retention, the pull of backups the cluster does not know, deletions, and the emulated
// verification Job.
func TestDataPathAgainstS3(t *testing.T) {
	e := newDataEnv(t)
	ctx := e.ctx
	data := e.mgr.Data()

	// A volume with data, bound to a claim: its kubernetesStatus follows the PV.
	if err := e.mgr.CreateVolume(ctx, "vol-a", map[string]string{recurringJobGroupLabelPrefix + "nightly": labelValueEnabled}); err != nil {
		t.Fatal(err)
	}
	first := randomData(1, 3<<20)
	if err := data.Write("vol-a", 5<<20, first); err != nil {
		t.Fatal(err)
	}
	e.bindStatic("vol-a", "web", "blog")
	waitFor(t, "kubernetesStatus of vol-a", func() (bool, string) {
		ks := e.kubeStatus("vol-a")
		return ks.PVName == "vol-a" && ks.PVStatus == "Bound" && ks.Namespace == "web" && ks.PVCName == "blog", fmt.Sprintf("%+v", ks)
	})

	// A Backup object: its labels go into the backup config; status from the store.
	e.snapshot("vol-a", "snap-a1")
	snapA1, err := data.ReadAll("vol-a")
	if err != nil {
		t.Fatal(err)
	}
	b := e.backup("vol-a", "snap-a1", "backup-a1", map[string]any{"app": "blog"})
	wantURL := e.url + "?backup=backup-a1&volume=vol-a"
	if str(b, "status", "state") != BackupStateCompleted || str(b, "status", "url") != wantURL || str(b, "status", "volumeSize") != "1073741824" ||
		str(b, "status", "size") != fmt.Sprint(4<<20) || str(b, "status", "labels", "app") != "blog" || str(b, "status", "snapshotName") != "snap-a1" ||
		str(b, "status", "backupCreatedAt") == "" || str(b, "status", "lastSyncedAt") == "" || str(b, "status", "volumeName") != "vol-a" {
		t.Errorf("backup-a1 status: %v", b.Object["status"])
	}
	if _, has := b.Object["status"].(map[string]any)["labels"].(map[string]any)[KubernetesStatusLabel]; has {
		t.Error("a Backup object written by hand got a KubernetesStatus label (only the API and recurring jobs add it)")
	}
	if info, err := lhdata.InspectBackup(ctx, e.cred, wantURL); err != nil || info.Labels["app"] != "blog" {
		t.Errorf("backup config: %+v, %v", info, err)
	}
	// The manager updates the BackupVolume and the volume's lastBackup right after it marks
	// the Backup Completed (as Longhorn's backup controller does): wait for them.
	waitFor(t, "BackupVolume vol-a and volume vol-a point at backup-a1", func() (bool, string) {
		bv, err := e.dyn.Resource(BackupVolumeGVR).Namespace(Namespace).Get(e.ctx, "vol-a", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		got := str(bv, "status", "lastBackupName") + " " + str(e.get(VolumeGVR, "vol-a"), "status", "lastBackup")
		return got == "backup-a1 backup-a1", got
	})

	// Restore: the same bytes; no KubernetesStatus label, so no claim to offer.
	e.restored("vol-r", wantURL)
	if got, err := data.ReadAll("vol-r"); err != nil || !bytes.Equal(got, snapA1) {
		t.Fatalf("restored data differs (%v)", err)
	}
	if v := e.get(VolumeGVR, "vol-r"); str(v, "status", "lastBackup") != "backup-a1" || str(v, "status", "robustness") == Faulted {
		t.Errorf("vol-r status %v", v.Object["status"])
	}

	// Clone from the snapshot, while the volume moved on.
	if err := data.Write("vol-a", 0, randomData(2, 1<<20)); err != nil {
		t.Fatal(err)
	}
	e.create(VolumeGVR, "Volume", "vol-c", nil, map[string]any{"size": "1073741824", "dataSource": "snap://vol-a/snap-a1"})
	waitFor(t, "clone", func() (bool, string) {
		v := e.get(VolumeGVR, "vol-c")
		return str(v, "status", "cloneStatus", "state") == "completed", str(v, "status", "cloneStatus", "state")
	})
	if got, _ := data.ReadAll("vol-c"); !bytes.Equal(got, snapA1) {
		t.Error("the clone does not hold the snapshot's data")
	}

	// Recurring job: KubernetesStatus and RecurringJob labels; retain 2 of 3.
	e.create(RecurringJobGVR, "RecurringJob", "nightly", nil, map[string]any{"name": "nightly", "task": "backup", "cron": "0 3 * * *", "retain": int64(2),
		"concurrency": int64(1), "groups": []any{"nightly"}, "labels": map[string]any{"team": "web"}})
	var recurring []string
	for i := range 3 {
		if err := data.Write("vol-a", int64(i)<<20, randomData(uint64(10+i), 1<<20)); err != nil {
			t.Fatal(err)
		}
		if err := e.mgr.RunRecurringJob(ctx, "nightly"); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		time.Sleep(1100 * time.Millisecond) // backupCreatedAt has second resolution
	}
	bs, err := e.dyn.Resource(BackupGVR).Namespace(Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var lastRecurring *unstructured.Unstructured
	for i := range bs.Items {
		b := &bs.Items[i]
		if str(b, "status", "labels", RecurringJobLabel) == "nightly" {
			recurring = append(recurring, b.GetName())
			if lastRecurring == nil || str(b, "status", "backupCreatedAt") > str(lastRecurring, "status", "backupCreatedAt") {
				lastRecurring = b
			}
		}
	}
	if len(recurring) != 2 {
		t.Fatalf("recurring backups kept: %v, want 2 (retain)", recurring)
	}
	stored, err := lhdata.ListBackups(ctx, e.cred, e.url)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 3 { // backup-a1 and the two kept
		t.Errorf("store holds %v, want backup-a1 and the 2 retained recurring backups", stored)
	}
	var ks kubeStatus
	if err := json.Unmarshal([]byte(str(lastRecurring, "status", "labels", KubernetesStatusLabel)), &ks); err != nil || ks.PVCName != "blog" || ks.Namespace != "web" || ks.PVName != "vol-a" {
		t.Errorf("KubernetesStatus label %q (%v)", str(lastRecurring, "status", "labels", KubernetesStatusLabel), err)
	}
	if str(lastRecurring, "status", "labels", "team") != "web" {
		t.Errorf("the job's labels are missing: %v", lastRecurring.Object["status"])
	}
	waitFor(t, "older recurring snapshots cleaned up", func() (bool, string) {
		snaps, _ := data.Snapshots("vol-a") // snap-a1 and the last recurring one
		return len(snaps) == 2 && snaps[0] == "snap-a1", fmt.Sprint(snaps)
	})

	// A restore of that backup offers the old claim, without the PV fields.
	e.restored("vol-k", str(lastRecurring, "status", "url"))
	got := e.kubeStatus("vol-k")
	if got.Namespace != "web" || got.PVCName != "blog" || got.PVName != "" || got.PVStatus != "" || got.LastPVCRefAt != str(lastRecurring, "status", "snapshotCreatedAt") {
		t.Errorf("restored kubernetesStatus %+v", got)
	}
	current, _ := data.ReadAll("vol-a")
	if k, _ := data.ReadAll("vol-k"); bytes.Equal(k, snapA1) || !bytes.Equal(k, current) {
		t.Error("the restored recurring backup does not hold the volume's latest data")
	}

	// Dynamic provisioning with the chart's StorageClass.
	if _, err := e.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "StorageClass longhorn", func() (bool, string) {
		_, err := e.cs.StorageV1().StorageClasses().Get(ctx, DefaultStorageClass, metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	sc := DefaultStorageClass
	pvc, err := e.cs.CoreV1().PersistentVolumeClaims("app").Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &sc,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("100Mi")}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pvName := "pvc-" + string(pvc.UID)
	waitFor(t, "claim app/data bound", func() (bool, string) {
		c, err := e.cs.CoreV1().PersistentVolumeClaims("app").Get(ctx, "data", metav1.GetOptions{})
		return err == nil && c.Spec.VolumeName == pvName && c.Status.Phase == corev1.ClaimBound, fmt.Sprint(err)
	})
	pv, err := e.cs.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
	if err != nil || pv.Spec.CSI == nil || pv.Spec.CSI.VolumeHandle != pvName || pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != pvc.UID || pv.Status.Phase != corev1.VolumeBound {
		t.Fatalf("PV %s: %v %+v", pvName, err, pv)
	}
	nv := e.get(VolumeGVR, pvName)
	if n, _, _ := unstructured.NestedInt64(nv.Object, "spec", "numberOfReplicas"); n != 2 || nv.GetLabels()[recurringJobGroupLabelPrefix+"nightly"] != labelValueEnabled ||
		str(nv, "spec", "size") != fmt.Sprint(100<<20) || !data.Exists(pvName) {
		t.Errorf("provisioned volume: spec %v labels %v", nv.Object["spec"], nv.GetLabels())
	}
	waitFor(t, "kubernetesStatus of the provisioned volume", func() (bool, string) {
		ks := e.kubeStatus(pvName)
		return ks.PVName == pvName && ks.Namespace == "app" && ks.PVCName == "data" && ks.PVStatus == "Bound", fmt.Sprintf("%+v", ks)
	})

	// The verification Job: equal volumes complete it, different ones fail it.
	e.bindStatic("vol-r", "web", "blog-restored")
	e.bindStatic("vol-c", "web", "blog-clone")
	verify := func(name, restoredClaim, sourceClaim string) *batchv1.Job {
		j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{VerifyJobLabel: "true"}},
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "verify", Image: "busybox"}},
				Volumes: []corev1.Volume{
					{Name: "restored", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: restoredClaim}}},
					{Name: "source", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: sourceClaim}}},
				}}}}}
		if _, err := e.cs.BatchV1().Jobs("web").Create(ctx, j, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "job "+name, func() (bool, string) {
			j, err = e.cs.BatchV1().Jobs("web").Get(ctx, name, metav1.GetOptions{})
			return err == nil && jobFinished(j), fmt.Sprint(err)
		})
		return j
	}
	if j := verify("verify-same", "blog-restored", "blog-clone"); j.Status.Succeeded != 1 {
		t.Errorf("equal volumes: job %+v", j.Status)
	}
	if j := verify("verify-differ", "blog-restored", "blog"); j.Status.Failed != 1 || len(j.Status.Conditions) == 0 || j.Status.Conditions[len(j.Status.Conditions)-1].Message != MsgChecksumsDiffer {
		t.Errorf("different volumes: job %+v", j.Status)
	}

	// Backups the cluster does not know (another cluster's) are pulled in on a sync request.
	foreign := lhdata.New(t.TempDir())
	if err := foreign.Create("other", 4<<20); err != nil {
		t.Fatal(err)
	}
	if err := foreign.Snapshot("other", "snap-o"); err != nil {
		t.Fatal(err)
	}
	if _, err := foreign.Backup(ctx, e.cred, e.url, "other", "snap-o", "backup-foreign", map[string]string{KubernetesStatusLabel: `{"namespace":"x","pvcName":"y"}`}); err != nil {
		t.Fatal(err)
	}
	requested := time.Now().UTC().Truncate(time.Second)
	patch := fmt.Sprintf(`{"spec":{"syncRequestedAt":%q}}`, requested.Format(time.RFC3339))
	if _, err := e.dyn.Resource(BackupTargetGVR).Namespace(Namespace).Patch(ctx, DefaultBackupTarget, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pulled backup", func() (bool, string) {
		bt := e.get(BackupTargetGVR, DefaultBackupTarget)
		last, _ := time.Parse(time.RFC3339, str(bt, "status", "lastSyncedAt"))
		_, err := e.dyn.Resource(BackupGVR).Namespace(Namespace).Get(ctx, "backup-foreign", metav1.GetOptions{})
		return err == nil && !last.Before(requested), fmt.Sprintf("lastSyncedAt %v, %v", last, err)
	})
	fb := e.get(BackupGVR, "backup-foreign")
	if str(fb, "status", "state") != BackupStateCompleted || str(fb, "status", "url") != e.url+"?backup=backup-foreign&volume=other" ||
		str(fb, "status", "volumeSize") != fmt.Sprint(4<<20) || str(fb, "status", "labels", KubernetesStatusLabel) != `{"namespace":"x","pvcName":"y"}` ||
		str(fb, "status", "backupCreatedAt") == "" || fb.GetLabels()[LabelBackupVolume] != "other" {
		t.Errorf("pulled backup: labels %v status %v", fb.GetLabels(), fb.Object["status"])
	}
	if bv := e.get(BackupVolumeGVR, "other"); str(bv, "status", "lastBackupName") != "backup-foreign" {
		t.Errorf("BackupVolume other: %v", bv.Object["status"])
	}

	// Deletions: a Backup leaves the store, a Snapshot and a Volume their data.
	for _, d := range []struct {
		gvr  schemaGVR
		name string
	}{{BackupGVR, "backup-a1"}, {SnapshotGVR, "snap-a1"}, {VolumeGVR, "vol-c"}} {
		if err := e.dyn.Resource(d.gvr).Namespace(Namespace).Delete(ctx, d.name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, d.gvr.Resource+" "+d.name+" deleted", func() (bool, string) {
			_, err := e.dyn.Resource(d.gvr).Namespace(Namespace).Get(ctx, d.name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
	}
	if _, err := lhdata.InspectBackup(ctx, e.cred, wantURL); err == nil {
		t.Error("backup-a1 is still in the store after its Backup was deleted")
	}
	if data.HasSnapshot("vol-a", "snap-a1") || data.Exists("vol-c") {
		t.Error("a deleted snapshot or volume kept its data")
	}

	// Wrong credentials: the target is unavailable and a backup fails, both with the
	// driver's words.
	bad := map[string]string{}
	for k, v := range e.cred {
		bad[k] = v
	}
	bad[backuptarget.KeySecretAccessKey] = "wrong-secret"
	e.secret("longhorn-s3", bad)
	waitFor(t, "backup target unavailable", func() (bool, string) {
		ok, msg := backupTargetState(ctx, e.dyn)
		return !ok && strings.Contains(msg, "failed to list system backups in "+e.url) && strings.Contains(msg, "SignatureDoesNotMatch"), msg
	})
	e.snapshot("vol-a", "snap-bad")
	if b := e.backup("vol-a", "snap-bad", "backup-bad", nil); str(b, "status", "state") != BackupStateError ||
		!strings.Contains(str(b, "status", "error"), "SignatureDoesNotMatch") {
		t.Errorf("backup with a bad secret: %v", b.Object["status"])
	}
	e.secret("longhorn-s3", e.cred)
	waitFor(t, "backup target available again", func() (bool, string) { return backupTargetState(ctx, e.dyn) })
}

// TestBackupErrorIsTheDrivers: with the target available, a backup that the store refuses
// carries the driver's message in status.error (here the keys lack the write grant).
func TestBackupErrorIsTheDrivers(t *testing.T) {
	e := newDataEnv(t)
	ctx := e.ctx
	// Swap the keys for ones that may list but not write: the target stays available.
	readOnly := e.srv.Credentials(s3readOnly)
	e.secret("longhorn-s3", readOnly)
	waitFor(t, "target checked with the read-only keys", func() (bool, string) { return backupTargetState(ctx, e.dyn) })
	if err := e.mgr.CreateVolume(ctx, "vol", nil); err != nil {
		t.Fatal(err)
	}
	e.snapshot("vol", "snap")
	b := e.backup("vol", "snap", "backup-denied", nil)
	if str(b, "status", "state") != BackupStateError || !strings.Contains(str(b, "status", "error"), "AccessDenied") {
		t.Errorf("backup without write access: %v", b.Object["status"])
	}
}
