package longhorn

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"helm.sh/helm/v3/pkg/chart"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/talforge/talforge/internal/testenv/helmrepo"
	"github.com/talforge/talforge/internal/testenv/kubeenv"
	"github.com/talforge/talforge/internal/testenv/lhchart"
	"github.com/talforge/talforge/internal/testenv/lhmanager"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// env is one integration fixture: a fresh kube-apiserver (cluster-scoped Longhorn CRDs and
// StorageClasses must not leak between tests), the fake longhorn-manager, a Helm
// repository with every test chart version, and a project whose credentials file is
// really sops-encrypted for a throw-away age key.
type env struct {
	t        *testing.T
	ctx      context.Context
	cp       *kubeenv.ControlPlane
	cs       kubernetes.Interface
	dyn      dynamic.Interface
	repo     *helmrepo.Repo
	mgr      *lhmanager.Manager
	proj     *project
	cacheDir string
	secret   string // the AWS secret access key in the credentials file
}

func newEnv(t *testing.T, version string, replace ...string) *env {
	t.Helper()
	cp := kubeenv.Start(t)
	e := &env{t: t, ctx: context.Background(), cp: cp, cacheDir: t.TempDir()}
	e.cs = kubernetes.NewForConfigOrDie(cp.Config)
	e.dyn = dynamic.NewForConfigOrDie(cp.Config)
	var charts []*chart.Chart
	for _, v := range lhchart.Versions {
		ch, err := lhchart.Chart(v)
		if err != nil {
			t.Fatal(err)
		}
		charts = append(charts, ch)
	}
	e.repo = helmrepo.Start(t, charts...)
	e.mgr = lhmanager.Start(t, cp.Config)

	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOPS_AGE_KEY", id.String())
	t.Setenv("SOPS_AGE_KEY_FILE", "")
	rnd := make([]byte, 12)
	_, _ = rand.Read(rnd)
	e.secret = "tfsecret-" + hex.EncodeToString(rnd)

	replace = append([]string{"  replicaCount: 2\n", "  repoURL: " + e.repo.URL + "\n  replicaCount: 2\n"}, replace...)
	e.proj = newProject(t, version, nil, replace...)
	if _, err := sopsfile.WriteCreationRules(e.proj.root, []string{id.Recipient().String()}); err != nil {
		t.Fatal(err)
	}
	e.writeCreds("AKIATALFORGETEST0001", e.secret)
	return e
}

// writeCreds (re)writes the sops-encrypted credentials file.
func (e *env) writeCreds(keyID, secret string) {
	e.t.Helper()
	plain := fmt.Sprintf("AWS_ACCESS_KEY_ID: %s\nAWS_SECRET_ACCESS_KEY: %s\n", keyID, secret)
	if _, err := sopsfile.WriteFile(e.proj.credsPath, []byte(plain)); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) profile() *profile.Cluster { return e.proj.load(e.t) }

// client returns a Client for the profile as it is now on disk.
func (e *env) client(edit ...func(*Options)) *Client {
	e.t.Helper()
	return e.clientFor(e.profile(), edit...)
}

func (e *env) clientFor(c *profile.Cluster, edit ...func(*Options)) *Client {
	e.t.Helper()
	opts := Options{
		Kubeconfig:          e.cp.Kubeconfig,
		ChartCacheDir:       e.cacheDir,
		HelmTimeout:         time.Minute,
		BackupTargetTimeout: 20 * time.Second,
		HealthTimeout:       20 * time.Second,
		Poll:                50 * time.Millisecond,
		Log:                 testLog{e.t},
	}
	for _, f := range edit {
		f(&opts)
	}
	cl, err := New(c, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	return cl
}

// setVersion rewrites longhorn.version in the profile.
func (e *env) setVersion(from, to string) {
	e.t.Helper()
	e.edit("version: "+from+"\n", "version: "+to+"\n")
}

func (e *env) edit(old, new string) {
	e.t.Helper()
	p := e.proj
	data := mustRead(e.t, p.profilePath)
	if !strings.Contains(data, old) {
		e.t.Fatalf("profile has no %q", old)
	}
	mustWrite(e.t, p.profilePath, strings.Replace(data, old, new, 1))
}

func (e *env) install() *InstallResult {
	e.t.Helper()
	res, err := e.client().Install(e.ctx)
	if err != nil {
		e.t.Fatalf("install: %v", err)
	}
	return res
}

func (e *env) setting(name string) string {
	e.t.Helper()
	u, err := e.dyn.Resource(SettingGVR).Namespace(Namespace).Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		return "<" + err.Error() + ">"
	}
	v, _, _ := unstructured.NestedString(u.Object, "value")
	return v
}

func (e *env) setSetting(name, value string) {
	e.t.Helper()
	// The manager creates some Settings (current-longhorn-version) only once it has rolled
	// out, which may be a moment after Install returned on a loaded machine.
	var u *unstructured.Unstructured
	var err error
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		u, err = e.dyn.Resource(SettingGVR).Namespace(Namespace).Get(e.ctx, name, metav1.GetOptions{})
		if err == nil || !apierrors.IsNotFound(err) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		e.t.Fatal(err)
	}
	u.Object["value"] = value
	if _, err := e.dyn.Resource(SettingGVR).Namespace(Namespace).Update(e.ctx, u, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// revision is the newest Helm revision of the release (0 when none).
func (e *env) revision() int {
	e.t.Helper()
	list, err := e.cs.CoreV1().Secrets(Namespace).List(e.ctx, metav1.ListOptions{LabelSelector: "owner=helm,name=" + ReleaseName})
	if err != nil {
		e.t.Fatal(err)
	}
	max := 0
	for _, s := range list.Items {
		var v int
		fmt.Sscanf(s.Labels["version"], "%d", &v)
		if v > max {
			max = v
		}
	}
	return max
}

func (e *env) waitFor(what string, cond func() (bool, string)) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatalf("timed out waiting for %s: %s", what, last)
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
