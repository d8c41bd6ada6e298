package longhorn

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/talforge/talforge/internal/testenv/kubeenv"
	"github.com/talforge/talforge/internal/testenv/lhmanager"
)

func TestInstallSetsBackupTargetAndSecondRunIsNoop(t *testing.T) {
	e := newEnv(t, "1.10.2")
	res := e.install()
	if res.Action != "install" || res.Version != "1.10.2" || res.Revision != 1 {
		t.Fatalf("first install = %+v", res)
	}

	ns, err := e.cs.CoreV1().Namespaces().Get(e.ctx, Namespace, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace labels = %v", ns.Labels)
	}
	sec, err := e.cs.CoreV1().Secrets(Namespace).Get(e.ctx, "longhorn-backup-credentials", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Data["AWS_ACCESS_KEY_ID"]) != "AKIATALFORGETEST0001" || string(sec.Data["AWS_SECRET_ACCESS_KEY"]) != e.secret {
		t.Error("credentials Secret does not hold the decrypted keys")
	}

	// The backup target is set from the first install on: BackupTarget "default", available.
	bt, err := e.dyn.Resource(BackupTargetGVR).Namespace(Namespace).Get(e.ctx, "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	url, _, _ := unstructured.NestedString(bt.Object, "spec", "backupTargetURL")
	secret, _, _ := unstructured.NestedString(bt.Object, "spec", "credentialSecret")
	avail, _, _ := unstructured.NestedBool(bt.Object, "status", "available")
	if url != "s3://tazlab-longhorn@eu-central-1/" || secret != "longhorn-backup-credentials" || !avail {
		t.Errorf("BackupTarget default: url %q secret %q available %v", url, secret, avail)
	}
	// Install waits for the settings talforge owns; the manager's own ones follow.
	for name, want := range map[string]string{"default-data-path": "/var/mnt/longhorn", "default-replica-count": "2", "create-default-disk-labeled-nodes": "true"} {
		if got := e.setting(name); got != want {
			t.Errorf("Setting %s = %q, want %q", name, got, want)
		}
	}
	e.waitFor("manager settings", func() (bool, string) {
		v, f := e.setting("current-longhorn-version"), e.setting("deleting-confirmation-flag")
		return v == "v1.10.2" && f == "false", v + " " + f
	})
	rj, err := e.dyn.Resource(RecurringJobGVR).Namespace(Namespace).Get(e.ctx, "nightly", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cron, _, _ := unstructured.NestedString(rj.Object, "spec", "cron"); cron != "0 3 * * *" {
		t.Errorf("nightly cron = %q", cron)
	}
	if mf := rj.GetManagedFields(); len(mf) == 0 || mf[0].Manager != FieldManager || mf[0].Operation != metav1.ManagedFieldsOperationApply {
		t.Errorf("RecurringJob not server-side applied by %q: %+v", FieldManager, mf)
	}
	sc, err := e.cs.StorageV1().StorageClasses().Get(e.ctx, "longhorn-retain", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *sc.ReclaimPolicy != corev1.PersistentVolumeReclaimRetain || sc.Parameters["recurringJobSelector"] != `[{"name":"critical","isGroup":true}]` {
		t.Errorf("StorageClass longhorn-retain = %v %v", *sc.ReclaimPolicy, sc.Parameters)
	}
	chartSC, err := e.cs.StorageV1().StorageClasses().Get(e.ctx, "longhorn", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if chartSC.Parameters["recurringJobSelector"] != `[{"name":"default","isGroup":true}]` || chartSC.Parameters["numberOfReplicas"] != "2" {
		t.Errorf("chart StorageClass longhorn = %v", chartSC.Parameters)
	}

	// A second run changes nothing: same Helm revision, same objects, no download.
	rvs := func() []string {
		var out []string
		s, _ := e.cs.CoreV1().Secrets(Namespace).Get(e.ctx, "longhorn-backup-credentials", metav1.GetOptions{})
		n, _ := e.cs.CoreV1().Namespaces().Get(e.ctx, Namespace, metav1.GetOptions{})
		c, _ := e.cs.StorageV1().StorageClasses().Get(e.ctx, "longhorn-retain", metav1.GetOptions{})
		j, _ := e.dyn.Resource(RecurringJobGVR).Namespace(Namespace).Get(e.ctx, "nightly", metav1.GetOptions{})
		b, _ := e.dyn.Resource(BackupTargetGVR).Namespace(Namespace).Get(e.ctx, "default", metav1.GetOptions{})
		return append(out, s.ResourceVersion, n.ResourceVersion, c.ResourceVersion, j.GetResourceVersion(), b.GetResourceVersion())
	}
	before := rvs()
	res = e.install()
	if res.Action != "unchanged" || res.Revision != 1 || e.revision() != 1 {
		t.Errorf("second install = %+v (helm revision %d), want unchanged at revision 1", res, e.revision())
	}
	if after := rvs(); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("second install modified objects: resourceVersions %v -> %v", before, after)
	}
	if n := e.repo.Downloads(ChartName, "1.10.2"); n != 1 {
		t.Errorf("chart downloaded %d times, want 1", n)
	}

	// A changed value upgrades in place at the same version.
	e.edit("pollInterval: 5m", "pollInterval: 10m")
	if res = e.install(); res.Action != "upgrade" || res.Revision != 2 {
		t.Errorf("install after a values change = %+v", res)
	}
	e.waitFor("poll interval applied", func() (bool, string) {
		bt, _ := e.dyn.Resource(BackupTargetGVR).Namespace(Namespace).Get(e.ctx, "default", metav1.GetOptions{})
		pi, _, _ := unstructured.NestedString(bt.Object, "spec", "pollInterval")
		return pi == "10m0s", pi
	})
	// The chart cache serves the reinstall even with the repository down.
	e.repo.SetDown(true)
	if _, err := e.client().Reinstall(e.ctx); err != nil {
		t.Errorf("reinstall from the chart cache with the repository down: %v", err)
	}
	if n := e.repo.Downloads(ChartName, "1.10.2"); n != 1 {
		t.Errorf("chart downloaded %d times, want 1 (cache)", n)
	}
}

func TestCredentialsNeverOnDisk(t *testing.T) {
	started := time.Now().Add(-time.Second)
	if dir, err := kubeenv.FindAssets(); err == nil {
		t.Setenv(kubeenv.EnvAssets, dir) // HOME changes below
	}
	home, tmp, xdg := t.TempDir(), t.TempDir(), t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("TMPDIR", tmp)
	t.Setenv("XDG_CACHE_HOME", xdg)
	t.Setenv("XDG_CONFIG_HOME", xdg)
	e := newEnv(t, "1.9.2")
	e.install()
	e.client().Reinstall(e.ctx)
	if _, err := e.client().Reconcile(e.ctx); err != nil {
		t.Fatal(err)
	}

	// The plaintext is only in the cluster's Secret.
	sec, err := e.cs.CoreV1().Secrets(Namespace).Get(e.ctx, "longhorn-backup-credentials", metav1.GetOptions{})
	if err != nil || string(sec.Data["AWS_SECRET_ACCESS_KEY"]) != e.secret {
		t.Fatalf("secret not created: %v", err)
	}
	cwd, _ := os.Getwd()
	for _, dir := range []string{e.proj.root, e.cacheDir, home, tmp, xdg, cwd} {
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if info, err := d.Info(); err != nil || info.ModTime().Before(started) {
				return nil
			}
			data, err := os.ReadFile(p)
			if err == nil && bytes.Contains(data, []byte(e.secret)) {
				t.Errorf("the AWS secret is on disk in %s", p)
			}
			return nil
		})
	}
	// The credentials file stays encrypted.
	if strings.Contains(mustRead(t, e.proj.credsPath), e.secret) {
		t.Error("the credentials file holds the plaintext")
	}
	// Nor does the Helm release (values) carry it.
	rels, err := e.cs.CoreV1().Secrets(Namespace).List(e.ctx, metav1.ListOptions{LabelSelector: "owner=helm"})
	if err != nil || len(rels.Items) == 0 {
		t.Fatalf("release secrets: %v", err)
	}
	for _, r := range rels.Items {
		raw, err := base64.StdEncoding.DecodeString(string(r.Data["release"]))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		js, _ := io.ReadAll(zr)
		if !bytes.Contains(js, []byte("defaultBackupStore")) {
			t.Fatalf("could not read release %s", r.Name)
		}
		if bytes.Contains(js, []byte(e.secret)) {
			t.Errorf("Helm release %s contains the AWS secret", r.Name)
		}
	}
}

func TestUpgradeLadderGoesThroughEachMinor(t *testing.T) {
	e := newEnv(t, "1.8.2")
	e.install()
	if err := e.mgr.CreateVolume(e.ctx, "traefik", nil); err != nil {
		t.Fatal(err)
	}
	cl := e.client()
	plan, err := cl.Plan(e.ctx, "1.10.2")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(plan.Steps, ",") != "1.9.2,1.10.2" || e.revision() != 1 {
		t.Fatalf("plan = %v (revision %d)", plan.Steps, e.revision())
	}
	if _, err := cl.Upgrade(e.ctx, "1.10.2"); err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	want := []string{"v1.8.2 -> v1.9.2: ok", "v1.9.2 -> v1.10.2: ok"}
	if got := e.mgr.UpgradeChecks(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("pre-upgrade checks = %q, want %q", got, want)
	}
	if v := e.setting("current-longhorn-version"); v != "v1.10.2" || e.revision() != 3 {
		t.Errorf("after upgrade: version %q, revision %d", v, e.revision())
	}
	// The profile volume got its labels and backups still work.
	vol, _ := e.dyn.Resource(VolumeGVR).Namespace(Namespace).Get(e.ctx, "traefik", metav1.GetOptions{})
	if vol.GetLabels()["recurring-job-group.longhorn.io/critical"] != "enabled" {
		t.Errorf("volume labels = %v", vol.GetLabels())
	}
	// Nothing left to do; a downgrade is refused before Helm is called.
	if plan, err := e.client().Upgrade(e.ctx, "1.10.2"); err != nil || len(plan.Steps) != 0 {
		t.Errorf("second upgrade = %v, %v", plan, err)
	}
	if _, err := e.client().Upgrade(e.ctx, "1.10.1"); err == nil || !strings.Contains(err.Error(), "refusing to downgrade") {
		t.Errorf("downgrade: err = %v", err)
	}
	if e.revision() != 3 || len(e.mgr.UpgradeChecks()) != 2 {
		t.Errorf("a refused downgrade reached Helm: revision %d, checks %q", e.revision(), e.mgr.UpgradeChecks())
	}
}

func TestSkipIsRefusedBeforeHelm(t *testing.T) {
	e := newEnv(t, "1.8.2")
	e.install()
	e.setVersion("1.8.2", "1.10.2")
	_, err := e.client().Install(e.ctx)
	if err == nil || !strings.Contains(err.Error(), "talforge longhorn upgrade --to 1.10.2") {
		t.Fatalf("install with the profile two minors ahead: err = %v", err)
	}
	if e.revision() != 1 || len(e.mgr.UpgradeChecks()) != 0 {
		t.Errorf("Helm was called: revision %d, pre-upgrade checks %q", e.revision(), e.mgr.UpgradeChecks())
	}
}

// TestPreUpgradeRefusalIsReported: when Longhorn's own check refuses (here the running
// manager already reports 1.9.2 while the Helm release says 1.8.2, so re-applying 1.8.2 is
// a downgrade for it), talforge reports Longhorn's message.
func TestPreUpgradeRefusalIsReported(t *testing.T) {
	e := newEnv(t, "1.8.2")
	e.install()
	e.setSetting("current-longhorn-version", "v1.9.2")
	_, err := e.client().Reinstall(e.ctx)
	const msg = "failed to upgrade since downgrading from v1.9.2 to v1.8.2 is not supported"
	if err == nil || !strings.Contains(err.Error(), "the Longhorn pre-upgrade check refused the upgrade to 1.8.2: "+msg) {
		t.Fatalf("err = %v, want Longhorn's message %q", err, msg)
	}
	if e.revision() != 2 {
		t.Errorf("revision = %d, want 2 (the failed upgrade is recorded, nothing was rolled back or uninstalled)", e.revision())
	}
}

func TestReinstallKeepsEveryVolume(t *testing.T) {
	e := newEnv(t, "1.10.2")
	e.install()
	for _, v := range []string{"traefik", "pvc-data"} {
		if err := e.mgr.CreateVolume(e.ctx, v, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.mgr.SimulateBackup(e.ctx, "pvc-data", "backup-1"); err != nil {
		t.Fatal(err)
	}
	uids := map[string]string{}
	vols, _ := e.dyn.Resource(VolumeGVR).Namespace(Namespace).List(e.ctx, metav1.ListOptions{})
	for _, v := range vols.Items {
		uids[v.GetName()] = string(v.GetUID())
	}
	// Break the control plane: the manager, the driver and the settings ConfigMap are gone.
	bg := metav1.DeletePropagationBackground
	_ = e.cs.AppsV1().DaemonSets(Namespace).Delete(e.ctx, "longhorn-manager", metav1.DeleteOptions{PropagationPolicy: &bg})
	_ = e.cs.AppsV1().Deployments(Namespace).Delete(e.ctx, "longhorn-driver-deployer", metav1.DeleteOptions{PropagationPolicy: &bg})
	_ = e.cs.CoreV1().ConfigMaps(Namespace).Delete(e.ctx, "longhorn-default-setting", metav1.DeleteOptions{})

	e.setVersion("1.10.2", "1.11.3") // the profile moved on; reinstall still uses the installed version
	res, err := e.client().Reinstall(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != "1.10.2" || res.Action != "upgrade" {
		t.Errorf("reinstall = %+v, want an upgrade at the installed 1.10.2", res)
	}
	if _, err := e.cs.AppsV1().DaemonSets(Namespace).Get(e.ctx, "longhorn-manager", metav1.GetOptions{}); err != nil {
		t.Errorf("manager not restored: %v", err)
	}
	if _, err := e.cs.CoreV1().ConfigMaps(Namespace).Get(e.ctx, "longhorn-default-setting", metav1.GetOptions{}); err != nil {
		t.Errorf("default-setting ConfigMap not restored: %v", err)
	}
	checkVolumes := func(when string) {
		vols, err := e.dyn.Resource(VolumeGVR).Namespace(Namespace).List(e.ctx, metav1.ListOptions{})
		if err != nil || len(vols.Items) != len(uids) {
			t.Fatalf("%s: volumes %v, %v", when, vols, err)
		}
		for _, v := range vols.Items {
			if uids[v.GetName()] != string(v.GetUID()) {
				t.Errorf("%s: volume %s was re-created", when, v.GetName())
			}
		}
		if _, err := e.dyn.Resource(lhmanager.BackupGVR).Namespace(Namespace).Get(e.ctx, "backup-1", metav1.GetOptions{}); err != nil {
			t.Errorf("%s: backup CR lost: %v", when, err)
		}
	}
	checkVolumes("after reinstall")
	if got := e.mgr.UpgradeChecks(); len(got) != 1 || got[0] != "v1.10.2 -> v1.10.2: ok" {
		t.Errorf("pre-upgrade checks = %q", got)
	}

	// Even the Helm release record lost: reinstall adopts the objects at the running version.
	if err := e.cs.CoreV1().Secrets(Namespace).DeleteCollection(e.ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "owner=helm"}); err != nil {
		t.Fatal(err)
	}
	res, err = e.client().Reinstall(e.ctx)
	if err != nil {
		t.Fatalf("reinstall without a release record: %v", err)
	}
	if res.Action != "install" || res.Version != "1.10.2" || e.revision() != 1 {
		t.Errorf("reinstall without a release = %+v (revision %d)", res, e.revision())
	}
	checkVolumes("after reinstall without a release record")
}

func TestDeletingConfirmationFlagBlocksEverything(t *testing.T) {
	e := newEnv(t, "1.9.2")
	e.install()
	e.setSetting("deleting-confirmation-flag", "true")
	cl := e.client()
	ops := map[string]func() error{
		"install":   func() error { _, err := cl.Install(e.ctx); return err },
		"upgrade":   func() error { _, err := cl.Upgrade(e.ctx, "1.10.2"); return err },
		"reinstall": func() error { _, err := cl.Reinstall(e.ctx); return err },
		"reconcile": func() error { _, err := cl.Reconcile(e.ctx); return err },
	}
	for name, op := range ops {
		err := op()
		if !errors.Is(err, ErrDeletionConfirmed) || !strings.Contains(err.Error(), `"value":"false"`) {
			t.Errorf("%s: err = %v, want ErrDeletionConfirmed with how to set it back", name, err)
		}
	}
	if e.revision() != 1 || len(e.mgr.UpgradeChecks()) != 0 {
		t.Errorf("Helm ran while the flag was true: revision %d", e.revision())
	}
	st, err := cl.Status(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	st.Write(&buf)
	if !strings.Contains(buf.String(), "DANGER") {
		t.Errorf("status does not warn:\n%s", buf.String())
	}
}

func TestStoredVersionsCheckedBefore110(t *testing.T) {
	e := newEnv(t, "1.9.2")
	e.install()
	crd, err := apiextclient.NewForConfigOrDie(e.cp.Config).ApiextensionsV1().CustomResourceDefinitions().Get(e.ctx, "volumes.longhorn.io", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	crd.Status.StoredVersions = []string{"v1beta1", "v1beta2"}
	if _, err := apiextclient.NewForConfigOrDie(e.cp.Config).ApiextensionsV1().CustomResourceDefinitions().UpdateStatus(e.ctx, crd, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = e.client().Upgrade(e.ctx, "1.10.2")
	if err == nil || !strings.Contains(err.Error(), "volumes.longhorn.io stores v1beta1") {
		t.Fatalf("err = %v", err)
	}
	if e.revision() != 1 {
		t.Errorf("Helm ran: revision %d", e.revision())
	}
}

func TestHealthGates(t *testing.T) {
	e := newEnv(t, "1.8.2")
	e.install()
	if err := e.mgr.CreateVolume(e.ctx, "traefik", nil); err != nil {
		t.Fatal(err)
	}
	quick := func(o *Options) { o.HealthTimeout = 2 * time.Second }

	// A rebuild in progress stops the ladder before the first step.
	if err := e.mgr.SetRebuilding(e.ctx, "traefik", true); err != nil {
		t.Fatal(err)
	}
	_, err := e.client(quick).Upgrade(e.ctx, "1.9.2")
	if err == nil || !strings.Contains(err.Error(), "replica rebuild running: traefik") || !strings.Contains(err.Error(), "unhealthy volumes: traefik") {
		t.Fatalf("err = %v", err)
	}
	if e.revision() != 1 {
		t.Errorf("Helm ran with a rebuild in progress: revision %d", e.revision())
	}
	if err := e.mgr.SetRebuilding(e.ctx, "traefik", false); err != nil {
		t.Fatal(err)
	}

	// A manager that does not roll out stops the ladder after the step.
	e.mgr.SetRolloutPaused(true)
	_, err = e.client(quick).Upgrade(e.ctx, "1.10.2")
	if err == nil || !strings.Contains(err.Error(), "after upgrading to 1.9.2") || !strings.Contains(err.Error(), "longhorn-manager runs v1.8.2, not v1.9.2 yet") {
		t.Fatalf("err = %v", err)
	}
	if e.revision() != 2 {
		t.Errorf("revision %d, want 2 (stopped after the first step)", e.revision())
	}
	e.mgr.SetRolloutPaused(false)
	if _, err := e.client().Upgrade(e.ctx, "1.10.2"); err != nil {
		t.Fatalf("resumed upgrade: %v", err)
	}
	if got := e.mgr.UpgradeChecks(); strings.Join(got, "|") != "v1.8.2 -> v1.9.2: ok|v1.9.2 -> v1.10.2: ok" {
		t.Errorf("pre-upgrade checks = %q", got)
	}
}

func TestBackupTargetUnavailableSaysWhy(t *testing.T) {
	e := newEnv(t, "1.10.2")
	e.mgr.SetBackupStoreError("AccessDenied: Access Denied (status code: 403)")
	_, err := e.client(func(o *Options) { o.BackupTargetTimeout = 8 * time.Second }).Install(e.ctx)
	if err == nil || !strings.Contains(err.Error(), "Longhorn reports: AccessDenied: Access Denied") {
		t.Fatalf("err = %v", err)
	}
	e.mgr.SetBackupStoreError("")
	if _, err := e.client().Install(e.ctx); err != nil {
		t.Fatalf("install once the store answers: %v", err)
	}
}

// TestForeignStorageClassIsNeverReplaced: a StorageClass of the profile's name that talforge
// did not create (another provisioner's, or a hand-made one) is neither deleted nor taken
// over: the install says what to do and leaves it exactly as it was.
func TestForeignStorageClassIsNeverReplaced(t *testing.T) {
	e := newEnv(t, "1.10.2")
	retain := corev1.PersistentVolumeReclaimRetain
	foreign, err := e.cs.StorageV1().StorageClasses().Create(e.ctx, &storagev1.StorageClass{
		ObjectMeta:    metav1.ObjectMeta{Name: "longhorn-retain"},
		Provisioner:   "nfs.csi.k8s.io",
		ReclaimPolicy: &retain,
		Parameters:    map[string]string{"server": "nas.lan"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.client().Install(e.ctx)
	if err == nil || !strings.Contains(err.Error(), "StorageClass longhorn-retain exists and talforge did not create it") ||
		!strings.Contains(err.Error(), "provisioner nfs.csi.k8s.io") {
		t.Fatalf("install over a foreign StorageClass: %v", err)
	}
	got, err := e.cs.StorageV1().StorageClasses().Get(e.ctx, "longhorn-retain", metav1.GetOptions{})
	if err != nil || got.UID != foreign.UID || got.Provisioner != "nfs.csi.k8s.io" || got.Parameters["server"] != "nas.lan" || got.Labels[ManagedByLabel] != "" {
		t.Fatalf("the foreign StorageClass was changed: %v %+v", err, got)
	}
}

// TestAdoptedStorageClassKeepsItsParameters: a class made by hand that leaves out parameters
// where talforge writes Longhorn's defaults (fsType, dataLocality) is the profile's class.
// Adopting it labels it; every later install and upgrade leaves its immutable parameters
// as they are instead of failing on them or re-creating the class.
func TestAdoptedStorageClassKeepsItsParameters(t *testing.T) {
	e := newEnv(t, "1.10.2", "recurringJobGroups: [critical]}\n  volumes:", "recurringJobGroups: [critical], adopted: true}\n  volumes:")
	objs, err := BuildObjects(e.profile(), "1.10.2")
	if err != nil {
		t.Fatal(err)
	}
	var want *storagev1.StorageClass
	for _, u := range objs.StorageClasses {
		if u.GetName() == "longhorn-retain" {
			want = &storagev1.StorageClass{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, want); err != nil {
				t.Fatal(err)
			}
		}
	}
	if want == nil {
		t.Fatal("the profile renders no StorageClass longhorn-retain")
	}
	byHand := want.DeepCopy()
	byHand.Labels = nil
	delete(byHand.Parameters, "fsType")
	delete(byHand.Parameters, "dataLocality")
	made, err := e.cs.StorageV1().StorageClasses().Create(e.ctx, byHand, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	e.install()
	e.setVersion("1.10.2", "1.11.3")
	if _, err := e.client().Upgrade(e.ctx, "1.11.3"); err != nil {
		t.Fatalf("upgrade with the adopted class: %v", err)
	}
	if _, err := e.client().Install(e.ctx); err != nil {
		t.Fatalf("a later install with the adopted class: %v", err)
	}
	got, err := e.cs.StorageV1().StorageClasses().Get(e.ctx, "longhorn-retain", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.UID != made.UID || !maps.Equal(got.Parameters, made.Parameters) || got.Labels[ManagedByLabel] != ManagedBy {
		t.Errorf("adopted class after install, upgrade, install: uid %s (was %s), parameters %v (were %v), labels %v",
			got.UID, made.UID, got.Parameters, made.Parameters, got.Labels)
	}
}
