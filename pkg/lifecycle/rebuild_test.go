package lifecycle_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/talforge/talforge/pkg/backuptarget"
	"github.com/talforge/talforge/pkg/lifecycle"
	"github.com/talforge/talforge/pkg/restore"
)

// TestRebuildFromGitRestoresDeclaredVolumes is the disaster-recovery story end to end, on a
// real cluster's terms: Traefik's claim gets a dynamically provisioned volume (pvc-<uid>) and
// data; refusals that protect data come first; the nightly RecurringJob writes its backup into
// the real S3 server with Longhorn's own backupstore code; a tabula-rasa rebuild destroys every
// VM and its disks, re-creates them with the same MACs and IPs and the byte-identical secrets
// bundle, bootstraps a new etcd on an empty Kubernetes API, installs Longhorn with the same
// backup target and restores the claim from S3: the same namespace/claim is bound to a volume
// named as before whose bytes equal the original. Status, plan, up and dr-test then agree.
func TestRebuildFromGitRestoresDeclaredVolumes(t *testing.T) {
	l := newLab(t)
	ctx := t.Context()
	l.up(ctx, l.options())
	vol := l.claim(ctx, "traefik", "traefik", "longhorn-traefik-backup")
	data := l.fill(vol)
	if v, err := l.dyn.Resource(volumeGVR).Namespace("longhorn-system").Get(ctx, vol, metav1.GetOptions{}); err != nil ||
		v.GetLabels()["recurring-job-group.longhorn.io/traefik-only"] != "enabled" {
		t.Fatalf("volume %s must join the nightly job's group: %v %v", vol, err, v)
	}
	before := l.vms()
	bundle := l.bundle()

	// Refused: the declared claim has never been backed up, so a rebuild would lose it.
	l.env.PVE.ResetLog()
	_, err := lifecycle.Rebuild(ctx, l.options(), lifecycle.RebuildOptions{Yes: true})
	if err == nil || !strings.Contains(err.Error(), "declared claim(s) traefik/traefik have no backup in s3://lab-longhorn@eu-central-1/") {
		t.Fatalf("rebuild without a backup: %v", err)
	}
	// Refused: the typed confirmation is not the cluster name.
	_, err = lifecycle.Rebuild(ctx, l.options(), lifecycle.RebuildOptions{BackupFirst: true, KeepDataDisks: true,
		Confirm: func(string) (string, error) { return "lab2\n", nil }})
	if !errors.Is(err, lifecycle.ErrNotConfirmed) {
		t.Fatalf("wrong confirmation: %v", err)
	}
	if m := l.env.PVE.MutatingRequests(); len(m) > 0 || l.env.Resets() != 0 {
		t.Fatalf("a refused rebuild changed something: %v", m)
	}
	if got, err := l.env.Backups(ctx, "s3://lab-longhorn@eu-central-1/"); err != nil || len(got) != 0 {
		t.Fatalf("a refused rebuild backed up: %v (%v)", got, err)
	}

	// The nightly backup, as its CronJob would run it, lands in the bucket in Longhorn's
	// layout, with the claim recorded; talforge reads and verifies it straight from S3.
	if err := l.env.Manager().RunRecurringJob(ctx, "nightly-s3-backup"); err != nil {
		t.Fatal(err)
	}
	report, err := backuptarget.Verify(ctx, "s3://lab-longhorn@eu-central-1/", l.env.S3Credentials(), backuptarget.VerifyOptions{ReadData: true})
	if err != nil || !report.OK() || report.Backups != 1 || report.BytesRead == 0 {
		t.Fatalf("backup verify --read-data: %v %+v", err, report)
	}
	backup := report.Listing.LatestForClaim("traefik", "traefik")
	if backup == nil || backup.Volume != vol {
		t.Fatalf("the bucket has no backup of traefik/traefik: %+v", report.Listing)
	}

	l.out.Reset()
	var prompt string
	start := time.Now()
	res, err := lifecycle.Rebuild(ctx, l.options(), lifecycle.RebuildOptions{
		Confirm: func(p string) (string, error) { prompt = p; return "lab\n", nil }})
	t.Logf("rebuild took %s:\n%s", time.Since(start).Round(time.Millisecond), l.out.String())
	if err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if prompt != "Type the cluster name (lab) to destroy and rebuild it: " {
		t.Errorf("prompt %q", prompt)
	}
	if l.env.Resets() != 1 {
		t.Fatalf("the old cluster's state was lost %d times, want once (every VM destroyed)", l.env.Resets())
	}

	// Same machines, same secrets.
	after := l.vms()
	for name, old := range before {
		got, ok := after[name]
		if !ok || !got.Running || got.MAC != old.MAC || got.IP != old.IP {
			t.Errorf("VM %s: before %+v, after %+v: want the same MAC and IP, running", name, old, got)
		}
	}
	if len(after) != len(before) {
		t.Errorf("VMs after the rebuild: %v", after)
	}
	for _, vm := range l.env.PVE.VMs() {
		disk, _, _ := strings.Cut(vm.Config["scsi1"], ",")
		if strings.Contains(vm.Config["tags"], "talforge.parked.") {
			t.Errorf("holder VM %s left behind", vm.Name())
		}
		if disk == "" {
			t.Errorf("VM %s has no data disk", vm.Name())
		}
	}
	if !bytes.Equal(l.bundle(), bundle) {
		t.Error("the secrets bundle changed")
	}
	l.assertUp()
	if l.env.BootstrapCalls() != 1 {
		t.Errorf("the new etcd got %d Bootstrap calls", l.env.BootstrapCalls())
	}

	// The claim came back from the nightly backup, into a volume and PV named as before, bound
	// to the same claim, with the same bytes.
	if len(res.Backups) != 0 || len(res.Restored) != 1 || res.Restored[0].Backup == nil || res.Restored[0].Backup.Name != backup.Name ||
		res.Restored[0].Volume != vol || res.Restored[0].Action != restore.ActionRestored {
		t.Fatalf("restored: %+v", res.Restored)
	}
	v, err := l.dyn.Resource(volumeGVR).Namespace("longhorn-system").Get(ctx, vol, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	from, _, _ := unstructured.NestedString(v.Object, "spec", "fromBackup")
	required, _, _ := unstructured.NestedBool(v.Object, "status", "restoreRequired")
	if from != backup.URL || required || v.GetLabels()["recurring-job-group.longhorn.io/traefik-only"] != "enabled" {
		t.Errorf("volume %s: fromBackup %q (want %q), restoreRequired %v, labels %v", vol, from, backup.URL, required, v.GetLabels())
	}
	pv, err := l.cs.CoreV1().PersistentVolumes().Get(ctx, vol, metav1.GetOptions{})
	if err != nil || pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.Namespace != "traefik" || pv.Spec.ClaimRef.Name != "traefik" || pv.Spec.CSI.VolumeHandle != vol {
		t.Fatalf("PV %s: %v %+v", vol, err, pv)
	}
	waitFor(t, "PVC traefik/traefik bound to "+vol, func() bool {
		pvc, err := l.cs.CoreV1().PersistentVolumeClaims("traefik").Get(ctx, "traefik", metav1.GetOptions{})
		return err == nil && pvc.Spec.VolumeName == vol && pvc.Status.Phase == corev1.ClaimBound
	})
	if got, err := l.env.Data().ReadAll(vol); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the restored volume's bytes differ from the original (%v)", err)
	}
	for _, want := range []string{"- destroy VM lab-cp-1", "deleting its data disk", "+ re-create lab-worker-1 (worker) with IP 127.0.71.21 and MAC " + before["lab-worker-1"].MAC,
		"+ restore claim traefik/traefik from its latest backup (now " + backup.Name + " of volume " + vol,
		"destroy    lab-cp-1", "restore    traefik/traefik  restored from backup " + backup.Name} {
		if !strings.Contains(l.out.String(), want) {
			t.Errorf("rebuild progress lacks %q", want)
		}
	}

	// Everything agrees the cluster is in place.
	st, err := lifecycle.Status(ctx, l.options())
	if err != nil {
		t.Fatal(err)
	}
	var js bytes.Buffer
	if err := st.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Nodes []struct {
			Name       string
			VM         struct{ State string }
			Talos      struct{ Mode, Stage string }
			EtcdMember *bool
			Kubernetes struct {
				Registered bool
				Ready      string
			}
		}
		EtcdMembers []string
		Longhorn    struct {
			Installed    bool
			Version      string
			BackupTarget struct {
				URL       string
				Available bool
			}
			Volumes []struct {
				Claim, Volume    string
				Declared, Exists bool
				LastBackup       *struct{ Name string }
			}
		}
		Problems []string
	}
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, js.String())
	}
	if len(doc.Nodes) != 2 || !slices.Equal(doc.EtcdMembers, []string{"lab-cp-1"}) || len(doc.Problems) > 0 {
		t.Errorf("status: %s", js.String())
	}
	for _, n := range doc.Nodes {
		if n.VM.State != "running" || n.Talos.Mode != "configured" || n.Talos.Stage != "running" || !n.Kubernetes.Registered || n.Kubernetes.Ready != "True" ||
			(n.Name == "lab-cp-1") != (n.EtcdMember != nil && *n.EtcdMember) {
			t.Errorf("status of %s: %+v", n.Name, n)
		}
	}
	lh := doc.Longhorn
	if !lh.Installed || lh.Version != "1.10.2" || lh.BackupTarget.URL != "s3://lab-longhorn@eu-central-1/" || !lh.BackupTarget.Available ||
		len(lh.Volumes) != 1 || !lh.Volumes[0].Declared || !lh.Volumes[0].Exists || lh.Volumes[0].Claim != "traefik/traefik" || lh.Volumes[0].Volume != vol ||
		lh.Volumes[0].LastBackup == nil || lh.Volumes[0].LastBackup.Name != backup.Name {
		t.Errorf("status of Longhorn: %+v", lh)
	}
	var human bytes.Buffer
	st.Print(&human)
	for _, want := range []string{"lab-cp-1      controlplane  127.0.71.11", "configured, running", "member", "Ready=True",
		"Backups:      s3://lab-longhorn@eu-central-1/ available", "traefik/traefik  " + vol + "  ", backup.Name} {
		if !strings.Contains(human.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, human.String())
		}
	}

	plan, err := lifecycle.Plan(ctx, l.options())
	if err != nil || plan.Changes {
		t.Errorf("plan after the rebuild: %v, changes %v", err, plan != nil && plan.Changes)
	}
	l.env.PVE.ResetLog()
	if res := l.up(ctx, l.options()); res.Changed() || len(l.env.PVE.MutatingRequests()) > 0 {
		t.Errorf("up after the rebuild changed something: %+v", res.Phases)
	}

	// The reference homelab's last step: prove the restore works on the live cluster.
	l.out.Reset()
	results, err := lifecycle.DRTest(ctx, l.options(), lifecycle.DRTestOptions{VerifyData: true})
	if err != nil || len(results) != 1 || !results[0].OK() || !results[0].DataVerified || results[0].RestoreTook <= 0 {
		for _, r := range results {
			t.Logf("dr-test result %+v", *r)
		}
		t.Fatalf("dr-test: %v", err)
	}
	if !strings.Contains(l.out.String(), "dr-test    traefik/traefik  PASS: backup "+results[0].Backup.Name) || !strings.Contains(l.out.String(), "data compared, 5/5 checks passed") {
		t.Errorf("dr-test progress:\n%s", l.out.String())
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRebuildResumesAfterAnInterrupt kills a rebuild once the old VMs are gone (while the new
// ones are being provisioned) and again while it restores; `rebuild --resume` carries on
// without destroying anything and ends with the same cluster as an uninterrupted rebuild.
func TestRebuildResumesAfterAnInterrupt(t *testing.T) {
	l := newLab(t)
	l.up(t.Context(), l.options())
	vol := l.claim(t.Context(), "traefik", "traefik", "longhorn-traefik-backup")
	data := l.fill(vol)
	before, bundle := l.vms(), l.bundle()

	kill := func(phase string, after time.Duration, ro lifecycle.RebuildOptions) {
		t.Helper()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		opts := l.options()
		opts.OnPhase = func(name string) {
			if name == phase {
				time.AfterFunc(after, cancel)
			}
		}
		_, err := lifecycle.Rebuild(ctx, opts, ro)
		var ie *lifecycle.InterruptedError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), "run `talforge rebuild --resume` to continue without destroying anything") {
			t.Fatalf("rebuild killed in %s: %v", phase, err)
		}
		t.Logf("killed: %v", err)
	}
	kill(lifecycle.PhaseProvision, 5*time.Millisecond, lifecycle.RebuildOptions{Yes: true, BackupFirst: true, KeepDataDisks: true})
	if l.env.Resets() != 1 {
		t.Fatalf("the old cluster should be gone: %d losses", l.env.Resets())
	}
	kill(lifecycle.PhaseRestore, 0, lifecycle.RebuildOptions{Yes: true, Resume: true})

	l.env.PVE.ResetLog()
	res, err := lifecycle.Rebuild(t.Context(), l.options(), lifecycle.RebuildOptions{Yes: true, Resume: true})
	if err != nil {
		t.Fatalf("rebuild --resume: %v", err)
	}
	for _, r := range l.env.PVE.MutatingRequests() {
		if r.Method == "DELETE" || strings.HasSuffix(r.Path, "/status/stop") {
			t.Errorf("--resume destroyed something: %s %s", r.Method, r.Path)
		}
	}
	if l.env.Resets() != 1 || !bytes.Equal(l.bundle(), bundle) {
		t.Errorf("losses %d, bundle kept %v", l.env.Resets(), bytes.Equal(l.bundle(), bundle))
	}
	for name, old := range before {
		if got := l.vms()[name]; got.MAC != old.MAC || got.IP != old.IP || !got.Running {
			t.Errorf("VM %s: %+v, want MAC %s IP %s", name, got, old.MAC, old.IP)
		}
	}
	l.assertUp()
	if len(res.Restored) != 1 || res.Restored[0].Backup == nil || res.Restored[0].PV != "exists" && res.Restored[0].PV != "created" {
		t.Fatalf("restored %+v", res.Restored)
	}
	if pvc, err := l.cs.CoreV1().PersistentVolumeClaims("traefik").Get(t.Context(), "traefik", metav1.GetOptions{}); err != nil || pvc.Spec.VolumeName != vol {
		t.Errorf("claim: %v %+v", err, pvc)
	}
	// The data disks were kept: the volume's replicas, and its bytes, are still the original.
	if got, err := l.env.Data().ReadAll(vol); err != nil || !bytes.Equal(got, data) {
		t.Errorf("volume %s after the rebuild differs from the original (%v)", vol, err)
	}
	if l.env.BootstrapCalls() != 1 {
		t.Errorf("the new etcd got %d Bootstrap calls", l.env.BootstrapCalls())
	}
}

// TestRebuildRefusesWithoutProvenBackups: when the old cluster cannot be asked (here: no
// kubeconfig), a rebuild must not destroy the only copy of a declared claim's data. It
// refuses, even with --yes, until the bucket itself holds a whole backup of the claim; a
// backup with a missing block is no backup; --keep-data-disks or --accept-data-loss (by name)
// are the only ways past.
func TestRebuildRefusesWithoutProvenBackups(t *testing.T) {
	l := newLab(t)
	ctx := t.Context()
	l.up(ctx, l.options())
	vol := l.claim(ctx, "traefik", "traefik", "longhorn-traefik-backup")
	l.fill(vol)
	kubeconfig := filepath.Join(l.proj.Root, "clusters", "lab", "kubeconfig.sops.yaml")
	if err := os.Rename(kubeconfig, kubeconfig+".away"); err != nil {
		t.Fatal(err)
	}
	refused := func(what, want string, ro lifecycle.RebuildOptions) {
		t.Helper()
		l.env.PVE.ResetLog()
		_, err := lifecycle.Rebuild(ctx, l.options(), ro)
		if err == nil || !strings.Contains(err.Error(), "declared claim(s) traefik/traefik have no backup talforge could verify in S3") ||
			!strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--accept-data-loss") {
			t.Fatalf("%s: %v", what, err)
		}
		if m := l.env.PVE.MutatingRequests(); len(m) > 0 || l.env.Resets() != 0 {
			t.Fatalf("%s: a refused rebuild changed something: %v", what, m)
		}
	}
	refused("no backup at all", "no complete backup of them is in s3://lab-longhorn@eu-central-1/", lifecycle.RebuildOptions{Yes: true})

	// A backup whose block the bucket lost does not count.
	restoreKubeconfig := func() {
		if err := os.Rename(kubeconfig+".away", kubeconfig); err != nil {
			t.Fatal(err)
		}
	}
	restoreKubeconfig()
	if err := l.env.Manager().RunRecurringJob(ctx, "nightly-s3-backup"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(kubeconfig, kubeconfig+".away"); err != nil {
		t.Fatal(err)
	}
	admin := l.env.S3.Client(l.env.S3.AdminAccessKey, l.env.S3.AdminSecretKey)
	objs, err := admin.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("lab-longhorn"), Prefix: aws.String("backupstore/volumes/")})
	if err != nil {
		t.Fatal(err)
	}
	deleted := ""
	for _, o := range objs.Contents {
		if strings.HasSuffix(*o.Key, ".blk") {
			if _, err := admin.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("lab-longhorn"), Key: o.Key}); err != nil {
				t.Fatal(err)
			}
			deleted = *o.Key
			break
		}
	}
	if deleted == "" {
		t.Fatalf("no block in the bucket: %+v", objs.Contents)
	}
	refused("a block missing", "", lifecycle.RebuildOptions{Yes: true})

	// By name, the loss is accepted (the confirmation is then asked: answered wrong here, so
	// nothing is destroyed); kept data disks need no backup.
	for _, ro := range []lifecycle.RebuildOptions{{AcceptDataLoss: true}, {KeepDataDisks: true}} {
		ro.Confirm = func(string) (string, error) { return "no\n", nil }
		if _, err := lifecycle.Rebuild(ctx, l.options(), ro); !errors.Is(err, lifecycle.ErrNotConfirmed) {
			t.Fatalf("rebuild %+v: %v, want it to reach the confirmation", ro, err)
		}
	}
}
