package lifecycle_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/talforge/talforge/pkg/lifecycle"
)

// TestRebuildFromGitRestoresDeclaredVolumes is the disaster-recovery story end to end:
// refusals that protect data first, then a tabula-rasa rebuild that backs the volumes up,
// destroys the VMs (keeping the data disks), re-creates them with the same MACs and IPs and
// the byte-identical secrets bundle, bootstraps a new etcd on an empty Kubernetes API,
// installs Longhorn with the same backup target and restores the declared volume into a
// Volume, PV and PVC bound by name. Status, plan, up and dr-test then agree it is all there.
func TestRebuildFromGitRestoresDeclaredVolumes(t *testing.T) {
	l := newLab(t)
	ctx := t.Context()
	l.up(ctx, l.options())
	if err := l.env.Manager().CreateVolume(ctx, "traefik-data", map[string]string{"recurring-job-group.longhorn.io/traefik-only": "enabled"}); err != nil {
		t.Fatal(err)
	}
	before := l.vms()
	bundle := l.bundle()
	dataDisks := map[string]string{}
	for _, vm := range l.env.PVE.VMs() {
		dataDisks[vm.Name()], _, _ = strings.Cut(vm.Config["scsi1"], ",")
	}

	// Refused: the declared volume has never been backed up, so a rebuild would lose it.
	l.env.PVE.ResetLog()
	_, err := lifecycle.Rebuild(ctx, l.options(), lifecycle.RebuildOptions{Yes: true})
	if err == nil || !strings.Contains(err.Error(), "declared volume(s) traefik-data have no backup in s3://lab-longhorn@eu-central-1/") {
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
	if got := l.env.Store.Backups("s3://lab-longhorn@eu-central-1/"); len(got) != 0 {
		t.Fatalf("a refused rebuild backed up: %v", got)
	}

	l.out.Reset()
	var prompt string
	start := time.Now()
	res, err := lifecycle.Rebuild(ctx, l.options(), lifecycle.RebuildOptions{BackupFirst: true, KeepDataDisks: true,
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
		if strings.Contains(vm.Config["tags"], "talforge-parked") {
			t.Errorf("holder VM %s left behind", vm.Name())
		} else if disk != dataDisks[vm.Name()] {
			t.Errorf("VM %s data disk %q, want the kept %q", vm.Name(), disk, dataDisks[vm.Name()])
		}
	}
	if !bytes.Equal(l.bundle(), bundle) {
		t.Error("the secrets bundle changed")
	}
	l.assertUp()
	if l.env.BootstrapCalls() != 1 {
		t.Errorf("the new etcd got %d Bootstrap calls", l.env.BootstrapCalls())
	}

	// The volume came back from the backup taken first, into a PV and PVC bound by name.
	if len(res.Backups) != 1 || res.Backups[0].Volume != "traefik-data" {
		t.Fatalf("backups taken first: %+v", res.Backups)
	}
	backup := res.Backups[0]
	if len(res.Restored) != 1 || res.Restored[0].Backup == nil || res.Restored[0].Backup.Name != backup.Name {
		t.Fatalf("restored: %+v", res.Restored)
	}
	v, err := l.dyn.Resource(volumeGVR).Namespace("longhorn-system").Get(ctx, "traefik-data", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	from, _, _ := unstructured.NestedString(v.Object, "spec", "fromBackup")
	required, _, _ := unstructured.NestedBool(v.Object, "status", "restoreRequired")
	if from != backup.URL || required || v.GetLabels()["recurring-job-group.longhorn.io/traefik-only"] != "enabled" {
		t.Errorf("volume traefik-data: fromBackup %q (want %q), restoreRequired %v, labels %v", from, backup.URL, required, v.GetLabels())
	}
	pv, err := l.cs.CoreV1().PersistentVolumes().Get(ctx, "traefik-data", metav1.GetOptions{})
	if err != nil || pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.Namespace != "traefik" || pv.Spec.ClaimRef.Name != "traefik" || pv.Spec.CSI.VolumeHandle != "traefik-data" {
		t.Fatalf("PV traefik-data: %v %+v", err, pv)
	}
	waitFor(t, "PVC traefik/traefik bound to traefik-data", func() bool {
		pvc, err := l.cs.CoreV1().PersistentVolumeClaims("traefik").Get(ctx, "traefik", metav1.GetOptions{})
		return err == nil && pvc.Spec.VolumeName == "traefik-data" && pvc.Status.Phase == corev1.ClaimBound
	})
	for _, want := range []string{"- destroy VM lab-cp-1", "keeping its data disk", "+ back up volume traefik-data now", "+ re-create lab-worker-1 (worker) with IP 127.0.71.21 and MAC " + before["lab-worker-1"].MAC,
		"backup     traefik-data", "destroy    lab-cp-1      destroyed, data disk kept in lab-cp-1-parked", "restore    traefik-data  restored from " + backup.Name} {
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
				Name             string
				Declared, Exists bool
				Claim            string
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
		len(lh.Volumes) != 1 || !lh.Volumes[0].Declared || !lh.Volumes[0].Exists || lh.Volumes[0].Claim != "traefik/traefik" ||
		lh.Volumes[0].LastBackup == nil || lh.Volumes[0].LastBackup.Name != backup.Name {
		t.Errorf("status of Longhorn: %+v", lh)
	}
	var human bytes.Buffer
	st.Print(&human)
	for _, want := range []string{"lab-cp-1      controlplane  127.0.71.11", "configured, running", "member", "Ready=True",
		"Backups:      s3://lab-longhorn@eu-central-1/ available", "traefik-data  yes", "traefik/traefik  " + backup.Name} {
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
	results, err := lifecycle.DRTest(ctx, l.options(), lifecycle.DRTestOptions{})
	if err != nil || len(results) != 1 || !results[0].OK() || results[0].RestoreTook <= 0 {
		t.Fatalf("dr-test: %v %+v", err, results)
	}
	if !strings.Contains(l.out.String(), "dr-test    traefik-data  PASS: backup "+results[0].Backup.Name) || !strings.Contains(l.out.String(), "3/3 checks passed") {
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
	if err := l.env.Manager().CreateVolume(t.Context(), "traefik-data", nil); err != nil {
		t.Fatal(err)
	}
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
	if _, err := l.cs.CoreV1().PersistentVolumeClaims("traefik").Get(t.Context(), "traefik", metav1.GetOptions{}); err != nil {
		t.Errorf("claim: %v", err)
	}
	if l.env.BootstrapCalls() != 1 {
		t.Errorf("the new etcd got %d Bootstrap calls", l.env.BootstrapCalls())
	}
}
