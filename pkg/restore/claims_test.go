package restore_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/retry"

	"github.com/talforge/talforge/internal/testenv/lhmanager"
	"github.com/talforge/talforge/pkg/backuptarget"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/restore"
)

const target = "s3://rtest-backups@eu-central-1/"

// claim creates namespace/name with the StorageClass, as a workload's manifest would, and
// waits until Longhorn's CSI driver provisioned a volume for it: its name (pvc-<uid>).
func (f *fixture) claim(namespace, name, class string) string {
	f.t.Helper()
	if _, err := f.cs.CoreV1().Namespaces().Create(f.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		f.t.Fatal(err)
	}
	pvc, err := f.cs.CoreV1().PersistentVolumeClaims(namespace).Create(f.ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &class,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("64Mi")}}},
	}, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	var volume string
	f.waitFor("claim "+namespace+"/"+name+" bound", func() (bool, string) {
		got, err := f.cs.CoreV1().PersistentVolumeClaims(namespace).Get(f.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		volume = got.Spec.VolumeName
		return got.Status.Phase == corev1.ClaimBound && volume != "", string(got.Status.Phase)
	})
	if want := "pvc-" + string(pvc.UID); volume != want {
		f.t.Fatalf("claim %s/%s bound to %q, want the CSI name %s", namespace, name, volume, want)
	}
	// As on a real cluster, Longhorn records the claim on the volume a moment after it binds.
	f.waitFor("Longhorn records the claim on "+volume, func() (bool, string) {
		o := f.volume(volume).Object
		ns, _, _ := unstructured.NestedString(o, "status", "kubernetesStatus", "namespace")
		pvc, _, _ := unstructured.NestedString(o, "status", "kubernetesStatus", "pvcName")
		return ns == namespace && pvc == name, ns + "/" + pvc
	})
	return volume
}

// fill writes random bytes at a few offsets of the volume and returns its whole content.
func (f *fixture) fill(volume string) []byte {
	f.t.Helper()
	for _, off := range []int64{0, 3 << 20, 40 << 20} {
		p := make([]byte, 1<<20)
		_, _ = rand.Read(p)
		if err := f.env.Data().Write(volume, off, p); err != nil {
			f.t.Fatal(err)
		}
	}
	return f.bytes(volume)
}

func (f *fixture) bytes(volume string) []byte {
	f.t.Helper()
	b, err := f.env.Data().ReadAll(volume)
	if err != nil {
		f.t.Fatalf("volume %s data: %v", volume, err)
	}
	return b
}

func (f *fixture) count(gvr schema.GroupVersionResource, selector string) int {
	f.t.Helper()
	l, err := f.dyn.Resource(gvr).Namespace(restore.Namespace).List(f.ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		f.t.Fatal(err)
	}
	return len(l.Items)
}

// TestRestoreClaimsFromTheirLatestBackups is the disaster on a real cluster's terms: a
// workload's claim got a dynamically provisioned volume (pvc-<uid>) and data; the nightly
// RecurringJob and then an on-demand backup put it in the bucket, through Longhorn's own
// backupstore code, with the claim recorded; the cluster and its disks are lost; a new
// cluster finds the claim's newest backup by that record and restores it into a volume and PV
// named as before and the same claim, byte for byte. A second run changes nothing.
func TestRestoreClaimsFromTheirLatestBackups(t *testing.T) {
	f := newFixture(t)
	mgr := f.env.Manager()
	vol := f.claim("traefik", "traefik", "longhorn-retain")
	first := f.fill(vol)
	if err := mgr.CreateVolume(f.ctx, "blog", nil); err != nil {
		t.Fatal(err)
	}
	blog := f.fill("blog")

	if err := mgr.RunRecurringJob(f.ctx, "nightly"); err != nil {
		t.Fatalf("nightly job: %v", err)
	}
	listing, err := backuptarget.List(f.ctx, target, f.env.S3Credentials())
	if err != nil {
		t.Fatal(err)
	}
	nightly := listing.LatestForClaim("traefik", "traefik")
	if nightly == nil || nightly.Volume != vol || nightly.Labels[lhmanager.RecurringJobLabel] != "nightly" || nightly.Claim.PVName != vol {
		t.Fatalf("the nightly backup in the bucket: %+v", nightly)
	}
	time.Sleep(1100 * time.Millisecond) // backup times have second resolution: the next one is newer
	second := f.fill(vol)
	if bytes.Equal(first, second) {
		t.Fatal("the second fill did not change the data")
	}
	ondemand, err := f.rc.BackupVolume(f.ctx, vol)
	if err != nil {
		t.Fatal(err)
	}
	if ondemand.ClaimName() != "traefik/traefik" {
		t.Fatalf("an on-demand backup must record the claim as Longhorn's API does: %+v", ondemand)
	}
	blogBackup, err := f.rc.BackupVolume(f.ctx, "blog")
	if err != nil {
		t.Fatal(err)
	}

	if err := f.env.LoseCluster(f.ctx); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{vol, "blog"} { // the disks are gone too: the bytes must come from S3
		if err := f.env.Data().Delete(v); err != nil {
			t.Fatal(err)
		}
	}
	f.installLonghorn()

	var seen []string
	results, err := f.rc.RestoreAll(f.ctx, f.declared(), func(r restore.Result) { seen = append(seen, r.Claim.String()) })
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if strings.Join(seen, ",") != "traefik/traefik,web/blog" {
		t.Errorf("progress callbacks %v", seen)
	}
	want := map[string]struct {
		volume, backup string
		data           []byte
	}{"traefik/traefik": {vol, ondemand.Name, second}, "web/blog": {"blog", blogBackup.Name, blog}}
	for _, r := range results {
		w := want[r.Claim.String()]
		if r.Action != restore.ActionRestored || r.Volume != w.volume || r.Backup == nil || r.Backup.Name != w.backup || r.PV != "created" || r.PVC != "created" || r.Took <= 0 {
			t.Errorf("%s: %+v (backup %+v), want %s restored from %s with PV and PVC created", r.Claim, r, r.Backup, w.volume, w.backup)
			continue
		}
		if got := f.bytes(r.Volume); !bytes.Equal(got, w.data) {
			t.Errorf("%s: the restored volume %s differs from the data that was backed up", r.Claim, r.Volume)
		}
	}
	if got := f.volume(vol).GetLabels()["recurring-job-group.longhorn.io/critical"]; got != "enabled" {
		t.Errorf("restored volume lost its recurring-job group label: %q", got)
	}
	pv, err := f.cs.CoreV1().PersistentVolumes().Get(f.ctx, vol, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.VolumeHandle != vol || pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.Namespace != "traefik" || pv.Spec.ClaimRef.Name != "traefik" ||
		pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain || pv.Spec.StorageClassName != "longhorn-retain" {
		t.Errorf("PV %s: %+v", vol, pv.Spec)
	}
	f.waitFor("claims bound", func() (bool, string) {
		for _, c := range [][2]string{{"traefik", "traefik"}, {"web", "blog"}} {
			pvc, err := f.cs.CoreV1().PersistentVolumeClaims(c[0]).Get(f.ctx, c[1], metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			if pvc.Status.Phase != corev1.ClaimBound {
				return false, c[0] + "/" + c[1] + " " + string(pvc.Status.Phase)
			}
		}
		return true, ""
	})

	again, err := f.rc.RestoreAll(f.ctx, f.declared(), nil)
	if err != nil {
		t.Fatalf("second restore: %v", err)
	}
	for _, r := range again {
		if r.Action != restore.ActionAlreadyRestored || r.PV != "exists" || r.PVC != "exists" || r.Backup == nil || r.Backup.Name != want[r.Claim.String()].backup {
			t.Errorf("second run, %s: %+v", r.Claim, r)
		}
	}
}

// TestRestoreLeavesBoundClaimsAndRefusesPendingOnes: a claim bound to a volume has its data
// and is left alone; a claim a workload created before the restore, still pending, is not
// bound to restored data behind the workload's back.
func TestRestoreLeavesBoundClaimsAndRefusesPendingOnes(t *testing.T) {
	f := newFixture(t)
	vol := f.claim("traefik", "traefik", "longhorn-retain")
	ds := f.declared()
	r, err := f.rc.Restore(f.ctx, ds[0])
	if err != nil {
		t.Fatal(err)
	}
	if r.Action != restore.ActionExists || r.Volume != vol || r.Backup != nil {
		t.Errorf("bound claim: %+v", r)
	}
	if from, _, _ := unstructured.NestedString(f.volume(vol).Object, "spec", "fromBackup"); from != "" {
		t.Errorf("an existing volume was changed: fromBackup %q", from)
	}

	if _, err := f.cs.CoreV1().Namespaces().Create(f.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := f.cs.CoreV1().PersistentVolumeClaims("web").Create(f.ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "blog"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: new("manual"),
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = f.rc.Restore(f.ctx, ds[1])
	if err == nil || !strings.Contains(err.Error(), "PersistentVolumeClaim web/blog exists with no volume yet") {
		t.Fatalf("pending claim: err = %v", err)
	}
	if _, err := f.dyn.Resource(longhorn.VolumeGVR).Namespace(restore.Namespace).Get(f.ctx, "blog", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a volume was created for a claim that exists: %v", err)
	}
}

func TestRestoreWithoutBackupSaysSo(t *testing.T) {
	f := newFixture(t)
	// Long enough for the backup target listing to finish on a slow machine, so the reason is
	// that the listing has no backup of the claim.
	rc, err := restore.New(f.env.Kube.Kubeconfig, restore.Options{Poll: 20 * time.Millisecond, SyncTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = rc.Restore(f.ctx, f.declared()[0])
	if !errors.Is(err, restore.ErrNoBackup) || !strings.Contains(err.Error(), "claim traefik/traefik: find its latest backup") ||
		!strings.Contains(err.Error(), "Longhorn lists no completed backup recorded for this claim yet") {
		t.Fatalf("err = %v", err)
	}
	if n := f.count(longhorn.VolumeGVR, ""); n != 0 {
		t.Errorf("%d volume(s) created without a backup", n)
	}
}

// TestDRTestProvesTheDataAndLeavesNothing: a DR test of a claim backs it up with the claim
// recorded, restores into a new volume, compares the data with a clone of the backed-up
// snapshot (the verification Job), and then deletes every object it made and its backup from
// the bucket, and nothing else.
func TestDRTestProvesTheDataAndLeavesNothing(t *testing.T) {
	f := newFixture(t)
	vol := f.claim("traefik", "traefik", "longhorn-retain")
	data := f.fill(vol)
	volumesBefore := f.count(longhorn.VolumeGVR, "")

	res, err := f.rc.DRTestClaim(f.ctx, f.declared()[0], restore.DROptions{VerifyData: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || !res.DataVerified || res.Claim != "traefik/traefik" || res.Volume != vol || res.RestoreTook <= 0 || res.Bytes != int64(len(data)) ||
		!strings.HasPrefix(res.Restored, vol+"-drtest-") || len(res.Left) > 0 {
		t.Errorf("DR test: %+v", res)
	}
	names := map[string]bool{}
	for _, c := range res.Checks {
		names[c.Name] = true
		if !c.OK {
			t.Errorf("check %s failed: %s", c.Name, c.Detail)
		}
	}
	for _, n := range []string{"restore finished", "size", "backup", "claim recorded", "data"} {
		if !names[n] {
			t.Errorf("no %q check in %+v", n, res.Checks)
		}
	}

	// Nothing of the test is left: volumes, snapshot, Backup object, its backup in the bucket,
	// claims, PVs, the Job. The source volume and its data are untouched.
	sel := restore.DRTestLabel
	f.waitFor("the DR test's objects deleted", func() (bool, string) {
		// PVs and PVCs keep the kubernetes.io/pv(c)-protection finalizers that the apiserver's
		// StorageObjectInUseProtection admission adds until kube-controller-manager, which does
		// not run here, removes them: deleted means a deletionTimestamp for them.
		live := 0
		pvs, _ := f.cs.CoreV1().PersistentVolumes().List(f.ctx, metav1.ListOptions{LabelSelector: sel})
		for _, o := range pvs.Items {
			if o.DeletionTimestamp == nil {
				live++
			}
		}
		pvcs, _ := f.cs.CoreV1().PersistentVolumeClaims("").List(f.ctx, metav1.ListOptions{LabelSelector: sel})
		for _, o := range pvcs.Items {
			if o.DeletionTimestamp == nil {
				live++
			}
		}
		jobs, _ := f.cs.BatchV1().Jobs("").List(f.ctx, metav1.ListOptions{LabelSelector: sel})
		left := fmt.Sprintf("volumes %d, snapshots %d, backups %d, PVs and PVCs %d, Jobs %d", f.count(longhorn.VolumeGVR, sel), f.count(longhorn.SnapshotGVR, sel),
			f.count(longhorn.BackupGVR, sel), live, len(jobs.Items))
		return left == "volumes 0, snapshots 0, backups 0, PVs and PVCs 0, Jobs 0", left
	})
	f.waitFor("the DR test's backup removed from the bucket", func() (bool, string) {
		got, err := f.env.Backups(f.ctx, target)
		if err != nil {
			return false, err.Error()
		}
		for _, b := range got {
			if b.Name == res.Backup.Name {
				return false, "still holds " + b.Name
			}
		}
		return true, ""
	})
	if n := f.count(longhorn.VolumeGVR, ""); n != volumesBefore {
		t.Errorf("%d volumes after the DR test, want the %d before", n, volumesBefore)
	}
	if !bytes.Equal(f.bytes(vol), data) {
		t.Error("the DR test changed the source volume's data")
	}

	// A target name that exists is refused before anything is made, and never deleted.
	if err := f.env.Manager().CreateVolume(f.ctx, "precious", nil); err != nil {
		t.Fatal(err)
	}
	_, err = f.rc.DRTest(f.ctx, vol, restore.DROptions{Target: "precious"})
	if err == nil || !strings.Contains(err.Error(), "volume precious exists already and this test did not create it") {
		t.Fatalf("existing target: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	f.volume("precious")
	if n := f.count(longhorn.SnapshotGVR, sel) + f.count(longhorn.BackupGVR, sel); n != 0 {
		t.Errorf("a refused DR test created %d snapshot/backup object(s)", n)
	}

	_, err = f.rc.DRTest(f.ctx, "nope", restore.DROptions{})
	if err == nil || !strings.Contains(err.Error(), "there is no Longhorn volume nope") {
		t.Errorf("missing volume: %v", err)
	}
}

// TestRestoreFailureIsReported: Longhorn lists a backup the bucket does not hold (deleted
// behind its back): the restore faults and talforge says so instead of binding a claim.
func TestRestoreFailureIsReported(t *testing.T) {
	f := newFixture(t)
	backups := f.dyn.Resource(longhorn.BackupGVR).Namespace(restore.Namespace)
	if _, err := backups.Create(f.ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "longhorn.io/v1beta2", "kind": "Backup",
		"metadata": map[string]any{"name": "backup-gone", "labels": map[string]any{lhmanager.LabelBackupVolume: "blog", lhmanager.LabelBackupTarget: "default"}},
		"spec":     map[string]any{"snapshotName": ""},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The manager adds its finalizer meanwhile, as longhorn-manager does: update the latest.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		b, err := backups.Get(f.ctx, "backup-gone", metav1.GetOptions{})
		if err != nil {
			return err
		}
		b.Object["status"] = map[string]any{"state": "Completed", "volumeName": "blog", "volumeSize": "2147483648", "backupCreatedAt": time.Now().UTC().Format(time.RFC3339),
			"url": target + "?backup=backup-gone&volume=blog"}
		_, err = backups.UpdateStatus(f.ctx, b, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.rc.Restore(f.ctx, f.declared()[1])
	if err == nil || !strings.Contains(err.Error(), "restore failed") || !strings.Contains(err.Error(), "backup-gone") {
		t.Fatalf("err = %v", err)
	}
	if _, err := f.cs.CoreV1().PersistentVolumeClaims("web").Get(f.ctx, "blog", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a claim was created for a failed restore: %v", err)
	}
}
