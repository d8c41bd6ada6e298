package machineconfig

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"

	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/redact"
	"github.com/talforge/talforge/pkg/schematic"
)

// testProfile is an HA cluster with a VIP, three control planes without Longhorn disks and two
// workers with one, a search domain, an MTU and a node with a named interface.
const testProfile = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
talos: {version: TALOS, kubernetes: K8S}
network:
  cidr: 10.1.0.0/24
  gateway: 10.1.0.1
  nameservers: [10.1.0.1, 9.9.9.9]
  searchDomains: [lab.internal]
  vip: 10.1.0.10
  mtu: 9000
proxmox: {endpoint: "https://pve:8006/api2/json", node: pve, storage: local-lvm}
nodes:
  - {name: cp-1, role: controlplane, ip: 10.1.0.11}
  - {name: cp-2, role: controlplane, ip: 10.1.0.12}
  - {name: cp-3, role: controlplane, ip: 10.1.0.13, interface: eth1}
  - {name: w-1, role: worker, ip: 10.1.0.21, longhornDisk: 50G}
  - {name: w-2, role: worker, ip: 10.1.0.22, longhornDisk: 50G, installDisk: /dev/vda}
PATCHES
longhorn: {replicaCount: 2}
`

var contracts = []struct{ talos, k8s string }{
	{"v1.10.9", "v1.33.0"},
	{"v1.12.11", "v1.35.0"},
	{"v1.14.1", "v1.37.0"},
}

func loadProfile(t testing.TB, talos, k8s, patches string, files map[string]string) *profile.Cluster {
	t.Helper()

	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}

		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	text := strings.NewReplacer("TALOS", talos, "K8S", k8s, "PATCHES", patches).Replace(testProfile)

	c, err := profile.Parse(filepath.Join(dir, "lab.yaml"), []byte(text))
	if err != nil {
		t.Fatal(err)
	}

	return c
}

var fixedBundles = map[string]*secrets.Bundle{}

func bundleFor(t testing.TB, talos string) *secrets.Bundle {
	t.Helper()

	if b, ok := fixedBundles[talos]; ok {
		return b
	}

	vc, err := config.ParseContractFromVersion(talos)
	if err != nil {
		t.Fatal(err)
	}

	// Fixed within a run (every node gets the same certificates), but not a calendar date: a
	// bundle minted on a fixed day makes a talosconfig whose client certificate (one year)
	// falls inside the renewal window a year later, and the tests would start failing then.
	b, err := secrets.NewBundle(secrets.NewFixedClock(time.Now().UTC().Truncate(24*time.Hour)), vc)
	if err != nil {
		t.Fatal(err)
	}

	fixedBundles[talos] = b

	return b
}

// generator is a Generator for c with the fixed bundle of its Talos version.
func generator(t testing.TB, c *profile.Cluster) *Generator {
	t.Helper()

	img, err := schematic.ForCluster(c)
	if err != nil {
		t.Fatal(err)
	}

	g, err := New(t.Context(), c, img, bundleFor(t, c.Talos.Version))
	if err != nil {
		t.Fatal(err)
	}

	return g
}

func render(t testing.TB, c *profile.Cluster) map[string]*Config {
	t.Helper()

	cfgs, err := generator(t, c).All(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	out := map[string]*Config{}
	for _, cfg := range cfgs {
		out[cfg.Node.Name] = cfg
	}

	return out
}

// Every config of every supported contract loads and validates with machinery, and carries the
// built-in settings in the form its contract expects.
func TestConfigsPerContract(t *testing.T) {
	for _, tc := range contracts {
		t.Run(tc.talos, func(t *testing.T) {
			c := loadProfile(t, tc.talos, tc.k8s, "", nil)
			cfgs := render(t, c)
			multidoc := tc.talos != "v1.10.9"

			for name, cfg := range cfgs {
				// Round trip through machinery's own loader, then validate for an installed machine.
				loaded, err := configloader.NewFromBytes(cfg.Bytes)
				if err != nil {
					t.Fatalf("%s: machinery cannot load the config: %v", name, err)
				}

				if _, err := loaded.ValidateAsClient(metalMode{}); err != nil {
					t.Fatalf("%s: %v", name, err)
				}

				text := string(cfg.Bytes)
				node, _ := c.Node(name)

				mustContain(t, name, text,
					"factory.talos.dev/nocloud-installer/"+mustImage(t, c).ID+":"+tc.talos,
					c.NodeCIDR(node),
					"10.1.0.1", "9.9.9.9", "lab.internal",
				)

				if multidoc {
					mustContain(t, name, text, "kind: HostnameConfig\nhostname: "+name, "kind: LinkConfig", "mtu: 9000", "- gateway: 10.1.0.1")
					mustNotContain(t, name, text, "auto: stable")
				} else {
					mustContain(t, name, text, "hostname: "+name, "network: 0.0.0.0/0", "gateway: 10.1.0.1", "mtu: 9000")
				}

				switch {
				case node.Interface != "" && multidoc:
					mustContain(t, name, text, "kind: LinkConfig\nname: eth1")
					mustNotContain(t, name, text, "kind: LinkAliasConfig")
				case node.Interface != "":
					mustContain(t, name, text, "interface: eth1")
				case multidoc:
					mustContain(t, name, text, "kind: LinkAliasConfig\nname: lan\nselector:\n    match: mac(link.permanent_addr) == \""+node.MAC+"\"")
				default:
					mustContain(t, name, text, "hardwareAddr: "+node.MAC)
				}

				vip := "kind: Layer2VIPConfig\nname: 10.1.0.10\nlink: "
				if !multidoc {
					vip = "vip:\n                ip: 10.1.0.10"
				}

				if node.Role == profile.RoleControlPlane {
					mustContain(t, name, text, vip)
				} else {
					mustNotContain(t, name, text, "Layer2VIPConfig", "vip:")
				}

				if node.HasLonghornDisk() {
					mustContain(t, name, text, "kind: UserVolumeConfig\nname: longhorn",
						`match: disk.serial == "talforge-longhorn" && !system_disk`, `node.longhorn.io/create-default-disk: "true"`)

					if tc.talos != "v1.14.1" {
						mustContain(t, name, text, "destination: /var/mnt/longhorn", "- rshared")
					}
				} else {
					mustNotContain(t, name, text, "UserVolumeConfig", "create-default-disk")
				}

				if node.InstallDisk == "/dev/vda" {
					mustContain(t, name, text, "/dev/vda")
				}
			}
		})
	}
}

func mustImage(t *testing.T, c *profile.Cluster) *schematic.Image {
	t.Helper()

	img, err := schematic.ForCluster(c)
	if err != nil {
		t.Fatal(err)
	}

	return img
}

func mustContain(t *testing.T, node, text string, wants ...string) {
	t.Helper()

	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("%s: config lacks %q", node, w)
		}
	}
}

func mustNotContain(t *testing.T, node, text string, bads ...string) {
	t.Helper()

	for _, b := range bads {
		if strings.Contains(text, b) {
			t.Errorf("%s: config unexpectedly contains %q", node, b)
		}
	}
}

func TestDeterministic(t *testing.T) {
	for _, tc := range contracts {
		c := loadProfile(t, tc.talos, tc.k8s, "", nil)
		a, b := render(t, c), render(t, c)

		for name := range a {
			if !bytes.Equal(a[name].Bytes, b[name].Bytes) {
				t.Errorf("%s %s: two renders differ", tc.talos, name)
			}
		}
	}
}

func TestUserPatchesApplyInOrder(t *testing.T) {
	files := map[string]string{
		"patches/all.yaml":    "apiVersion: v1alpha1\nkind: TimeSyncConfig\nntp:\n  servers: [all.example]\n",
		"patches/worker.yaml": "apiVersion: v1alpha1\nkind: TimeSyncConfig\nntp:\n  servers: [worker.example]\n",
		"patches/w-2.yaml":    "apiVersion: v1alpha1\nkind: TimeSyncConfig\nntp:\n  servers: [w2.example]\n",
		"patches/cp.yaml":     "apiVersion: v1alpha1\nkind: KubeAPIServerConfig\nextraArgs:\n  audit-log-maxage: \"30\"\n",
	}
	patches := "patches: {all: [patches/all.yaml], worker: [patches/worker.yaml], controlplane: [patches/cp.yaml], nodes: {w-2: [patches/w-2.yaml]}}"

	cfgs := render(t, loadProfile(t, "v1.14.1", "v1.37.0", patches, files))

	for node, want := range map[string]string{"cp-1": "all.example", "w-1": "worker.example", "w-2": "w2.example"} {
		mustContain(t, node, string(cfgs[node].Bytes), "- "+want)
	}

	mustContain(t, "cp-1", string(cfgs["cp-1"].Bytes), "audit-log-maxage: \"30\"")
	mustNotContain(t, "w-1", string(cfgs["w-1"].Bytes), "audit-log-maxage")
}

// A patch that breaks machinery validation is blamed by name, on the node it broke.
func TestInvalidPatchIsBlamed(t *testing.T) {
	files := map[string]string{
		"patches/good.yaml":   "apiVersion: v1alpha1\nkind: TimeSyncConfig\nntp:\n  servers: [time.example]\n",
		"patches/legacy.yaml": "cluster:\n  apiServer:\n    extraArgs:\n      audit-log-maxage: \"30\"\n",
	}

	c := loadProfile(t, "v1.14.1", "v1.37.0", "patches: {all: [patches/good.yaml], controlplane: [patches/legacy.yaml]}", files)

	img := mustImage(t, c)

	g, err := New(t.Context(), c, img, bundleFor(t, c.Talos.Version))
	if err != nil {
		t.Fatal(err)
	}

	_, err = g.All(context.Background())

	var pe *PatchError
	if !errors.As(err, &pe) {
		t.Fatalf("want a PatchError, got %v", err)
	}

	for _, want := range []string{"node cp-1", "patch patches/legacy.yaml", "kube-apiserver config is already set in v1alpha1 config"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}

	if strings.Contains(err.Error(), "node w-1") {
		t.Errorf("workers do not get the control-plane patch, yet: %v", err)
	}
}

func TestNotAPatch(t *testing.T) {
	files := map[string]string{"patches/bad.yaml": "just: [a, list\n"}
	dir := t.TempDir()

	for name, content := range files {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
		os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
	}

	c := loadProfile(t, "v1.14.1", "v1.37.0", "", nil)
	c.Patches.All = []string{filepath.Join(dir, "patches/bad.yaml")}

	_, err := New(t.Context(), c, mustImage(t, c), bundleFor(t, c.Talos.Version))

	var pe *PatchError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "bad.yaml") {
		t.Fatalf("want a PatchError naming bad.yaml, got %v", err)
	}
}

func TestTalosconfigKeepsItsCertificate(t *testing.T) {
	c := loadProfile(t, "v1.14.1", "v1.37.0", "", nil)

	g, err := New(t.Context(), c, mustImage(t, c), bundleFor(t, c.Talos.Version))
	if err != nil {
		t.Fatal(err)
	}

	first, err := g.Talosconfig(nil)
	if err != nil {
		t.Fatal(err)
	}

	second, err := g.Talosconfig(first)
	if err != nil {
		t.Fatal(err)
	}

	if !bytes.Equal(first, second) {
		t.Errorf("talosconfig changed on a re-run:\n%s\n---\n%s", first, second)
	}

	text := string(first)
	mustContain(t, "talosconfig", text, "context: lab", "- 10.1.0.11", "- 10.1.0.12", "- 10.1.0.13")
	mustNotContain(t, "talosconfig", text, "nodes:", "10.1.0.10")

	// A talosconfig signed by another cluster's CA is replaced.
	other := loadProfile(t, "v1.12.11", "v1.35.0", "", nil)
	og, err := New(t.Context(), other, mustImage(t, other), bundleFor(t, other.Talos.Version))
	if err != nil {
		t.Fatal(err)
	}

	foreign, err := og.Talosconfig(nil)
	if err != nil {
		t.Fatal(err)
	}

	replaced, err := g.Talosconfig(foreign)
	if err != nil {
		t.Fatal(err)
	}

	if bytes.Equal(replaced, foreign) {
		t.Error("a talosconfig from another CA was kept")
	}
}

func BenchmarkNode(b *testing.B) {
	c := loadProfile(b, "v1.14.1", "v1.37.0", "", nil)

	g, err := New(b.Context(), c, func() *schematic.Image { img, _ := schematic.ForCluster(c); return img }(), bundleFor(b, c.Talos.Version))
	if err != nil {
		b.Fatal(err)
	}

	for _, name := range []string{"cp-1", "w-1"} {
		n, _ := c.Node(name)

		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()

			for b.Loop() {
				if _, err := g.Node(n); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// encodingPatches reach the v1alpha1 document in every way a patch can, from every level of the
// profile, so that a node sharing another's encoding of a document (encode.go) when its document
// is not the same shows as a difference from machinery's encoding. cp-2 and cp-3 have as many
// patches reaching it, but not the same ones (a delete, a JSON6902 patch); cp-3's other patch is
// another document; the workers have different install disks.
const encodingPatches = `patches:
  all: [patches/sysctl.yaml]
  controlplane: [patches/cp.yaml]
  worker: [patches/worker.yaml]
  nodes:
    cp-2: [patches/delete.yaml]
    cp-3: [patches/kmsg.yaml, patches/json.yaml]`

var encodingPatchFiles = map[string]string{
	"patches/sysctl.yaml": "machine:\n  sysctls:\n    vm.max_map_count: \"262144\"\n",
	"patches/cp.yaml":     "machine:\n  certSANs: [cp.lab.example]\n",
	"patches/worker.yaml": "machine:\n  certSANs: [worker.lab.example]\n",
	"patches/delete.yaml": "machine:\n  sysctls:\n    $patch: delete\n",
	"patches/kmsg.yaml":   "apiVersion: v1alpha1\nkind: KmsgLogConfig\nname: remote\nurl: tcp://10.1.0.5:3000/\n",
	"patches/json.yaml":   "- op: add\n  path: /machine/certSANs/-\n  value: cp-3.lab.example\n",
}

// The bytes applied are exactly machinery's own encoding, and the redacted view of them (the
// allow-list alone) equals redact.Config, which runs machinery's own redaction first. Nodes
// whose v1alpha1 documents are the same encode it once.
func TestEncodingMatchesMachinery(t *testing.T) {
	for _, tc := range contracts {
		for _, withPatches := range []bool{false, true} {
			patches, files := "", map[string]string(nil)
			if withPatches {
				patches, files = encodingPatches, encodingPatchFiles
			}

			g := generator(t, loadProfile(t, tc.talos, tc.k8s, patches, files))

			all, err := g.All(t.Context())
			if err != nil {
				t.Fatal(err)
			}

			cfgs := map[string]*Config{}
			for _, cfg := range all {
				cfgs[cfg.Node.Name] = cfg
			}

			checkEncoding(t, tc.talos, cfgs)

			// Before multi-document networking every node's own built-in patch reaches its
			// v1alpha1 document, so none is shared. After, the control planes share one (none
			// with the patches: each has its own), and each worker has its install disk.
			want := map[bool]int{false: 3, true: 5}[withPatches]
			if tc.talos == "v1.10.9" {
				want = 0
			}

			shared := 0

			for key := range g.encodings.byKey {
				if key.kind == "v1alpha1" {
					shared++
				}
			}

			if shared != want {
				t.Errorf("%s (patches: %v): %d shared v1alpha1 encodings, want %d", tc.talos, withPatches, shared, want)
			}

			if withPatches {
				mustContain(t, "cp-1", string(cfgs["cp-1"].Bytes), "vm.max_map_count", "- cp.lab.example")
				mustNotContain(t, "cp-2", string(cfgs["cp-2"].Bytes), "vm.max_map_count")
				mustContain(t, "cp-3", string(cfgs["cp-3"].Bytes), "vm.max_map_count", "kind: KmsgLogConfig", "- cp-3.lab.example")
				mustContain(t, "w-2", string(cfgs["w-2"].Bytes), "vm.max_map_count", "- worker.lab.example")
			}
		}
	}
}

func checkEncoding(t *testing.T, talos string, cfgs map[string]*Config) {
	t.Helper()

	for name, cfg := range cfgs {
		want, err := cfg.Provider.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
		if err != nil {
			t.Fatal(err)
		}

		if !bytes.Equal(cfg.Bytes, want) {
			t.Errorf("%s %s: encoding differs from machinery's", talos, name)
		}

		redacted, err := cfg.Redacted()
		if err != nil {
			t.Fatal(err)
		}

		wantRedacted, err := redact.Config(cfg.Provider)
		if err != nil {
			t.Fatal(err)
		}

		if !bytes.Equal(redacted, wantRedacted) {
			t.Errorf("%s %s: redacted view differs from redact.Config of the whole config", talos, name)
		}

		if bytes.Equal(redacted, cfg.Bytes) {
			t.Errorf("%s %s: nothing was redacted", talos, name)
		}
	}
}

// JSON6902 patches address the v1alpha1 document; machinery alone refuses them on
// multi-document configs (every contract ≥ 1.12, and older ones once a UserVolumeConfig is
// added), so talforge applies them to that document.
func TestJSON6902Patches(t *testing.T) {
	files := map[string]string{"patches/json.yaml": "- op: add\n  path: /machine/certSANs/-\n  value: talos.lab.example\n"}

	for _, tc := range contracts {
		cfgs := render(t, loadProfile(t, tc.talos, tc.k8s, "patches: {all: [patches/json.yaml]}", files))

		for name, cfg := range cfgs {
			mustContain(t, tc.talos+" "+name, string(cfg.Bytes), "- talos.lab.example")

			if _, err := configloader.NewFromBytes(cfg.Bytes); err != nil {
				t.Fatal(err)
			}
		}

		// The other documents survive the round trip through the v1alpha1 document.
		if node := cfgs["w-1"]; !strings.Contains(string(node.Bytes), "kind: UserVolumeConfig") {
			t.Errorf("%s: the JSON6902 patch lost the user volume", tc.talos)
		}
	}

	// A patch that does not apply names itself.
	files["patches/json.yaml"] = "- op: replace\n  path: /machine/nonexistent\n  value: x\n"
	c := loadProfile(t, "v1.14.1", "v1.37.0", "patches: {all: [patches/json.yaml]}", files)

	g, err := New(t.Context(), c, mustImage(t, c), bundleFor(t, c.Talos.Version))
	if err != nil {
		t.Fatal(err)
	}

	_, err = g.All(context.Background())

	var pe *PatchError
	if !errors.As(err, &pe) || pe.Patch != "patches/json.yaml" {
		t.Fatalf("want a PatchError for patches/json.yaml, got %v", err)
	}
}

// AllEncoded renders what All renders, byte for byte, without keeping the decoded configs.
func TestAllEncodedIsAllWithoutProviders(t *testing.T) {
	g := generator(t, loadProfile(t, contracts[len(contracts)-1].talos, contracts[len(contracts)-1].k8s, "", nil))

	all, err := g.All(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	encoded, err := g.AllEncoded(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	if len(encoded) != len(all) || len(all) == 0 {
		t.Fatalf("AllEncoded gave %d configs, All %d", len(encoded), len(all))
	}

	for i, cfg := range encoded {
		if cfg.Provider != nil || all[i].Provider == nil {
			t.Errorf("node %s: AllEncoded kept the decoded config, or All did not", cfg.Node.Name)
		}

		if cfg.Node.Name != all[i].Node.Name || !bytes.Equal(cfg.Bytes, all[i].Bytes) || !slices.Equal(cfg.Warnings, all[i].Warnings) {
			t.Errorf("node %s: AllEncoded differs from All", cfg.Node.Name)
		}
	}
}
