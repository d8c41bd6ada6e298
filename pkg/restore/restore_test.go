package restore_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/talforge/talforge/internal/testenv/e2e"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/restore"
)

var lab e2e.Shared

func TestMain(m *testing.M) { os.Exit(lab.Run(m)) }

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
    - {namespace: traefik, claim: traefik, size: 1Gi, storageClass: longhorn-retain, recurringJobGroups: [critical]}
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

func newFixture(t *testing.T) *fixture {
	t.Helper()
	env := lab.Start(t, e2e.Options{})
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
	u, err := f.dyn.Resource(longhorn.VolumeGVR).Namespace(restore.Namespace).Get(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatalf("volume %s: %v", name, err)
	}
	return u
}

func (f *fixture) waitFor(what string, cond func() (bool, string)) {
	f.t.Helper()
	// Longhorn's controllers (the emulator's goroutines) finish deletions after a store
	// lock and a finalizer round trip each: seconds on a loaded 2-core CI machine.
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, last = cond(); ok {
			f.t.Logf("%s after %s", what, time.Since(start).Round(time.Millisecond))
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
		{ds[0].String() + " name=" + ds[0].Name, "traefik/traefik name=", "first: declared by claim, no volume name"},
		{ds[0].Size, int64(1 << 30), "size"},
		{ds[0].Replicas, 2, "replicas from the StorageClass"},
		{ds[0].Labels["recurring-job-group.longhorn.io/critical"], "enabled", "group label"},
		{ds[1].String() + " " + ds[1].Name + " " + ds[1].StorageClass, "web/blog blog longhorn", "old form: static name, claim defaults to it"},
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
