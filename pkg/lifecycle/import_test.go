package lifecycle_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	factory "github.com/siderolabs/image-factory/pkg/schematic"
	"github.com/siderolabs/talos/pkg/machinery/config"
	talosgenerate "github.com/siderolabs/talos/pkg/machinery/config/generate"
	talossecrets "github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"gopkg.in/yaml.v3"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/client-go/kubernetes"

	"github.com/talforge/talforge/internal/testenv/e2e"
	"github.com/talforge/talforge/internal/testenv/pvesim"
	"github.com/talforge/talforge/pkg/adopt"
	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/lifecycle"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/secrets"
	"github.com/talforge/talforge/pkg/sopsfile"
)

const importValues = `defaultSettings:
  defaultReplicaCount: 2
defaultBackupStore:
  backupTarget: s3://homelab-backups@us-east-1/
  backupTargetCredentialSecret: s3-backup
persistence:
  defaultClassReplicaCount: 2
`

const importJob = `apiVersion: longhorn.io/v1beta2
kind: RecurringJob
metadata:
  name: nightly-backup
spec:
  cron: "0 3 * * *"
  task: backup
  groups: [nightly]
  retain: 7
  concurrency: 1
`

// importClass leaves out fsType and dataLocality, as people do: Longhorn takes its defaults.
const importClass = `apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: longhorn-nightly
provisioner: driver.longhorn.io
allowVolumeExpansion: true
reclaimPolicy: Retain
volumeBindingMode: Immediate
parameters:
  numberOfReplicas: "2"
  staleReplicaTimeout: "30"
  recurringJobSelector: '[{"name":"nightly","isGroup":true}]'
`

// TestImportHandMadeCluster: a cluster built by hand (machinery's own generate, Talos 1.10's
// machine.network, Longhorn from plain Helm values with backups, VMs of its own beside foreign
// ones) is imported: the profile, patches, secrets and outputs reproduce every node's live
// config, the cluster identity is the running one, and nothing on any server changes.
func TestImportHandMadeCluster(t *testing.T) {
	// The reference homelab's nodes run Image Factory's image with Longhorn's extensions and
	// the guest agent: talforge adds exactly those by itself.
	homelab := &factory.Schematic{Customization: factory.Customization{SystemExtensions: factory.SystemExtensions{
		OfficialExtensions: []string{"siderolabs/iscsi-tools", "siderolabs/qemu-guest-agent", "siderolabs/util-linux-tools"}}}}
	for _, tt := range []struct {
		talos, kubernetes, net string
		multiDoc               bool
		schematic              *factory.Schematic
	}{
		{"v1.10.6", "1.33.3", "127.0.72", false, nil},    // machine.network, as Talos 1.10 wrote it; Talos' own installer
		{"v1.14.1", "1.35.0", "127.0.73", true, homelab}, // network documents
	} {
		t.Run(tt.talos, func(t *testing.T) { importHandMade(t, tt.talos, tt.kubernetes, tt.net, tt.multiDoc, tt.schematic) })
	}
}

func importHandMade(t *testing.T, talos, kubernetes, net string, multiDoc bool, schematic *factory.Schematic) {
	addrs := []string{net + ".11", net + ".21"}
	env := shared.Start(t, e2e.Options{Addresses: addrs})
	node := func(name, ip string, i int) e2e.HandMadeNode {
		return e2e.HandMadeNode{Name: name, IP: ip, MAC: fmt.Sprintf("BC:24:11:5E:01:%02X", i), VMID: 400 + i, Tags: []string{"homelab"}, GuestAgent: true}
	}
	worker := node("talos-worker-1", addrs[1], 2)
	h := env.HandMade(t, e2e.HandMadeOptions{
		Name: "homelab", TalosVersion: talos, KubernetesVersion: kubernetes, MultiDocNetwork: multiDoc, CertSANs: []string{"homelab.lan"}, Schematic: schematic,
		ControlPlanes: []e2e.HandMadeNode{node("talos-cp-1", addrs[0], 1)}, Workers: []e2e.HandMadeNode{worker},
		Foreign: []pvesim.SeedVM{{ID: 100, Running: true, Config: map[string]string{"name": "pihole", "scsi0": "local-lvm:vm-100-disk-0,size=8G", "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0"}}},
		Longhorn: &e2e.HandMadeLonghorn{Version: "1.10.1", Values: importValues, CredentialSecret: "s3-backup",
			RecurringJobs: []string{importJob}, StorageClasses: []string{importClass},
			Claims:  []e2e.HandMadeClaim{{Namespace: "media", Name: "library", Size: "1Gi", StorageClass: "longhorn-nightly", Data: []byte("photos")}},
			Backups: []e2e.HandMadeBackup{{Claim: "media/library"}}},
	})

	root := t.TempDir()
	t.Setenv("HOME", root)
	t.Setenv("SOPS_AGE_KEY_FILE", filepath.Join(root, "age-keys.txt"))
	t.Setenv("TALFORGE_PVE_TOKEN", e2e.TokenID+"="+e2e.TokenSecret)
	caFile := filepath.Join(t.TempDir(), "pve-ca.pem")
	if err := os.WriteFile(caFile, env.PVE.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	// Another cluster's talosconfig: a clear error, and nothing written.
	if _, err := lifecycle.Import(t.Context(), lifecycle.Options{}, lifecycle.ImportOptions{Name: "homelab", Root: root,
		Talos: adopt.TalosOptions{Talosconfig: foreignTalosconfig(t, addrs[0]), Port: env.TalosPort}}); err == nil {
		t.Fatal("import with another cluster's talosconfig succeeded")
	}
	if entries, _ := os.ReadDir(root); len(entries) > 0 {
		t.Errorf("a failed import wrote %v", entries)
	}

	env.PVE.ResetLog()
	applies := env.TalosCalls(applyRPC)

	rep, err := lifecycle.Import(t.Context(), lifecycle.Options{Renderers: []generate.Renderer{longhorn.Files}, Detail: testLog{t}}, lifecycle.ImportOptions{
		Name: "homelab", Root: root, Kubeconfig: h.Kubeconfig, ProxmoxEndpoint: env.PVE.URL(), PVE: lifecycle.PVEConnection{CAFile: caFile},
		Talos: adopt.TalosOptions{Talosconfig: h.Talosconfig, Port: env.TalosPort},
	})
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	t.Logf("import wrote %v\nnotes:\n  %s", rep.Written, strings.Join(rep.Notes, "\n  "))
	if data, err := os.ReadFile(filepath.Join(root, "profiles", "homelab.yaml")); err == nil {
		t.Logf("profile:\n%s", data)
	}
	for _, d := range rep.Diffs {
		t.Errorf("%s renders differently from its live config:\n%s", d.Node, d.Diff)
	}
	// The install image is the profile's own when the nodes report its schematic.
	imagePatched := false
	for _, f := range rep.Written {
		if data, err := os.ReadFile(filepath.Join(root, f)); err == nil && strings.HasPrefix(f, "patches/") {
			imagePatched = imagePatched || strings.Contains(string(data), "installer")
		}
	}
	if imagePatched != (schematic == nil) {
		t.Errorf("a patch pins the install image: %v, want %v", imagePatched, schematic == nil)
	}

	// Nothing changed anywhere.
	if m := env.PVE.MutatingRequests(); len(m) > 0 {
		t.Errorf("import sent mutating PVE requests: %v", m)
	}
	if got := env.TalosCalls(applyRPC); got != applies {
		t.Errorf("import sent %d ApplyConfiguration call(s)", got-applies)
	}

	// The profile says what runs; the stored bundle is the running cluster's.
	c, err := profile.Load(filepath.Join(root, "profiles", "homelab.yaml"))
	if err != nil {
		t.Fatalf("the imported profile: %v", err)
	}
	if len(c.Nodes) != 2 || c.Nodes[0].Name != "talos-cp-1" || c.Nodes[0].Role != profile.RoleControlPlane || c.Nodes[0].IP != addrs[0] || c.Talos.Version != talos ||
		c.Nodes[0].VMID != 401 || c.Nodes[1].VMID != 402 || !strings.EqualFold(c.Nodes[1].MAC, worker.MAC) {
		data, _ := yaml.Marshal(c.Nodes)
		t.Errorf("imported nodes:\n%s", data)
	}
	if c.Longhorn == nil || c.Longhorn.Version != "1.10.1" || c.Longhorn.Backup == nil || c.Longhorn.Backup.Target != "s3://homelab-backups@us-east-1/" {
		t.Errorf("imported longhorn block: %+v", c.Longhorn)
	}
	bundle, err := secrets.Load(filepath.Join(root, "clusters", "homelab", secrets.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if bundle.Cluster.ID != h.Bundle.Cluster.ID || bundle.Cluster.Secret != h.Bundle.Cluster.Secret || string(bundle.Certs.OS.Key) != string(h.Bundle.Certs.OS.Key) {
		t.Error("the stored bundle is not the running cluster's")
	}
	creds, err := sopsfile.DecryptFile(filepath.Join(root, "secrets", "aws-backup.sops.yaml"))
	if err != nil || !strings.Contains(string(creds), env.S3Credentials()[backupKeyID]) {
		t.Errorf("the backup credentials file does not hold the cluster's keys: %v", err)
	}
	for _, f := range rep.Written {
		data, err := os.ReadFile(filepath.Join(root, strings.TrimSuffix(f, " (encrypted)")))
		if err != nil {
			t.Fatal(err)
		}
		if secret := env.S3Credentials()[backupSecretKey]; strings.Contains(string(data), secret) {
			t.Errorf("%s holds the S3 secret key in clear", f)
		}
	}

	// plan on the adopted cluster: talforge's ownership tags, and nothing else.
	opts := lifecycle.Options{
		Profile: filepath.Join(root, "profiles", "homelab.yaml"), Renderers: []generate.Renderer{longhorn.Files}, Detail: testLog{t},
		ConnectPVE: lifecycle.PVEConnection{CAFile: caFile}.Connect,
		Talos: bootstrap.Options{TalosPort: env.TalosPort, PollInterval: 20 * time.Millisecond, CallTimeout: 5 * time.Second,
			APITimeout: 30 * time.Second, BootstrapTimeout: 30 * time.Second, HealthTimeout: 30 * time.Second},
		Longhorn: longhorn.Options{ChartCacheDir: t.TempDir(), HelmTimeout: time.Minute, BackupTargetTimeout: 20 * time.Second,
			HealthTimeout: 20 * time.Second, Poll: 50 * time.Millisecond},
	}
	plan, err := lifecycle.Plan(t.Context(), opts)
	if err != nil {
		t.Fatalf("plan after import: %v", err)
	}
	var pb strings.Builder
	plan.Print(&pb)
	t.Logf("plan after import:\n%s", pb.String())
	for _, s := range plan.Steps {
		if s.Action != lifecycle.StepAdopt {
			t.Errorf("plan after import has a step other than adopting what was made by hand: %s", s)
		}
	}
	for _, n := range plan.Nodes {
		if n.Action != "unchanged" {
			t.Errorf("plan after import would change node %s: %s\n%s", n.Name, n.Action, n.Diff)
		}
	}

	// Taking over VMs made by hand is asked for: refused, up changes nothing.
	env.PVE.ResetLog()
	refuse := opts
	var asked []string
	refuse.ConfirmAdopt = func(vms []string) error { asked = vms; return lifecycle.ErrNotConfirmed }
	if _, err := lifecycle.Up(t.Context(), refuse); !errors.Is(err, lifecycle.ErrNotConfirmed) || len(asked) != 3 {
		t.Errorf("up with the adoption refused: %v, asked for %v", err, asked)
	}
	if m := env.PVE.MutatingRequests(); len(m) > 0 {
		t.Errorf("a refused adoption sent %v", m)
	}

	// up adopts the VMs (their tags, nothing else of them) and changes nothing else: no
	// ApplyConfiguration, no Bootstrap, no Helm revision.
	env.PVE.ResetLog()
	applies, boots := env.TalosCalls(applyRPC), env.BootstrapCalls()
	revision := releaseRevision(t, env)
	res, err := lifecycle.Up(t.Context(), opts)
	if err != nil {
		t.Fatalf("up after import: %v", err)
	}
	if d := lifecycle.StepsDiffer(plan.Steps, res.Steps); d != "" {
		t.Errorf("up did not take the planned steps: %s", d)
	}
	for _, r := range env.PVE.MutatingRequests() {
		if r.Method != "POST" || !strings.HasSuffix(r.Path, "/config") || len(r.Params) != 2 || r.Params["tags"] == "" || r.Params["digest"] == "" {
			t.Errorf("up sent more than a tag addition: %s %s %v", r.Method, r.Path, r.Params)
		} else if !strings.Contains(r.Params["tags"], "homelab") || !strings.Contains(r.Params["tags"], "talforge.node.homelab") {
			t.Errorf("tags %q: the person's tag or talforge's is missing", r.Params["tags"])
		}
	}
	if n := len(env.PVE.MutatingRequests()); n != 2 {
		t.Errorf("up sent %d mutating PVE requests, want one tag update per VM", n)
	}
	if env.TalosCalls(applyRPC) != applies || env.BootstrapCalls() != boots || releaseRevision(t, env) != revision {
		t.Errorf("up changed the cluster: ApplyConfiguration %d, Bootstrap %d, Helm revision %d -> %d",
			env.TalosCalls(applyRPC)-applies, env.BootstrapCalls()-boots, revision, releaseRevision(t, env))
	}
	if plan, err = lifecycle.Plan(t.Context(), opts); err != nil || plan.Changes {
		t.Errorf("plan after up: %v, steps %v", err, plan.Steps)
	}

	adoptedUpgrade(t, env, opts)

	// A second import of the same name writes nothing.
	if _, err := lifecycle.Import(t.Context(), lifecycle.Options{}, lifecycle.ImportOptions{Name: "homelab", Root: root,
		Talos: adopt.TalosOptions{Talosconfig: h.Talosconfig, Port: env.TalosPort}}); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Errorf("a second import: %v", err)
	}
}

const (
	backupKeyID     = "AWS_ACCESS_KEY_ID"
	backupSecretKey = "AWS_SECRET_ACCESS_KEY"
)

// releaseRevision is the newest revision of the Longhorn Helm release.
func releaseRevision(t *testing.T, env *e2e.Env) int {
	t.Helper()
	return helmRevisionOf(t, kubernetes.NewForConfigOrDie(env.Kube.Config))
}

// foreignTalosconfig is an admin talosconfig of another cluster (its own CA) for endpoint.
func foreignTalosconfig(t *testing.T, endpoint string) []byte {
	t.Helper()
	contract, err := config.ParseContractFromVersion("v1.14.1")
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := talossecrets.NewBundle(talossecrets.NewFixedClock(time.Now()), contract, talossecrets.WithECDSAServiceAccountKey())
	if err != nil {
		t.Fatal(err)
	}
	in, err := talosgenerate.NewInput("other", "https://"+endpoint+":6443", "1.35.0", talosgenerate.WithSecretsBundle(bundle), talosgenerate.WithVersionContract(contract))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := in.Talosconfig()
	if err != nil {
		t.Fatal(err)
	}
	tc.Contexts[tc.Context].Endpoints = []string{endpoint}
	data, err := tc.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// adoptedUpgrade: the adopted release is upgraded after longhorn.version moves on. plan lists
// every Helm value the upgrade changes before it happens, and the release Helm writes differs
// from the adopted one in exactly those values: everything else the person set is kept.
func adoptedUpgrade(t *testing.T, env *e2e.Env, opts lifecycle.Options) {
	t.Helper()
	data, err := os.ReadFile(opts.Profile)
	if err != nil {
		t.Fatal(err)
	}
	// The release does not record where its chart came from: the test's chart repository.
	if n := strings.Count(string(data), "\n  version: 1.10.1\n"); n != 1 {
		t.Fatalf("the imported profile names Longhorn 1.10.1 %d times:\n%s", n, data)
	}
	if err := os.WriteFile(opts.Profile, []byte(strings.Replace(string(data), "\n  version: 1.10.1\n", "\n  version: 1.11.3\n  repoURL: "+env.Repo.URL+"\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	adopted := deployedLonghorn(t, env)

	plan, err := lifecycle.Plan(t.Context(), opts)
	if err != nil {
		t.Fatalf("plan of the upgrade: %v", err)
	}
	var pb strings.Builder
	plan.Print(&pb)
	t.Logf("plan of the upgrade:\n%s", pb.String())
	if plan.Longhorn == nil || plan.Longhorn.Action != "upgrade" || len(plan.Steps) != 1 || plan.Steps[0].Action != lifecycle.StepUpgrade {
		t.Fatalf("plan after moving longhorn.version: %+v, steps %v", plan.Longhorn, plan.Steps)
	}
	if !strings.Contains(pb.String(), "Helm values that change") && len(plan.Longhorn.Values) > 0 {
		t.Errorf("the printed plan does not list the value changes:\n%s", pb.String())
	}

	res, err := lifecycle.Up(t.Context(), opts)
	if err != nil {
		t.Fatalf("up with the upgrade: %v", err)
	}
	if d := lifecycle.StepsDiffer(plan.Steps, res.Steps); d != "" {
		t.Errorf("up did not take the planned steps: %s", d)
	}
	upgraded := deployedLonghorn(t, env)
	if v := upgraded.Chart.Metadata.Version; v != "1.11.3" {
		t.Fatalf("deployed Longhorn %s after up, want 1.11.3", v)
	}
	var happened []string
	for _, c := range longhorn.ValuesDiff(adopted.Config, upgraded.Config) {
		happened = append(happened, c.String())
	}
	if strings.Join(happened, "\n") != strings.Join(plan.Longhorn.Values, "\n") {
		t.Errorf("Helm values changed by the upgrade:\n  %s\nplan said:\n  %s", strings.Join(happened, "\n  "), strings.Join(plan.Longhorn.Values, "\n  "))
	}
	// What the person set by hand (importValues) is still what the release says.
	for path, want := range map[string]any{
		"defaultSettings.defaultReplicaCount":             2,
		"defaultBackupStore.backupTarget":                 "s3://homelab-backups@us-east-1/",
		"defaultBackupStore.backupTargetCredentialSecret": "s3-backup",
		"persistence.defaultClassReplicaCount":            2,
	} {
		got := any(upgraded.Config)
		for _, k := range strings.Split(path, ".") {
			m, _ := got.(map[string]any)
			got = m[k]
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("after the upgrade %s = %v, the adopted release had %v", path, got, want)
		}
	}
}

// deployedLonghorn reads the deployed Longhorn release through Helm's own storage.
func deployedLonghorn(t *testing.T, env *e2e.Env) *release.Release {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(env.Kube.Config)
	rel, err := storage.Init(driver.NewSecrets(cs.CoreV1().Secrets("longhorn-system"))).Deployed("longhorn")
	if err != nil {
		t.Fatalf("the deployed Longhorn release: %v", err)
	}
	return rel
}
