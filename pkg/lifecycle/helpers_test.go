package lifecycle_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
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
	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/lifecycle"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/proxmox"
	"github.com/talforge/talforge/pkg/restore"
)

var shared e2e.Shared

func TestMain(m *testing.M) { os.Exit(shared.Run(m)) }

// homelab is the reference homelab on loopback addresses: one schedulable control plane and
// one worker on Proxmox, Longhorn with S3 backups, the Traefik volume declared for restores.
const homelab = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
talos: {version: v1.14.1, allowSchedulingOnControlPlanes: true}
network: {cidr: 127.0.71.0/24, gateway: 127.0.71.1, nameservers: [127.0.71.1]}
proxmox:
  endpoint: {{PVE_URL}}
  tokenFile: secrets/proxmox.sops.yaml
  caFile: pve-ca.pem
  node: pve
  storage: local-lvm
  defaults: {cores: 2, memory: 4096, disk: 20G, longhornDisk: 10G}
nodes:
  - {name: lab-cp-1, role: controlplane, ip: 127.0.71.11}
  - {name: lab-worker-1, role: worker, ip: 127.0.71.21}
longhorn:
  version: 1.10.2
  repoURL: {{REPO_URL}}
  replicaCount: 2
  backup:
    target: s3://lab-longhorn@eu-central-1/
    credentialsFile: secrets/aws-backup.sops.yaml
    credentialSecret: aws-backup-secret
    recurringJobs:
      - {name: nightly-s3-backup, task: backup, cron: "0 3 * * *", retain: 7, groups: [traefik-only]}
  storageClasses:
    - {name: longhorn-traefik-backup, reclaimPolicy: Retain, replicas: 2, recurringJobGroups: [traefik-only]}
  volumes:
    - {namespace: traefik, claim: traefik, size: 1Gi, storageClass: longhorn-traefik-backup, recurringJobGroups: [traefik-only]}
`

var labAddresses = []string{"127.0.71.11", "127.0.71.21"}

type lab struct {
	t      *testing.T
	env    *e2e.Env
	proj   *e2e.Project
	charts string
	cs     kubernetes.Interface
	dyn    dynamic.Interface
	out    *syncBuffer
}

func newLab(t *testing.T) *lab {
	t.Helper()
	return newLabOf(t, homelab, e2e.Options{Addresses: labAddresses})
}

// newLabOf is a lab of another profile (cluster name lab) on the Env opts describe.
func newLabOf(t *testing.T, profileText string, opts e2e.Options) *lab {
	t.Helper()
	env := shared.Start(t, opts)
	l := &lab{t: t, env: env, proj: env.Project(t, "lab", profileText), charts: t.TempDir(), out: &syncBuffer{},
		cs: kubernetes.NewForConfigOrDie(env.Kube.Config), dyn: dynamic.NewForConfigOrDie(env.Kube.Config)}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("progress:\n%s", l.out.String())
		}
	})
	return l
}

func (l *lab) options() lifecycle.Options {
	return lifecycle.Options{
		Profile:   l.proj.Profile,
		Renderers: []generate.Renderer{longhorn.Files},
		Progress:  l.out,
		Detail:    testLog{l.t},
		Proxmox: proxmox.Options{
			Retry: proxmox.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, Factor: 2},
			Poll:  proxmox.Backoff{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond, Factor: 1.5},
		},
		Talos: bootstrap.Options{
			TalosPort: l.env.TalosPort, PollInterval: 20 * time.Millisecond, CallTimeout: 5 * time.Second,
			APITimeout: 30 * time.Second, BootstrapTimeout: 30 * time.Second, HealthTimeout: 30 * time.Second, ProgressEvery: 5 * time.Second,
		},
		Longhorn: longhorn.Options{ChartCacheDir: l.charts, HelmTimeout: time.Minute, BackupTargetTimeout: 20 * time.Second,
			HealthTimeout: 20 * time.Second, Poll: 50 * time.Millisecond},
		Restore: restore.Options{Poll: 20 * time.Millisecond, SyncTimeout: 20 * time.Second, BackupTimeout: 20 * time.Second, RestoreTimeout: 20 * time.Second},
	}
}

func (l *lab) up(ctx context.Context, opts lifecycle.Options) *lifecycle.UpResult {
	l.t.Helper()
	start := time.Now()
	res, err := lifecycle.Up(ctx, opts)
	if err != nil {
		l.t.Fatalf("up: %v", err)
	}
	l.t.Logf("up took %s", time.Since(start).Round(time.Millisecond))
	return res
}

func (l *lab) cluster() *profile.Cluster {
	l.t.Helper()
	c, err := profile.Load(l.proj.Profile)
	if err != nil {
		l.t.Fatal(err)
	}
	return c
}

func (l *lab) outDir() string { return filepath.Join(l.proj.Root, "clusters", "lab") }

// files hashes every file under clusters/lab with its modification time.
func (l *lab) files() map[string]string {
	l.t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(l.outDir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		rel, _ := filepath.Rel(l.outDir(), p)
		out[rel] = hex.EncodeToString(sum[:8]) + " " + st.ModTime().Format(time.RFC3339Nano)
		return nil
	})
	if err != nil {
		l.t.Fatal(err)
	}
	return out
}

func (l *lab) bundle() []byte {
	l.t.Helper()
	data, err := os.ReadFile(filepath.Join(l.outDir(), "secrets.sops.yaml"))
	if err != nil {
		l.t.Fatal(err)
	}
	return data
}

// vmView is what a node's VM looks like to the tests.
type vmView struct {
	ID      int
	Running bool
	MAC, IP string
	Tags    string
}

// vms returns the cluster's VMs (not the data-disk holders) by name.
func (l *lab) vms() map[string]vmView {
	out := map[string]vmView{}
	for _, vm := range l.env.PVE.VMs() {
		if strings.Contains(vm.Config["tags"], "talforge.parked.") {
			continue
		}
		mac := ""
		if _, rest, ok := strings.Cut(vm.Config["net0"], "="); ok {
			mac, _, _ = strings.Cut(rest, ",")
		}
		ip := ""
		for _, part := range strings.Split(vm.Config["ipconfig0"], ",") {
			if v, ok := strings.CutPrefix(part, "ip="); ok {
				ip, _, _ = strings.Cut(v, "/")
			}
		}
		if _, dup := out[vm.Name()]; dup {
			l.t.Errorf("two VMs named %s", vm.Name())
		}
		out[vm.Name()] = vmView{ID: vm.ID, Running: vm.Running, MAC: strings.ToLower(mac), IP: ip, Tags: vm.Config["tags"]}
	}
	return out
}

// helmRevision is the newest revision of the Longhorn release (0: none).
func (l *lab) helmRevision() int {
	l.t.Helper()
	return helmRevisionOf(l.t, l.cs)
}

// helmRevisionOf is the newest revision of the Longhorn Helm release (0: none).
func helmRevisionOf(t *testing.T, cs kubernetes.Interface) int {
	t.Helper()
	list, err := cs.CoreV1().Secrets("longhorn-system").List(t.Context(), metav1.ListOptions{LabelSelector: "owner=helm,name=longhorn"})
	if err != nil {
		t.Fatal(err)
	}
	rev := 0
	for _, s := range list.Items {
		var v int
		fmt.Sscanf(s.Labels["version"], "%d", &v) // 0 when absent
		rev = max(rev, v)
	}
	return rev
}

func (l *lab) nodeNames() []string {
	l.t.Helper()
	list, err := l.cs.CoreV1().Nodes().List(l.t.Context(), metav1.ListOptions{})
	if err != nil {
		l.t.Fatal(err)
	}
	var names []string
	for _, n := range list.Items {
		names = append(names, n.Name)
	}
	sort.Strings(names)
	return names
}

var (
	backupTargetGVR = schema.GroupVersionResource{Group: "longhorn.io", Version: "v1beta2", Resource: "backuptargets"}
	volumeGVR       = schema.GroupVersionResource{Group: "longhorn.io", Version: "v1beta2", Resource: "volumes"}
)

func (l *lab) backupTarget() (string, bool) {
	l.t.Helper()
	u, err := l.dyn.Resource(backupTargetGVR).Namespace("longhorn-system").Get(l.t.Context(), "default", metav1.GetOptions{})
	if err != nil {
		l.t.Fatalf("BackupTarget default: %v", err)
	}
	url, _, _ := unstructured.NestedString(u.Object, "spec", "backupTargetURL")
	avail, _, _ := unstructured.NestedBool(u.Object, "status", "available")
	return url, avail
}

// assertUp checks the end state of a successful up of the homelab.
func (l *lab) assertUp() {
	l.t.Helper()
	c := l.cluster()
	vms := l.vms()
	if len(vms) != len(c.Nodes) {
		l.t.Errorf("VMs %v, want one per node", vms)
	}
	for _, n := range c.Nodes {
		vm, ok := vms[n.Name]
		if !ok || !vm.Running || vm.MAC != n.MAC || vm.IP != n.IP || !strings.Contains(vm.Tags, "talforge.node.lab") {
			l.t.Errorf("VM %s: %+v, want running with MAC %s, IP %s, tag talforge.node.lab", n.Name, vm, n.MAC, n.IP)
		}
	}
	if got := l.env.EtcdMembers(); !slices.Equal(got, []string{"lab-cp-1"}) {
		l.t.Errorf("etcd members %v", got)
	}
	if got := l.nodeNames(); !slices.Equal(got, []string{"lab-cp-1", "lab-worker-1"}) {
		l.t.Errorf("Kubernetes nodes %v", got)
	}
	if url, avail := l.backupTarget(); url != "s3://lab-longhorn@eu-central-1/" || !avail {
		l.t.Errorf("BackupTarget default: %s available=%v", url, avail)
	}
	if l.helmRevision() < 1 {
		l.t.Error("no Helm release of Longhorn")
	}
	for _, f := range []string{"secrets.sops.yaml", "talosconfig.sops.yaml", "kubeconfig.sops.yaml", "nodes/lab-cp-1.yaml.enc", "longhorn/values.yaml", "aws/iam-policy.json"} {
		if _, err := os.Stat(filepath.Join(l.outDir(), f)); err != nil {
			l.t.Errorf("clusters/lab/%s: %v", f, err)
		}
	}
	secret, err := l.cs.CoreV1().Secrets("longhorn-system").Get(l.t.Context(), "aws-backup-secret", metav1.GetOptions{})
	if err != nil || string(secret.Data["AWS_SECRET_ACCESS_KEY"]) != l.proj.AWSSecret {
		l.t.Errorf("credentials Secret: %v", err)
	}
	l.assertNoPlaintextSecret()
}

// assertNoPlaintextSecret: nothing under clusters/ holds the S3 secret in clear.
func (l *lab) assertNoPlaintextSecret() {
	l.t.Helper()
	_ = filepath.WalkDir(l.outDir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, _ := os.ReadFile(p)
		if bytes.Contains(data, []byte(l.proj.AWSSecret)) {
			l.t.Errorf("%s holds the S3 secret in clear", p)
		}
		return nil
	})
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// syncBuffer collects progress lines from concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

// claim creates namespace/name with the StorageClass, as a workload's manifest would, and
// returns the volume Longhorn's CSI driver provisioned for it (pvc-<uid>).
func (l *lab) claim(ctx context.Context, namespace, name, class string) string {
	l.t.Helper()
	if _, err := l.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		l.t.Fatal(err)
	}
	pvc, err := l.cs.CoreV1().PersistentVolumeClaims(namespace).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &class,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("64Mi")}}},
	}, metav1.CreateOptions{})
	if err != nil {
		l.t.Fatal(err)
	}
	want := "pvc-" + string(pvc.UID)
	waitFor(l.t, "claim "+namespace+"/"+name+" bound to "+want, func() bool {
		got, err := l.cs.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, name, metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.ClaimBound && got.Spec.VolumeName == want
	})
	// As on a real cluster, Longhorn records the claim on the volume a moment after it binds;
	// backups taken before that do not carry it.
	waitFor(l.t, "Longhorn records the claim on "+want, func() bool {
		v, err := l.dyn.Resource(volumeGVR).Namespace("longhorn-system").Get(ctx, want, metav1.GetOptions{})
		if err != nil {
			return false
		}
		ns, _, _ := unstructured.NestedString(v.Object, "status", "kubernetesStatus", "namespace")
		pvc, _, _ := unstructured.NestedString(v.Object, "status", "kubernetesStatus", "pvcName")
		return ns == namespace && pvc == name
	})
	return want
}

// fill writes random bytes into the volume and returns its whole content.
func (l *lab) fill(volume string) []byte {
	l.t.Helper()
	for _, off := range []int64{0, 5 << 20, 33 << 20} {
		p := make([]byte, 512<<10)
		_, _ = rand.Read(p)
		if err := l.env.Data().Write(volume, off, p); err != nil {
			l.t.Fatal(err)
		}
	}
	b, err := l.env.Data().ReadAll(volume)
	if err != nil {
		l.t.Fatal(err)
	}
	return b
}
