package e2e

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/talforge/talforge/internal/testenv/lhdata"
	"github.com/talforge/talforge/internal/testenv/pvesim"
	"github.com/talforge/talforge/pkg/backuptarget"
)

// handMadeValues is the person's values.yaml for `helm install longhorn longhorn/longhorn`.
const handMadeValues = `defaultSettings:
  defaultReplicaCount: 2
  storageMinimalAvailablePercentage: 15
defaultBackupStore:
  backupTarget: s3://homelab-backups@us-east-1/
  backupTargetCredentialSecret: s3-backup
persistence:
  defaultClassReplicaCount: 2
  reclaimPolicy: Retain
`

const handMadeJob = `apiVersion: longhorn.io/v1beta2
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

const handMadeClass = `apiVersion: storage.k8s.io/v1
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

// TestHandMade builds a hand-made cluster for the oldest and the newest supported Talos
// contract and checks, through the real clients, what `talforge import` will find.
func TestHandMade(t *testing.T) {
	for _, tt := range []struct {
		version  string
		multiDoc bool
		net      string // first three octets
		cps, ws  int
	}{
		{"v1.10.6", false, "127.0.82", 3, 1},
		{"v1.14.1", true, "127.0.83", 1, 2},
	} {
		t.Run(tt.version, func(t *testing.T) {
			node := func(name string, i int) HandMadeNode {
				return HandMadeNode{Name: name, IP: fmt.Sprintf("%s.%d", tt.net, 10+i), MAC: fmt.Sprintf("BC:24:11:5E:00:%02X", i),
					VMID: 300 + i, Tags: []string{"homelab"}, GuestAgent: i%2 == 0}
			}
			o := HandMadeOptions{Name: "homelab", TalosVersion: tt.version, MultiDocNetwork: tt.multiDoc, VIP: tt.net + ".5",
				CertSANs: []string{"homelab.lan"},
				Foreign: []pvesim.SeedVM{
					{ID: 100, Running: true, Config: map[string]string{"name": "pihole", "tags": "dns", "scsi0": "local-lvm:vm-100-disk-0,size=8G", "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0"}},
					{ID: 9000, Config: map[string]string{"name": "debian-template", "template": "1", "scsi0": "local-lvm:base-9000-disk-0,size=4G"}},
				},
				Longhorn: &HandMadeLonghorn{Version: "1.10.1", Values: handMadeValues, CredentialSecret: "s3-backup",
					RecurringJobs: []string{handMadeJob}, StorageClasses: []string{handMadeClass},
					Claims: []HandMadeClaim{
						{Namespace: "db", Name: "data", Size: "1Gi", StorageClass: "longhorn-nightly", Data: []byte("postgres pages")},
						{Namespace: "media", Name: "library", Size: "2Gi", Data: []byte("photos")},
					},
					Backups: []HandMadeBackup{{Job: "nightly-backup"}, {Claim: "media/library"}},
				},
			}
			var addrs []string
			for i := 1; i <= tt.cps+tt.ws; i++ {
				n := node(fmt.Sprintf("talos-cp-%d", i), i)
				if i > tt.cps {
					n = node(fmt.Sprintf("talos-worker-%d", i-tt.cps), i)
					n.DataDisk = "50G"
					o.Workers = append(o.Workers, n)
				} else {
					o.ControlPlanes = append(o.ControlPlanes, n)
				}
				addrs = append(addrs, n.IP)
			}
			env := lab.Start(t, Options{Addresses: addrs})
			h := env.HandMade(t, o)
			ctx := t.Context()

			// Talos: every node runs its hand-made config, serves a certificate of the
			// hand-made CA and reports the person's Talos version.
			tc, err := clientconfig.FromBytes(h.Talosconfig)
			if err != nil {
				t.Fatal(err)
			}
			if ctxc := tc.Contexts[tc.Context]; ctxc == nil || !bytes.Contains(h.Talosconfig, []byte(o.ControlPlanes[0].IP)) {
				t.Fatalf("talosconfig context %q lacks the control planes: %s", tc.Context, h.Talosconfig)
			}
			for _, n := range h.Nodes {
				env.mu.Lock()
				var active []byte
				for _, vn := range env.nodes {
					if vn.ip == n.IP {
						active = vn.node.ActiveConfig()
					}
				}
				env.mu.Unlock()
				if !bytes.Equal(active, h.Configs[n.Name]) {
					t.Errorf("%s: the node's active config is not the one applied", n.Name)
				}
				err := env.withTalos(ctx, tc, n.IP, func(c *client.Client) error {
					v, err := c.Version(ctx)
					if err != nil {
						return err
					}
					if got := v.GetMessages()[0].GetVersion().GetTag(); got != tt.version {
						t.Errorf("%s reports Talos %s, want %s", n.Name, got, tt.version)
					}
					return nil
				})
				if err != nil {
					t.Errorf("%s: Version with the hand-made talosconfig: %v", n.Name, err)
				}
			}
			// A client of another CA is refused: the node really serves the hand-made one.
			otherOpts := HandMadeOptions{Name: "other", TalosVersion: tt.version, ControlPlanes: o.ControlPlanes[:1]}
			if err := otherOpts.defaults(); err != nil {
				t.Fatal(err)
			}
			other, err := generateHandMade(&otherOpts)
			if err != nil {
				t.Fatal(err)
			}
			if err := env.withTalos(ctx, other.talosconfig, o.ControlPlanes[0].IP, func(c *client.Client) error {
				_, err := c.Version(ctx)
				return err
			}); err == nil {
				t.Error("a talosconfig of another CA was accepted")
			}
			if err := env.withTalos(ctx, tc, o.ControlPlanes[0].IP, func(c *client.Client) error {
				resp, err := c.EtcdMemberList(ctx, &machine.EtcdMemberListRequest{})
				if err != nil {
					return err
				}
				var got []string
				for _, m := range resp.GetMessages()[0].GetMembers() {
					got = append(got, m.GetHostname())
				}
				var want []string
				for _, cp := range o.ControlPlanes {
					want = append(want, cp.Name)
				}
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("etcd members %v, want %v", got, want)
				}
				return nil
			}); err != nil {
				t.Error(err)
			}

			// Kubernetes, through the kubeconfig the Talos API served.
			rc, err := clientcmd.RESTConfigFromKubeConfig(h.Kubeconfig)
			if err != nil {
				t.Fatal(err)
			}
			cs := kubernetes.NewForConfigOrDie(rc)
			nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var gotNodes, wantNodes []string
			for _, n := range nodes.Items {
				gotNodes = append(gotNodes, n.Name)
			}
			for _, n := range h.Nodes {
				wantNodes = append(wantNodes, n.Name)
			}
			slices.Sort(gotNodes)
			slices.Sort(wantNodes)
			if !slices.Equal(gotNodes, wantNodes) {
				t.Errorf("kubernetes nodes %v, want %v", gotNodes, wantNodes)
			}

			// Helm: release longhorn, chart 1.10.1, exactly the person's values.
			rel := helmRelease(t, h.Kubeconfig, "longhorn-system", "longhorn")
			wantVals, err := chartutil.ReadValues([]byte(handMadeValues))
			if err != nil {
				t.Fatal(err)
			}
			if rel.Info.Status != release.StatusDeployed || rel.Chart.Metadata.Version != "1.10.1" || rel.Version != 1 {
				t.Errorf("release %s: status %s, chart %s, revision %d", rel.Name, rel.Info.Status, rel.Chart.Metadata.Version, rel.Version)
			}
			if !reflect.DeepEqual(map[string]any(wantVals), rel.Config) {
				t.Errorf("release values %v, want the values.yaml %v", rel.Config, wantVals)
			}

			// Backups: in S3, each labelled with its claim.
			// The job backs up the volumes of its group (db/data's class selects it), the UI
			// media/library.
			if len(h.Backups) != 2 {
				t.Fatalf("backups %+v, want db/data's from the job and media/library's from the UI", h.Backups)
			}
			stored, err := env.Backups(ctx, "s3://homelab-backups@us-east-1/")
			if err != nil {
				t.Fatal(err)
			}
			byClaim := map[string]int{}
			for _, b := range h.Backups {
				if !slices.ContainsFunc(stored, func(s lhdata.StoredBackup) bool { return s.URL == b.URL }) {
					t.Errorf("backup %s (%s) not in the store: %v", b.Name, b.URL, stored)
					continue
				}
				info, err := lhdata.InspectBackup(ctx, env.S3Credentials(), b.URL)
				if err != nil {
					t.Fatal(err)
				}
				ks, ok := backuptarget.ParseKubernetesStatus(info.Labels)
				if !ok || ks == nil || ks.Namespace+"/"+ks.PVCName != b.Claim || h.Volumes[b.Claim] != b.Volume {
					t.Errorf("backup %s of %s: labels %v, want the claim %s", b.Name, b.Volume, info.Labels, b.Claim)
				}
				byClaim[b.Claim]++
			}
			if want := map[string]int{"db/data": 1, "media/library": 1}; !maps.Equal(byClaim, want) {
				t.Errorf("backups per claim %v, want %v", byClaim, want)
			}
			if got, err := env.Data().ReadAll(h.Volumes["db/data"]); err != nil || !bytes.HasPrefix(got, []byte("postgres pages")) {
				t.Errorf("db/data volume data: %v", err)
			}

			// PVE: only what was seeded, no request at all, no talforge tag.
			if reqs := env.PVE.Requests(); len(reqs) != 0 {
				t.Errorf("PVE saw requests:\n%s", env.PVE.RequestSummary())
			}
			seeds := map[int]map[string]string{}
			for _, n := range h.Nodes {
				seeds[n.VMID] = n.seedVM(24).Config
			}
			for _, f := range o.Foreign {
				seeds[f.ID] = f.Config
			}
			vms := env.PVE.VMs()
			if len(vms) != len(seeds) {
				t.Errorf("%d VMs, want the %d seeded", len(vms), len(seeds))
			}
			for _, vm := range vms {
				if !maps.Equal(vm.Config, seeds[vm.ID]) {
					t.Errorf("VM %d config %v, want as seeded %v", vm.ID, vm.Config, seeds[vm.ID])
				}
				for _, tag := range vm.Tags() {
					if strings.HasPrefix(tag, "talforge") {
						t.Errorf("VM %d carries tag %s", vm.ID, tag)
					}
				}
			}
		})
	}
}

// helmRelease reads a release as `helm get all` does, with the CLI's kube flags.
func helmRelease(t *testing.T, kubeconfig []byte, ns, name string) *release.Release {
	t.Helper()
	dir := t.TempDir()
	path, cache := filepath.Join(dir, "kubeconfig"), filepath.Join(dir, "cache")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig, flags.CacheDir, flags.Namespace = &path, &cache, &ns
	cfg := new(action.Configuration)
	if err := cfg.Init(flags, ns, "secret", func(string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	rel, err := action.NewGet(cfg).Run(name)
	if err != nil {
		t.Fatalf("helm get %s/%s: %v", ns, name, err)
	}
	return rel
}
