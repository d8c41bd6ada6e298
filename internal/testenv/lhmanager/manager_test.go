package lhmanager

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/talforge/talforge/internal/testenv/helmrepo"
	"github.com/talforge/talforge/internal/testenv/kubeenv"
	"github.com/talforge/talforge/internal/testenv/lhchart"
)

var (
	kube kubeenv.Shared
	s3   sharedS3
)

func TestMain(m *testing.M) {
	// backupstore logs every config it reads at info level; keep failures readable.
	logrus.SetLevel(logrus.WarnLevel)
	code := kube.Run(m)
	if err := s3.stop(); err != nil {
		os.Stderr.WriteString("stop S3 server: " + err.Error() + "\n")
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// helmEnv drives the real Helm SDK against the test apiserver and the test repository.
type helmEnv struct {
	t        *testing.T
	settings *cli.EnvSettings
	cfg      *action.Configuration
	repoURL  string
}

func newHelmEnv(t *testing.T, cp *kubeenv.ControlPlane, repoURL string) *helmEnv {
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, cp.Kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	s := cli.New()
	s.KubeConfig = kc
	s.SetNamespace(Namespace)
	s.RepositoryCache = filepath.Join(dir, "repo-cache")
	s.RepositoryConfig = filepath.Join(dir, "repositories.yaml")
	cfg := new(action.Configuration)
	if err := cfg.Init(s.RESTClientGetter(), Namespace, "secret", func(string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	return &helmEnv{t: t, settings: s, cfg: cfg, repoURL: repoURL}
}

// upgradeInstall is `helm upgrade --install longhorn longhorn --repo URL --version v -f values`.
func (h *helmEnv) upgradeInstall(version, values string) error {
	h.t.Helper()
	vals, err := chartutil.ReadValues([]byte(values))
	if err != nil {
		h.t.Fatal(err)
	}
	hist := action.NewHistory(h.cfg)
	hist.Max = 1
	_, histErr := hist.Run("longhorn")
	if histErr != nil {
		in := action.NewInstall(h.cfg)
		in.ReleaseName, in.Namespace, in.Timeout = "longhorn", Namespace, 2*time.Minute
		in.RepoURL, in.Version = h.repoURL, version
		ch, err := h.load(&in.ChartPathOptions)
		if err != nil {
			return err
		}
		_, err = in.Run(ch, vals)
		return err
	}
	up := action.NewUpgrade(h.cfg)
	up.Namespace, up.Timeout = Namespace, 2*time.Minute
	up.RepoURL, up.Version = h.repoURL, version
	ch, err := h.load(&up.ChartPathOptions)
	if err != nil {
		return err
	}
	_, err = up.Run("longhorn", ch, vals)
	return err
}

func (h *helmEnv) load(o *action.ChartPathOptions) (*chart.Chart, error) {
	p, err := o.LocateChart(lhchart.Name, h.settings)
	if err != nil {
		return nil, err
	}
	return loader.Load(p)
}

func TestManagerDrivesTheChart(t *testing.T) {
	cp := kube.Get(t)
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(cp.Config)
	dyn := dynamic.NewForConfigOrDie(cp.Config)

	var charts []*chart.Chart
	for _, v := range []string{"1.8.2", "1.9.2", "1.10.2"} {
		ch, err := lhchart.Chart(v)
		if err != nil {
			t.Fatal(err)
		}
		charts = append(charts, ch)
	}
	repo := helmrepo.Start(t, charts...)
	mgr := Start(t, cp.Config)
	h := newHelmEnv(t, cp, repo.URL)

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace, Labels: map[string]string{"pod-security.kubernetes.io/enforce": "privileged"}}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "longhorn-s3", Namespace: Namespace},
		StringData: map[string]string{"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}}
	if _, err := cs.CoreV1().Secrets(Namespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	values := func(replicas int, secretName string) string {
		return fmt.Sprintf(`defaultSettings:
  defaultDataPath: /var/mnt/longhorn
  defaultReplicaCount: %d
defaultBackupStore:
  backupTarget: s3://bucket@eu-central-1/
  backupTargetCredentialSecret: %s
  pollInterval: 300
persistence:
  defaultClassReplicaCount: 2
  recurringJobSelector:
    enable: true
    jobList: '[{"name":"nightly","isGroup":true}]'
`, replicas, secretName)
	}

	// Fresh install at 1.8.2.
	if err := h.upgradeInstall("1.8.2", values(2, "longhorn-s3")); err != nil {
		t.Fatalf("install 1.8.2: %v", err)
	}
	waitFor(t, "settings, backup target, storage class and version after install", func() (bool, string) {
		var miss []string
		for name, want := range map[string]string{"default-data-path": "/var/mnt/longhorn", "default-replica-count": "2", "deleting-confirmation-flag": "false", "current-longhorn-version": "v1.8.2"} {
			if got := settingValue(ctx, dyn, name); got != want {
				miss = append(miss, fmt.Sprintf("%s=%q (want %q)", name, got, want))
			}
		}
		if ok, msg := backupTargetState(ctx, dyn); !ok {
			miss = append(miss, "backup target: "+msg)
		}
		sc, err := cs.StorageV1().StorageClasses().Get(ctx, DefaultStorageClass, metav1.GetOptions{})
		if err != nil {
			miss = append(miss, err.Error())
		} else if sc.Parameters["recurringJobSelector"] != `[{"name":"nightly","isGroup":true}]` || sc.Parameters["numberOfReplicas"] != "2" {
			miss = append(miss, fmt.Sprintf("storage class params %v", sc.Parameters))
		}
		return len(miss) == 0, strings.Join(miss, "; ")
	})
	bt, err := dyn.Resource(BackupTargetGVR).Namespace(Namespace).Get(ctx, DefaultBackupTarget, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if url, _, _ := unstructured.NestedString(bt.Object, "spec", "backupTargetURL"); url != "s3://bucket@eu-central-1/" {
		t.Errorf("backupTargetURL = %q", url)
	}
	if pi, _, _ := unstructured.NestedString(bt.Object, "spec", "pollInterval"); pi != "5m0s" {
		t.Errorf("pollInterval = %q, want 5m0s", pi)
	}

	// A minor skip (1.8 -> 1.10) is refused by the pre-upgrade hook with upstream's message.
	err = h.upgradeInstall("1.10.2", values(2, "longhorn-s3"))
	const skipMsg = "failed to upgrade since upgrading from v1.8.2 to v1.10.2 for minor version is not supported"
	if err == nil || !strings.Contains(err.Error(), "pre-upgrade hooks failed") {
		t.Fatalf("upgrade 1.8.2 -> 1.10.2: err = %v, want a pre-upgrade hook failure", err)
	}
	if got := failedPreCheckEvents(ctx, t, cs); len(got) != 1 || got[0] != skipMsg {
		t.Errorf("FailedUpgradePreCheck events = %q, want [%q]", got, skipMsg)
	}
	if v := settingValue(ctx, dyn, SettingCurrentLonghornVersion); v != "v1.8.2" {
		t.Errorf("current-longhorn-version after refused upgrade = %q", v)
	}

	// One minor at a time works; a UI edit of a Setting is overwritten when the ConfigMap changes.
	setSetting(ctx, t, dyn, "default-replica-count", "5")
	if err := h.upgradeInstall("1.9.2", values(3, "longhorn-s3")); err != nil {
		t.Fatalf("upgrade 1.8.2 -> 1.9.2: %v", err)
	}
	waitFor(t, "1.9.2 rolled out", func() (bool, string) {
		v, r := settingValue(ctx, dyn, SettingCurrentLonghornVersion), settingValue(ctx, dyn, "default-replica-count")
		return v == "v1.9.2" && r == "3", fmt.Sprintf("version %q replicas %q", v, r)
	})
	if err := h.upgradeInstall("1.10.2", values(3, "longhorn-s3")); err != nil {
		t.Fatalf("upgrade 1.9.2 -> 1.10.2: %v", err)
	}
	waitFor(t, "1.10.2 rolled out", func() (bool, string) {
		v := settingValue(ctx, dyn, SettingCurrentLonghornVersion)
		return v == "v1.10.2", v
	})
	// 1.10 renders the per-engine setting quoted; it still lands as "3".
	if r := settingValue(ctx, dyn, "default-replica-count"); r != "3" {
		t.Errorf("default-replica-count on 1.10.2 = %q", r)
	}

	// A downgrade is refused; re-applying the same version is not.
	err = h.upgradeInstall("1.9.2", values(3, "longhorn-s3"))
	if err == nil {
		t.Fatal("downgrade 1.10.2 -> 1.9.2 succeeded")
	}
	if got := failedPreCheckEvents(ctx, t, cs); !contains(got, "failed to upgrade since downgrading from v1.10.2 to v1.9.2 is not supported") {
		t.Errorf("no downgrade event; events %q", got)
	}
	if err := h.upgradeInstall("1.10.2", values(3, "longhorn-s3")); err != nil {
		t.Fatalf("same-version upgrade 1.10.2: %v", err)
	}

	// A missing credential Secret makes the backup target unavailable, with the reason.
	if err := h.upgradeInstall("1.10.2", values(3, "no-such-secret")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "backup target unavailable", func() (bool, string) {
		ok, msg := backupTargetState(ctx, dyn)
		return !ok && strings.Contains(msg, `secrets "no-such-secret" not found`), msg
	})

	// Volumes, health, rebuilds and backups for later gates.
	if err := mgr.CreateVolume(ctx, "pvc-1", map[string]string{"recurring-job-group.longhorn.io/nightly": "enabled"}); err != nil {
		t.Fatal(err)
	}
	if err := mgr.SetRebuilding(ctx, "pvc-1", true); err != nil {
		t.Fatal(err)
	}
	v, err := dyn.Resource(VolumeGVR).Namespace(Namespace).Get(ctx, "pvc-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r, _, _ := unstructured.NestedString(v.Object, "status", "robustness"); r != Degraded {
		t.Errorf("robustness while rebuilding = %q", r)
	}
	if err := mgr.SimulateBackup(ctx, "pvc-1", "backup-1"); err != nil {
		t.Fatal(err)
	}
	bv, err := dyn.Resource(BackupVolumeGVR).Namespace(Namespace).Get(ctx, "pvc-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if last, _, _ := unstructured.NestedString(bv.Object, "status", "lastBackupName"); last != "backup-1" {
		t.Errorf("backup volume lastBackupName = %q", last)
	}

	// The uninstall hook refuses while deleting-confirmation-flag is false and, when it is
	// true, deletes every Volume: the data loss talforge must never trigger.
	runJob := func(name string) *batchv1.Job {
		j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: UninstallJob, Namespace: Namespace},
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "u", Image: "longhornio/longhorn-manager:v1.10.2"}}}}}}
		// Background: the default for Jobs (orphan) needs a garbage collector, which no kcm runs here.
		bg := metav1.DeletePropagationBackground
		_ = cs.BatchV1().Jobs(Namespace).Delete(ctx, UninstallJob, metav1.DeleteOptions{PropagationPolicy: &bg})
		waitFor(t, "old job gone", func() (bool, string) {
			_, err := cs.BatchV1().Jobs(Namespace).Get(ctx, UninstallJob, metav1.GetOptions{})
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
		if _, err := cs.BatchV1().Jobs(Namespace).Create(ctx, j, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var got *batchv1.Job
		waitFor(t, name+" finished", func() (bool, string) {
			got, err = cs.BatchV1().Jobs(Namespace).Get(ctx, UninstallJob, metav1.GetOptions{})
			return err == nil && jobFinished(got), fmt.Sprint(err)
		})
		return got
	}
	if j := runJob("refused uninstall"); j.Status.Failed == 0 {
		t.Errorf("uninstall job with flag=false did not fail: %+v", j.Status)
	}
	if _, err := dyn.Resource(VolumeGVR).Namespace(Namespace).Get(ctx, "pvc-1", metav1.GetOptions{}); err != nil {
		t.Errorf("volume gone after a refused uninstall: %v", err)
	}
	setSetting(ctx, t, dyn, SettingDeletingConfirmationFlag, "true")
	if j := runJob("confirmed uninstall"); j.Status.Succeeded != 1 {
		t.Errorf("uninstall job with flag=true did not succeed: %+v", j.Status)
	}
	if _, err := dyn.Resource(VolumeGVR).Namespace(Namespace).Get(ctx, "pvc-1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("volume after confirmed uninstall: err = %v, want NotFound", err)
	}
	t.Logf("upgrade checks: %q", mgr.UpgradeChecks())
}

func settingValue(ctx context.Context, dyn dynamic.Interface, name string) string {
	u, err := dyn.Resource(SettingGVR).Namespace(Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "<" + err.Error() + ">"
	}
	v, _, _ := unstructured.NestedString(u.Object, "value")
	return v
}

func setSetting(ctx context.Context, t *testing.T, dyn dynamic.Interface, name, value string) {
	t.Helper()
	u, err := dyn.Resource(SettingGVR).Namespace(Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u.Object["value"] = value
	if _, err := dyn.Resource(SettingGVR).Namespace(Namespace).Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func backupTargetState(ctx context.Context, dyn dynamic.Interface) (bool, string) {
	bt, err := dyn.Resource(BackupTargetGVR).Namespace(Namespace).Get(ctx, DefaultBackupTarget, metav1.GetOptions{})
	if err != nil {
		return false, err.Error()
	}
	ok, _, _ := unstructured.NestedBool(bt.Object, "status", "available")
	conds, _, _ := unstructured.NestedSlice(bt.Object, "status", "conditions")
	msg := ""
	for _, c := range conds {
		if m, _ := c.(map[string]any); m != nil {
			msg, _ = m["message"].(string)
		}
	}
	return ok, msg
}

func failedPreCheckEvents(ctx context.Context, t *testing.T, cs kubernetes.Interface) []string {
	t.Helper()
	evs, err := cs.CoreV1().Events(Namespace).List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("reason", ReasonFailedUpgradePreCheck).String()})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs.Items {
		if e.InvolvedObject.Kind == "Job" {
			out = append(out, e.Message)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s: %s", what, last)
}
