package adopt

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	factory "github.com/siderolabs/image-factory/pkg/schematic"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	machinetype "github.com/siderolabs/talos/pkg/machinery/config/machine"
	"gopkg.in/yaml.v3"

	"github.com/talforge/talforge/internal/testenv/talosnode"
	"github.com/talforge/talforge/pkg/profile"
)

// handNode is one machine of a hand-made cluster.
type handNode struct {
	name, ip, mac string
	cp            bool
}

var handNodes = []handNode{
	{"cp-a", "127.0.10.11", "bc:24:11:00:00:11", true},
	{"cp-b", "127.0.10.12", "bc:24:11:00:00:12", true},
	{"wk-a", "127.0.10.21", "bc:24:11:00:00:21", false},
}

const (
	handVIP     = "127.0.10.50"
	handGateway = "127.0.10.1"
)

// handMade is a cluster a person built with machinery's generate (as talosctl gen config
// does) and their own patches, running on emulated nodes.
type handMade struct {
	bundle      *secrets.Bundle
	talosconfig []byte
	port        int
	nodes       map[string]*talosnode.Node
}

// legacyNetwork is the v1alpha1 machine.network a person writes for a static address (the
// only form Talos 1.10 and 1.11 know).
func legacyNetwork(n handNode) string {
	vip := ""
	if n.cp {
		vip = "\n        vip: {ip: " + handVIP + "}"
	}

	return fmt.Sprintf(`machine:
  network:
    hostname: %s
    nameservers: [1.1.1.1, 9.9.9.9]
    searchDomains: [home.lan]
    interfaces:
      - deviceSelector: {hardwareAddr: "%s"}
        addresses: [%s/24]
        mtu: 1450
        routes: [{network: 0.0.0.0/0, gateway: %s}]%s
`, n.name, n.mac, n.ip, handGateway, vip)
}

// multidocNetwork is the same network as Talos ≥ 1.12 documents.
func multidocNetwork(n handNode) string {
	vip := ""
	if n.cp {
		vip = fmt.Sprintf("---\napiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: %s\nlink: net0\n", handVIP)
	}

	return fmt.Sprintf(`apiVersion: v1alpha1
kind: HostnameConfig
$patch: delete
---
apiVersion: v1alpha1
kind: LinkAliasConfig
name: net0
selector:
  match: mac(link.permanent_addr) == "%s"
---
apiVersion: v1alpha1
kind: LinkConfig
name: net0
mtu: 1450
addresses: [{address: %s/24}]
routes: [{gateway: %s}]
---
apiVersion: v1alpha1
kind: ResolverConfig
nameservers: [{address: 1.1.1.1}, {address: 9.9.9.9}]
searchDomains: {domains: [home.lan]}
%s`, n.mac, n.ip, handGateway, vip)
}

func hostnamePatch(n handNode) string {
	return "apiVersion: v1alpha1\nkind: HostnameConfig\nhostname: " + n.name + "\n"
}

// freePort finds a port free on every node address: all nodes answer on the same port, as
// real nodes do on 50000.
func freePort(t *testing.T) int {
	t.Helper()

	for range 20 {
		l, err := net.Listen("tcp", handNodes[0].ip+":0")
		if err != nil {
			t.Fatal(err)
		}

		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close() // probing

		free := true

		for _, n := range handNodes[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(n.ip, fmt.Sprint(port)))
			if err != nil {
				free = false

				break
			}

			_ = l.Close() // probing
		}

		if free {
			return port
		}
	}

	t.Fatal("no port free on every node address")

	return 0
}

// buildHandMade generates the hand-made configs with machinery, starts the nodes in
// maintenance mode and applies the configs through the machinery client.
func buildHandMade(t *testing.T, version string, multidoc bool) *handMade {
	t.Helper()

	return buildHandMadeFrom(t, version, multidoc, nil, false)
}

// buildHandMadeFrom is buildHandMade with the nodes installed from Image Factory's metal
// installer of schematic s (nil: Talos' generic ghcr.io installer). Unless known, the nodes
// do not report the schematic, as with an image Image Factory did not build.
func buildHandMadeFrom(t *testing.T, version string, multidoc bool, s *factory.Schematic, known bool) *handMade {
	t.Helper()

	cluster := talosnode.NewCluster()
	var image []generate.Option

	if s != nil {
		id, err := s.ID()
		if known {
			id, err = cluster.RegisterSchematic(*s)
		}

		if err != nil {
			t.Fatal(err)
		}

		image = append(image, generate.WithInstallImage("factory.talos.dev/metal-installer/"+id+":"+version))
	}

	contract, err := config.ParseContractFromVersion(version)
	if err != nil {
		t.Fatal(err)
	}

	bundle, err := secrets.NewBundle(secrets.NewFixedClock(time.Now()), contract)
	if err != nil {
		t.Fatal(err)
	}

	var ips []string
	for _, n := range handNodes {
		ips = append(ips, n.ip)
	}

	k8s := strings.TrimPrefix(profile.DefaultKubernetesVersion(version), "v")

	in, err := generate.NewInput("old-homelab", "https://"+handVIP+":6443", k8s, append([]generate.Option{
		generate.WithVersionContract(contract),
		generate.WithSecretsBundle(bundle),
		generate.WithInstallDisk("/dev/vda"),
		generate.WithAdditionalSubjectAltNames([]string{"k8s.home.lan", handVIP}),
		generate.WithEndpointList(ips[:1]),
	}, image...)...)
	if err != nil {
		t.Fatal(err)
	}

	// What the person patched onto every node and onto the workers.
	common := "machine:\n  sysctls: {vm.max_map_count: \"262144\"}\n"
	worker := "machine:\n  kubelet:\n    extraArgs: {max-pods: \"150\"}\n"

	if contract.MultidocKubernetesConfigSupported() {
		worker = "apiVersion: v1alpha1\nkind: KubeletConfig\nextraArgs: {max-pods: \"150\"}\n"
	}

	hm := &handMade{bundle: bundle, port: freePort(t), nodes: map[string]*talosnode.Node{}}

	tc, err := in.Talosconfig()
	if err != nil {
		t.Fatal(err)
	}

	tc.Contexts[tc.Context].Nodes = ips

	if hm.talosconfig, err = tc.Bytes(); err != nil {
		t.Fatal(err)
	}

	for _, n := range handNodes {
		typ := machinetype.TypeWorker
		if n.cp {
			typ = machinetype.TypeControlPlane
		}

		cfg, err := in.Config(typ)
		if err != nil {
			t.Fatal(err)
		}

		patches := []string{common}

		if multidoc {
			patches = append(patches, multidocNetwork(n), hostnamePatch(n))
		} else {
			patches = append(patches, legacyNetwork(n))
		}

		if !n.cp {
			patches = append(patches, worker)
		}

		raw := applyText(t, cfg, patches...)

		node, err := talosnode.Start(t.Context(), talosnode.Options{
			Address: net.JoinHostPort(n.ip, fmt.Sprint(hm.port)), Cluster: cluster, TalosVersion: version,
			BootDelay: 20 * time.Millisecond, Logf: t.Logf,
		})
		if err != nil {
			t.Fatal(err)
		}

		t.Cleanup(func() { _ = node.Close() }) // Close never fails

		hm.nodes[n.name] = node

		applyInMaintenance(t, node.Addr(), raw)
	}

	for _, n := range handNodes {
		waitConfigured(t, hm.nodes[n.name])
	}

	return hm
}

func applyText(t *testing.T, cfg config.Provider, patches ...string) []byte {
	t.Helper()

	var ps []configpatcher.Patch

	for _, p := range patches {
		patch, err := configpatcher.LoadPatch([]byte(p))
		if err != nil {
			t.Fatalf("patch %q: %v", p, err)
		}

		ps = append(ps, patch)
	}

	out, err := configpatcher.Apply(configpatcher.WithConfig(cfg), ps)
	if err != nil {
		t.Fatal(err)
	}

	raw, err := out.Bytes()
	if err != nil {
		t.Fatal(err)
	}

	return raw
}

func applyInMaintenance(t *testing.T, addr string, raw []byte) {
	t.Helper()

	c, err := client.New(t.Context(), client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true}), client.WithEndpoints(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() //nolint:errcheck // one call

	if _, err := c.ApplyConfiguration(t.Context(), &machine.ApplyConfigurationRequest{Data: raw, Mode: machine.ApplyConfigurationRequest_AUTO}); err != nil {
		t.Fatalf("apply to %s: %v", addr, err)
	}
}

func waitConfigured(t *testing.T, n *talosnode.Node) {
	t.Helper()

	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if n.Up() && len(n.ActiveConfig()) > 0 {
			return
		}

		time.Sleep(10 * time.Millisecond)
	}

	t.Fatalf("node %s did not come up configured", n.Addr())
}

// writeProject writes what import produced into a project directory and loads the profile
// from disk, as `talforge import` followed by `talforge generate` would.
func writeProject(t *testing.T, imp *TalosImport) *profile.Cluster {
	t.Helper()

	root := t.TempDir()

	data, err := yaml.Marshal(imp.Profile)
	if err != nil {
		t.Fatal(err)
	}

	files := map[string][]byte{"profiles/" + imp.Profile.Metadata.Name + ".yaml": data}
	for p, d := range imp.Files {
		files[p] = d
	}

	for p, d := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}

		if err := os.WriteFile(full, d, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	c, err := profile.Load(filepath.Join(root, "profiles", imp.Profile.Metadata.Name+".yaml"))
	if err != nil {
		t.Fatalf("load the imported profile: %v\n%s", err, data)
	}

	return c
}

// sameIdentity asserts that the imported bundle holds the cluster's identity exactly.
func sameIdentity(t *testing.T, want, got *secrets.Bundle) {
	t.Helper()

	checks := map[string][2]any{
		"cluster id/secret":      {want.Cluster, got.Cluster},
		"secrets (tokens, keys)": {want.Secrets, got.Secrets},
		"trustd token":           {want.TrustdInfo, got.TrustdInfo},
		"etcd CA":                {want.Certs.Etcd, got.Certs.Etcd},
		"kubernetes CA":          {want.Certs.K8s, got.Certs.K8s},
		"aggregator CA":          {want.Certs.K8sAggregator, got.Certs.K8sAggregator},
		"service account key":    {want.Certs.K8sServiceAccount, got.Certs.K8sServiceAccount},
		"Talos OS CA":            {want.Certs.OS, got.Certs.OS},
	}

	for what, pair := range checks {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			t.Errorf("%s differs from the live cluster's", what)
		}
	}
}

func TestTalosImportReproducesLiveConfigs(t *testing.T) {
	tests := []struct {
		version  string
		multidoc bool
	}{
		{"v1.10.6", false},
		{"v1.11.3", false},
		{"v1.12.4", true},
		{"v1.13.2", true},
		{"v1.14.1", true},
	}

	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			hm := buildHandMade(t, tt.version, tt.multidoc)

			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()

			imp, err := ReadTalos(ctx, "homelab", TalosOptions{Talosconfig: hm.talosconfig, Port: hm.port, Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}

			sameIdentity(t, hm.bundle, imp.Bundle)

			p := imp.Profile
			if p.Talos.Version != tt.version || p.Network.CIDR != "127.0.10.0/24" || p.Network.Gateway != handGateway ||
				p.Network.VIP != handVIP || p.Network.MTU != 1450 || !reflect.DeepEqual(p.Network.Nameservers, []string{"1.1.1.1", "9.9.9.9"}) ||
				!reflect.DeepEqual(p.Network.SearchDomains, []string{"home.lan"}) {
				t.Errorf("derived talos/network: %+v %+v", p.Talos, p.Network)
			}

			for i, want := range []handNode{handNodes[0], handNodes[1], handNodes[2]} {
				got := p.Nodes[i]
				role := profile.RoleWorker
				if want.cp {
					role = profile.RoleControlPlane
				}

				if got.Name != want.name || got.IP != want.ip || got.MAC != want.mac || got.Role != role || got.InstallDisk != "/dev/vda" {
					t.Errorf("node %d: got %+v, want %+v", i, got, want)
				}
			}

			for f, data := range imp.Files {
				t.Logf("%s:\n%s", f, data)
			}

			c := writeProject(t, imp)

			diffs, err := imp.Check(ctx, c)
			if err != nil {
				t.Fatal(err)
			}

			for _, d := range diffs {
				t.Errorf("node %s: rendered config differs from the live one:\n%s", d.Node, d.Diff)
			}

			// Without the worker patch the check must see the worker's kubelet flag, and show
			// the difference redacted.
			imp.Profile.Patches.Worker = nil
			diffs, err = imp.Check(ctx, writeProject(t, imp))
			if err != nil {
				t.Fatal(err)
			}

			if len(diffs) != 1 || diffs[0].Node != "wk-a" {
				t.Fatalf("without the worker patch: %v, want a diff of wk-a only", diffs)
			}

			key := strings.TrimSpace(strings.Split(string(hm.bundle.Certs.OS.Key), "\n")[1])
			if d := diffs[0].Diff; !regexp.MustCompile(`(?m)^-\s+max-pods: '\*+'$`).MatchString(d) ||
				strings.Contains(d, key) || strings.Contains(d, hm.bundle.TrustdInfo.Token) {
				t.Errorf("the diff must show the missing kubelet flag and no secret:\n%s", d)
			}
		})
	}
}

func TestTalosImportErrors(t *testing.T) {
	hm := buildHandMade(t, "v1.14.1", true)

	other := buildOtherTalosconfig(t)

	// The cluster's certificate with another cluster's key: refused before any node is dialled.
	mixed, err := clientconfig.FromBytes(hm.talosconfig)
	if err != nil {
		t.Fatal(err)
	}

	otherTC, err := clientconfig.FromBytes(other)
	if err != nil {
		t.Fatal(err)
	}

	mixed.Contexts[mixed.Context].Key = otherTC.Contexts[otherTC.Context].Key

	mixedRaw, err := mixed.Bytes()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		opts TalosOptions
		want []string
	}{
		{
			name: "unreachable node",
			opts: TalosOptions{Talosconfig: hm.talosconfig, Nodes: []string{"127.0.10.11", "127.0.10.99"}},
			want: []string{"127.0.10.99", "connection refused", "check that the node is up"},
		},
		{
			name: "talosconfig of another cluster",
			opts: TalosOptions{Talosconfig: other},
			want: []string{"127.0.10.11", "does not accept this talosconfig", "use the talosconfig of the cluster you import"},
		},
		{
			name: "key of another certificate",
			opts: TalosOptions{Talosconfig: mixedRaw},
			want: []string{"talosconfig: context", "private key does not match public key"},
		},
		{
			name: "worker as endpoint",
			opts: TalosOptions{Talosconfig: hm.talosconfig, Endpoint: "127.0.10.21"},
			want: []string{"127.0.10.21", "runs as a worker", "control plane"},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Port, tt.opts.Timeout = hm.port, 3*time.Second

			imp, err := ReadTalos(t.Context(), "homelab", tt.opts)
			if err == nil {
				t.Fatalf("no error; imported %d nodes", len(imp.Live))
			}

			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func buildOtherTalosconfig(t *testing.T) []byte {
	t.Helper()

	contract, err := config.ParseContractFromVersion("v1.14.1")
	if err != nil {
		t.Fatal(err)
	}

	bundle, err := secrets.NewBundle(secrets.NewFixedClock(time.Now()), contract)
	if err != nil {
		t.Fatal(err)
	}

	in, err := generate.NewInput("other", "https://127.0.10.50:6443", "1.37.0", generate.WithVersionContract(contract),
		generate.WithSecretsBundle(bundle), generate.WithEndpointList([]string{"127.0.10.11"}))
	if err != nil {
		t.Fatal(err)
	}

	tc, err := in.Talosconfig()
	if err != nil {
		t.Fatal(err)
	}

	raw, err := tc.Bytes()
	if err != nil {
		t.Fatal(err)
	}

	return raw
}
