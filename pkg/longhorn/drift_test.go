package longhorn

import (
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/talforge/talforge/pkg/profile"
)

type profileRecurringJob = profile.RecurringJob

func TestDriftDetectedAndReconciled(t *testing.T) {
	e := newEnv(t, "1.10.2")
	e.install()
	if err := e.mgr.CreateVolume(e.ctx, "traefik", nil); err != nil {
		t.Fatal(err)
	}
	e.install() // labels the volume that now exists
	cl := e.client()
	if d, err := cl.Drift(e.ctx); err != nil || len(d) != 0 {
		t.Fatalf("drift right after install = %v, %v", d, err)
	}

	// Hand edits of everything talforge owns.
	e.setSetting("default-replica-count", "3")
	bt, err := e.dyn.Resource(BackupTargetGVR).Namespace(Namespace).Get(e.ctx, "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedField(bt.Object, "s3://other-bucket@us-east-1/", "spec", "backupTargetURL")
	_ = unstructured.SetNestedField(bt.Object, "10m0s", "spec", "pollInterval")
	if _, err := e.dyn.Resource(BackupTargetGVR).Namespace(Namespace).Update(e.ctx, bt, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	rj, _ := e.dyn.Resource(RecurringJobGVR).Namespace(Namespace).Get(e.ctx, "nightly", metav1.GetOptions{})
	_ = unstructured.SetNestedField(rj.Object, "0 5 * * *", "spec", "cron")
	_ = unstructured.SetNestedStringSlice(rj.Object, []string{"critical"}, "spec", "groups")
	if _, err := e.dyn.Resource(RecurringJobGVR).Namespace(Namespace).Update(e.ctx, rj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	stale := recurringJobObject(recurringJobObjectInput("old-job"))
	if err := cl.apply(e.ctx, RecurringJobGVR, stale); err != nil {
		t.Fatal(err)
	}
	if err := e.cs.StorageV1().StorageClasses().Delete(e.ctx, "longhorn-retain", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	vol, _ := e.dyn.Resource(VolumeGVR).Namespace(Namespace).Get(e.ctx, "traefik", metav1.GetOptions{})
	vol.SetLabels(nil)
	if _, err := e.dyn.Resource(VolumeGVR).Namespace(Namespace).Update(e.ctx, vol, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	sec, _ := e.cs.CoreV1().Secrets(Namespace).Get(e.ctx, "longhorn-backup-credentials", metav1.GetOptions{})
	sec.Data["AWS_SECRET_ACCESS_KEY"] = []byte("rotated-by-hand")
	if _, err := e.cs.CoreV1().Secrets(Namespace).Update(e.ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	diffs, err := cl.Drift(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range diffs {
		got = append(got, d.Kind+" "+d.Name+" "+d.Field)
		if strings.Contains(d.String(), "rotated-by-hand") || strings.Contains(d.String(), e.secret) {
			t.Errorf("drift shows a secret value: %s", d)
		}
	}
	want := []string{
		"BackupTarget default spec.backupTargetURL",
		"BackupTarget default spec.pollInterval",
		"RecurringJob nightly spec.cron",
		"RecurringJob nightly spec.groups",
		"RecurringJob old-job ",
		"Secret longhorn-backup-credentials data",
		"Setting default-replica-count value",
		"StorageClass longhorn-retain ",
		"Volume traefik (claim traefik/traefik) label recurring-job-group.longhorn.io/critical",
	}
	if !slices.Equal(got, want) {
		t.Errorf("drift =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	for _, d := range diffs {
		if d.Kind == "Setting" && (d.Want != `"2"` || d.Got != `"3"`) {
			t.Errorf("setting difference = %s", d)
		}
	}

	if _, err := cl.Reconcile(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.waitFor("no drift after reconcile", func() (bool, string) {
		d, err := cl.Drift(e.ctx)
		if err != nil {
			return false, err.Error()
		}
		var s []string
		for _, x := range d {
			s = append(s, x.String())
		}
		return len(d) == 0, strings.Join(s, "; ")
	})
	if _, err := e.dyn.Resource(RecurringJobGVR).Namespace(Namespace).Get(e.ctx, "old-job", metav1.GetOptions{}); err == nil {
		t.Error("stale talforge RecurringJob not removed")
	}
	if e.setting("default-replica-count") != "2" {
		t.Errorf("setting not reconciled: %q", e.setting("default-replica-count"))
	}
	// The backup target came back to the profile's and is available again.
	e.waitFor("backup target available", func() (bool, string) {
		st, err := cl.backupTarget(e.ctx)
		return err == nil && st.Available && st.URL == "s3://tazlab-longhorn@eu-central-1/", st.URL + " " + st.Message
	})
}

func recurringJobObjectInput(name string) profileRecurringJob {
	return profileRecurringJob{Name: name, Task: "snapshot", Cron: "0 1 * * *", Retain: 3, Concurrency: 1}
}

// TestInstallPutsBackWhatWasChangedByHand: with the release unchanged, Install still writes
// the profile's Settings and backup target back (the UI writes them directly, and
// longhorn-manager re-reads the chart's ConfigMaps only when they change).
func TestInstallPutsBackWhatWasChangedByHand(t *testing.T) {
	e := newEnv(t, "1.10.2")
	e.install()
	e.setSetting("default-replica-count", "3")
	bt, err := e.dyn.Resource(BackupTargetGVR).Namespace(Namespace).Get(e.ctx, "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedField(bt.Object, "s3://other-bucket@us-east-1/", "spec", "backupTargetURL")
	if _, err := e.dyn.Resource(BackupTargetGVR).Namespace(Namespace).Update(e.ctx, bt, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	if res := e.install(); res.Action != "unchanged" {
		t.Errorf("install = %+v, want the release unchanged", res)
	}
	if got := e.setting("default-replica-count"); got != "2" {
		t.Errorf("default-replica-count = %q after install, want the profile's 2", got)
	}
	d, err := e.client().Drift(e.ctx)
	if err != nil || len(d) != 0 {
		t.Errorf("drift after install = %v, %v", d, err)
	}
}
