package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/talforge/talforge/internal/testenv/e2e"
	"github.com/talforge/talforge/internal/testenv/kubeenv"
)

const cliLab = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
talos: {version: v1.14.1, allowSchedulingOnControlPlanes: true}
network: {cidr: 127.0.72.0/24, gateway: 127.0.72.1, nameservers: [127.0.72.1]}
proxmox:
  endpoint: {{PVE_URL}}
  tokenFile: secrets/proxmox.sops.yaml
  caFile: pve-ca.pem
  node: pve
  storage: local-lvm
  defaults: {cores: 2, memory: 4096, disk: 20G, longhornDisk: 10G}
nodes:
  - {name: lab-cp-1, role: controlplane, ip: 127.0.72.11}
  - {name: lab-worker-1, role: worker, ip: 127.0.72.21}
longhorn:
  version: 1.10.2
  repoURL: {{REPO_URL}}
  replicaCount: 2
  backup:
    target: s3://lab-longhorn@eu-central-1/
    credentialsFile: secrets/aws-backup.sops.yaml
  volumes:
    - {namespace: traefik, claim: traefik, size: 1Gi}
`

// runCLIIn runs the CLI with stdin.
func runCLIIn(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	var out, errOut strings.Builder
	code := run(t.Context(), args, streams{in: strings.NewReader(stdin), out: &out, errOut: &errOut})
	return cliResult{code: code, out: out.String(), errOut: errOut.String()}
}

// TestLifecycleCommands drives plan, up, status, dr-test and rebuild through the CLI over the
// emulated homelab: exit codes, what is printed, and that a refused rebuild touches nothing.
func TestLifecycleCommands(t *testing.T) {
	env := e2e.Start(t, kubeenv.Start(t), e2e.Options{Addresses: []string{"127.0.72.11", "127.0.72.21"}})
	proj := env.Project(t, "lab", cliLab)
	common := []string{"-p", proj.Profile, "--talos-port", strconv.Itoa(env.TalosPort), "--poll-interval", "50ms", "--timeout", "30s", "--chart-cache", t.TempDir()}
	step := func(name string, want int, stdin string, args ...string) cliResult {
		t.Helper()
		res := runCLIIn(t, stdin, append(args, common...)...)
		if res.code != want {
			t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", name, res.code, want, res.out, res.errOut)
		}
		return res
	}
	expect := func(name, got string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(got, w) {
				t.Errorf("%s: output lacks %q:\n%s", name, w, got)
			}
		}
	}

	res := step("plan before", exitChanges, "", "plan")
	expect("plan before", res.out, "Plan: 2 to create", "would install (configs not generated yet)", "Changes pending")

	res = step("up", exitOK, "", "up")
	expect("up", res.out, "provision  lab-cp-1         created, started", "apply      lab-worker-1     installed", "bootstrap  lab-cp-1         etcd bootstrapped",
		"longhorn   cluster          1.10.2 install (Helm revision 1)", "cluster lab is up (changes applied)", "critical path: ", " → longhorn ", "; longest phase: ")
	res = step("up again", exitOK, "", "up")
	expect("up again", res.out, "cluster lab is up (nothing to do: everything was in place)")

	res = step("plan after", exitOK, "", "plan", "--output", "json")
	var plan struct {
		Changes bool
		Nodes   []struct{ Name, Action string }
		Etcd    string
	}
	if err := json.Unmarshal([]byte(res.out), &plan); err != nil || plan.Changes || len(plan.Nodes) != 2 || plan.Nodes[0].Action != "unchanged" {
		t.Errorf("plan --output json: %v\n%s", err, res.out)
	}

	res = step("upgrade, nothing to do", exitOK, "", "upgrade", "--dry-run")
	expect("upgrade, nothing to do", res.out, "every node of cluster lab runs Talos v1.14.1")

	vol := bindClaim(t, env, "traefik", "traefik")
	res = step("dr-test", exitOK, "", "dr-test", "--verify-data")
	expect("dr-test", res.out, "dr-test    traefik/traefik  PASS: backup backup-", "(time to restore)", "ok   restore finished",
		"ok   data             every file's SHA-256 matches the backed-up snapshot", "traefik/traefik (volume "+vol+")")

	res = step("status", exitOK, "", "status", "--output", "json")
	var st struct {
		Nodes []struct {
			Talos struct{ Mode string }
		}
		Longhorn struct {
			Volumes []struct {
				Claim, Volume string
				LastBackup    *struct{ Name string }
			}
		}
	}
	// The DR test deleted its backup (from the bucket too): no backup of the claim is left.
	if err := json.Unmarshal([]byte(res.out), &st); err != nil || len(st.Nodes) != 2 || st.Nodes[0].Talos.Mode != "configured" ||
		len(st.Longhorn.Volumes) != 1 || st.Longhorn.Volumes[0].Claim != "traefik/traefik" || st.Longhorn.Volumes[0].Volume != vol ||
		st.Longhorn.Volumes[0].LastBackup != nil {
		t.Errorf("status --output json: %v\n%s", err, res.out)
	}

	env.PVE.ResetLog()
	res = step("rebuild, no backup", exitFailure, "", "rebuild")
	expect("rebuild, no backup", res.errOut, "declared claim(s) traefik/traefik have no backup in s3://lab-longhorn@eu-central-1/: a rebuild would lose them")
	res = step("rebuild, wrong name", exitInvalid, "nope\n", "rebuild", "--backup-first", "--keep-data-disks")
	expect("rebuild, wrong name", res.errOut, "Type the cluster name (lab) to destroy and rebuild it:", `"nope" is not the cluster name "lab"; nothing was changed`)
	if m := env.PVE.MutatingRequests(); len(m) > 0 {
		t.Fatalf("a refused rebuild sent %v", m)
	}
	res = step("rebuild", exitOK, "lab\n", "rebuild", "--backup-first", "--keep-data-disks")
	expect("rebuild", res.out, "Rebuild plan for cluster lab", "+ back up volume "+vol+" now", "destroy    lab-worker-1     destroyed, data disk kept",
		"restore    traefik/traefik  restored from backup backup-", "cluster lab rebuilt in")
	if env.Resets() != 1 {
		t.Errorf("cluster losses: %d", env.Resets())
	}

	res = step("status after rebuild", exitOK, "", "status")
	expect("status after rebuild", res.out, "lab-cp-1      controlplane  127.0.72.11", "Ready=True, kubelet v1.37.0", "configured, running  v1.14.1", "Backups:      s3://lab-longhorn@eu-central-1/ available",
		"traefik/traefik  "+vol+"  ", "backup-")

	res = step("bad output flag", exitInvalid, "", "status", "--output", "yaml")
	expect("bad output flag", res.errOut, "--output must be text or json")
}

// bindClaim creates namespace/name with Longhorn's default StorageClass, as a workload would,
// and returns the volume provisioned for it.
func bindClaim(t *testing.T, env *e2e.Env, namespace, name string) string {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(env.Kube.Config)
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	class := "longhorn"
	if _, err := cs.CoreV1().PersistentVolumeClaims(namespace).Create(t.Context(), &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &class,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("32Mi")}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		pvc, err := cs.CoreV1().PersistentVolumeClaims(namespace).Get(t.Context(), name, metav1.GetOptions{})
		if err == nil && pvc.Status.Phase == corev1.ClaimBound && pvc.Spec.VolumeName != "" {
			return pvc.Spec.VolumeName
		}
	}
	t.Fatalf("claim %s/%s was not bound", namespace, name)
	return ""
}
