package machineconfig

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/talforge/talforge/pkg/profile"
)

// builtinProfile has a node for each way the built-in patches select a NIC and place the VIP:
// control planes and workers, selected by MAC or by a named interface, and one worker with a
// Longhorn data disk. NETWORK adds the optional network settings of a case.
const builtinProfile = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
talos: {version: TALOS, kubernetes: K8S}
network:
  cidr: 10.1.0.0/24
  gateway: 10.1.0.1
NETWORK
proxmox: {endpoint: "https://pve:8006/api2/json", node: pve, storage: local-lvm}
nodes:
  - {name: cp-1, role: controlplane, ip: 10.1.0.11, mac: "02:00:00:00:00:11"}
  - {name: cp-2, role: controlplane, ip: 10.1.0.12, interface: eth1}
  - {name: cp-3, role: controlplane, ip: 10.1.0.13, mac: "02:00:00:00:00:13"}
  - {name: w-1, role: worker, ip: 10.1.0.21, mac: "02:00:00:00:00:21", longhornDisk: 50G}
  - {name: w-2, role: worker, ip: 10.1.0.22, interface: ens18}
longhorn: {replicaCount: 1}
`

// Network settings of the cases. The search domains of "search" are DNS names YAML would read
// as a bool, a null and a number if the config did not quote them.
var builtinNetworks = map[string]string{
	"full":   "  nameservers: [10.1.0.1, 9.9.9.9]\n  searchDomains: [lab.internal]\n  vip: 10.1.0.10\n  mtu: 9000",
	"ns":     "  nameservers: [10.1.0.1]",
	"search": `  searchDomains: ["yes", "null", "1e3"]`,
	"none":   "",
}

type talosVersions struct{ talos, k8s string }

var (
	// machine.network only.
	legacyContracts = []talosVersions{{"v1.10.9", "v1.33.0"}, {"v1.11.5", "v1.34.0"}}
	// Network documents; the v1alpha1 kubelet and node labels until 1.14.
	multidocContracts = []talosVersions{{"v1.12.11", "v1.35.0"}, {"v1.13.2", "v1.36.0"}}
	// Network documents and KubeNodeConfig.
	kubeDocContracts = []talosVersions{{"v1.14.1", "v1.37.0"}}
)

// docWant is one expectation on a rendered config: the document doc ("v1alpha1", "Kind" for
// the first of that kind, or "Kind/name"), at path inside it (none: the whole document, whose
// apiVersion and kind the test adds), equals yaml; an empty yaml means it is absent.
type docWant struct {
	doc  string
	path []string
	yaml string
}

func absent(doc string, path ...string) docWant { return docWant{doc: doc, path: path} }

var (
	noLegacyNetwork = []docWant{
		absent("v1alpha1", "machine", "network", "hostname"),
		absent("v1alpha1", "machine", "network", "interfaces"),
		absent("v1alpha1", "machine", "network", "nameservers"),
		absent("v1alpha1", "machine", "network", "searchDomains"),
	}
	noNetworkDocs = []docWant{
		absent("HostnameConfig"), absent("LinkAliasConfig"), absent("LinkConfig"), absent("ResolverConfig"), absent("Layer2VIPConfig"),
	}
	noLonghorn = []docWant{
		absent("UserVolumeConfig"),
		absent("KubeNodeConfig", "labels", LonghornNodeLabel),
		absent("v1alpha1", "machine", "nodeLabels", LonghornNodeLabel),
		absent("v1alpha1", "machine", "kubelet", "extraMounts"),
	}
	longhornVolume = docWant{doc: "UserVolumeConfig/longhorn", yaml: `
name: longhorn
provisioning:
  diskSelector:
    match: disk.serial == "talforge-longhorn" && !system_disk
  grow: true
  minSize: 1GiB
filesystem:
  type: xfs`}
	legacyLonghorn = []docWant{
		longhornVolume,
		{doc: "v1alpha1", path: []string{"machine", "nodeLabels", LonghornNodeLabel}, yaml: `"true"`},
		{doc: "v1alpha1", path: []string{"machine", "kubelet", "extraMounts"}, yaml: `
- destination: /var/mnt/longhorn
  type: bind
  source: /var/mnt/longhorn
  options: [bind, rshared, rw]`},
		absent("KubeNodeConfig"),
	}
	kubeDocLonghorn = []docWant{
		longhornVolume,
		{doc: "KubeNodeConfig", path: []string{"labels", LonghornNodeLabel}, yaml: `"true"`},
		absent("v1alpha1", "machine", "nodeLabels", LonghornNodeLabel),
		absent("v1alpha1", "machine", "kubelet", "extraMounts"),
	}
)

func TestBuiltinDocuments(t *testing.T) {
	type builtinCase struct {
		name      string
		contracts [][]talosVersions
		network   string
		node      string
		want      [][]docWant
	}

	multidoc := [][]talosVersions{multidocContracts, kubeDocContracts}
	legacy := [][]talosVersions{legacyContracts}

	cases := []builtinCase{
		{"multidoc/MAC alias, MTU, resolvers, VIP", multidoc, "full", "cp-1", [][]docWant{noLegacyNetwork, noLonghorn, {
			{doc: "HostnameConfig", yaml: "hostname: cp-1"},
			{doc: "LinkAliasConfig/lan", yaml: "name: lan\nselector:\n  match: mac(link.permanent_addr) == \"02:00:00:00:00:11\""},
			{doc: "LinkConfig/lan", yaml: "name: lan\nmtu: 9000\naddresses: [{address: 10.1.0.11/24}]\nroutes: [{gateway: 10.1.0.1}]"},
			{doc: "ResolverConfig", path: []string{"nameservers"}, yaml: "[{address: 10.1.0.1}, {address: 9.9.9.9}]"},
			{doc: "ResolverConfig", path: []string{"searchDomains"}, yaml: "domains: [lab.internal]"},
			{doc: "Layer2VIPConfig/10.1.0.10", yaml: "name: 10.1.0.10\nlink: lan"},
		}}},
		{"multidoc/named interface carries the VIP", multidoc, "full", "cp-2", [][]docWant{noLonghorn, {
			{doc: "HostnameConfig", yaml: "hostname: cp-2"},
			absent("LinkAliasConfig"),
			{doc: "LinkConfig/eth1", yaml: "name: eth1\nmtu: 9000\naddresses: [{address: 10.1.0.12/24}]\nroutes: [{gateway: 10.1.0.1}]"},
			{doc: "Layer2VIPConfig/10.1.0.10", yaml: "name: 10.1.0.10\nlink: eth1"},
		}}},
		{"multidoc/worker: no VIP", multidoc, "full", "w-2", [][]docWant{noLegacyNetwork, noLonghorn, {
			absent("LinkAliasConfig"),
			{doc: "LinkConfig/ens18", yaml: "name: ens18\nmtu: 9000\naddresses: [{address: 10.1.0.22/24}]\nroutes: [{gateway: 10.1.0.1}]"},
			absent("Layer2VIPConfig"),
		}}},
		{"multidoc/nameservers only, no MTU, no VIP", multidoc, "ns", "cp-1", [][]docWant{{
			{doc: "LinkConfig/lan", yaml: "name: lan\naddresses: [{address: 10.1.0.11/24}]\nroutes: [{gateway: 10.1.0.1}]"},
			{doc: "ResolverConfig", path: []string{"nameservers"}, yaml: "[{address: 10.1.0.1}]"},
			absent("ResolverConfig", "searchDomains"),
			absent("Layer2VIPConfig"),
		}}},
		{"multidoc/search domains only", multidoc, "search", "cp-3", [][]docWant{{
			{doc: "LinkAliasConfig/lan", yaml: "name: lan\nselector:\n  match: mac(link.permanent_addr) == \"02:00:00:00:00:13\""},
			absent("ResolverConfig", "nameservers"),
			{doc: "ResolverConfig", path: []string{"searchDomains"}, yaml: `domains: ["yes", "null", "1e3"]`},
		}}},
		{"multidoc/no resolvers", [][]talosVersions{multidocContracts}, "none", "w-2", [][]docWant{{absent("ResolverConfig")}}},
		// Talos 1.14's generated config has a ResolverConfig of its own; talforge adds nothing to it.
		{"multidoc/no resolvers", [][]talosVersions{kubeDocContracts}, "none", "w-2", [][]docWant{{
			{doc: "ResolverConfig", yaml: "hostDNS: {enabled: true, forwardKubeDNSToHost: true}"},
		}}},
		{"Talos < 1.14/Longhorn disk", [][]talosVersions{legacyContracts, multidocContracts}, "none", "w-1", [][]docWant{legacyLonghorn}},
		{"Talos 1.14/Longhorn disk", [][]talosVersions{kubeDocContracts}, "none", "w-1", [][]docWant{kubeDocLonghorn}},
		{"Talos 1.14/no Longhorn disk", [][]talosVersions{kubeDocContracts}, "full", "cp-1", [][]docWant{noLonghorn}},

		{"legacy/MAC selector, MTU, resolvers, VIP", legacy, "full", "cp-1", [][]docWant{noNetworkDocs, noLonghorn, {
			{doc: "v1alpha1", path: []string{"machine", "network"}, yaml: `
hostname: cp-1
interfaces:
  - deviceSelector: {hardwareAddr: "02:00:00:00:00:11"}
    addresses: [10.1.0.11/24]
    routes: [{network: 0.0.0.0/0, gateway: 10.1.0.1}]
    mtu: 9000
    vip: {ip: 10.1.0.10}
nameservers: [10.1.0.1, 9.9.9.9]
searchDomains: [lab.internal]`},
		}}},
		{"legacy/named interface carries the VIP", legacy, "full", "cp-2", [][]docWant{{
			{doc: "v1alpha1", path: []string{"machine", "network", "interfaces"}, yaml: `
- interface: eth1
  addresses: [10.1.0.12/24]
  routes: [{network: 0.0.0.0/0, gateway: 10.1.0.1}]
  mtu: 9000
  vip: {ip: 10.1.0.10}`},
		}}},
		{"legacy/worker: no VIP, Longhorn disk", legacy, "full", "w-1", [][]docWant{noNetworkDocs, legacyLonghorn, {
			{doc: "v1alpha1", path: []string{"machine", "network", "interfaces"}, yaml: `
- deviceSelector: {hardwareAddr: "02:00:00:00:00:21"}
  addresses: [10.1.0.21/24]
  routes: [{network: 0.0.0.0/0, gateway: 10.1.0.1}]
  mtu: 9000`},
		}}},
		{"legacy/nameservers only, no MTU", legacy, "ns", "w-2", [][]docWant{noLonghorn, {
			{doc: "v1alpha1", path: []string{"machine", "network"}, yaml: `
hostname: w-2
interfaces:
  - interface: ens18
    addresses: [10.1.0.22/24]
    routes: [{network: 0.0.0.0/0, gateway: 10.1.0.1}]
nameservers: [10.1.0.1]`},
		}}},
		{"legacy/search domains only", legacy, "search", "cp-1", [][]docWant{{
			absent("v1alpha1", "machine", "network", "nameservers"),
			{doc: "v1alpha1", path: []string{"machine", "network", "searchDomains"}, yaml: `["yes", "null", "1e3"]`},
		}}},
		{"legacy/no resolvers", legacy, "none", "cp-1", [][]docWant{{
			{doc: "v1alpha1", path: []string{"machine", "network", "hostname"}, yaml: "cp-1"},
			absent("v1alpha1", "machine", "network", "nameservers"),
			absent("v1alpha1", "machine", "network", "searchDomains"),
		}}},
	}

	// 1.11 and 1.13 share the bundles of 1.10 and 1.12 the other tests make: machinery makes the
	// same secrets for every contract from 1.10 to 1.14 (generate/secrets/bundle.go populate), and
	// each new bundle costs a second of RSA key generation.
	for newer, older := range map[string]string{"v1.11.5": "v1.10.9", "v1.13.2": "v1.12.11"} {
		if _, ok := fixedBundles[newer]; !ok {
			fixedBundles[newer] = bundleFor(t, older)
		}
	}

	rendered := map[string]map[string]*Config{}

	for _, tc := range cases {
		for _, set := range tc.contracts {
			for _, v := range set {
				t.Run(v.talos+"/"+tc.name, func(t *testing.T) {
					key := v.talos + "/" + tc.network
					if rendered[key] == nil {
						text := strings.NewReplacer("TALOS", v.talos, "K8S", v.k8s, "NETWORK", builtinNetworks[tc.network]).Replace(builtinProfile)

						c, err := profile.Parse(filepath.Join(t.TempDir(), "lab.yaml"), []byte(text))
						if err != nil {
							t.Fatal(err)
						}

						rendered[key] = render(t, c)
					}

					docs := decodeDocuments(t, rendered[key][tc.node].Bytes)

					for _, group := range tc.want {
						for _, w := range group {
							checkDocument(t, docs, w)
						}
					}
				})
			}
		}
	}
}

// decodeDocuments indexes a config's documents by "v1alpha1", "Kind" (the first of a kind) and
// "Kind/name".
func decodeDocuments(t *testing.T, data []byte) map[string]map[string]any {
	t.Helper()

	docs := map[string]map[string]any{}
	dec := yaml.NewDecoder(bytes.NewReader(data))

	for {
		var doc map[string]any

		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}

		if err != nil {
			t.Fatalf("rendered config does not decode: %v", err)
		}

		kind, _ := doc["kind"].(string)
		if kind == "" {
			docs["v1alpha1"] = doc

			continue
		}

		if _, ok := docs[kind]; !ok {
			docs[kind] = doc
		}

		if name, ok := doc["name"].(string); ok {
			docs[kind+"/"+name] = doc
		}
	}
}

func checkDocument(t *testing.T, docs map[string]map[string]any, w docWant) {
	t.Helper()

	where := strings.Join(append([]string{w.doc}, w.path...), " > ")

	var (
		got   any
		found bool
	)

	if doc, ok := docs[w.doc]; ok {
		got, found = any(doc), true

		for _, k := range w.path {
			m, ok := got.(map[string]any)
			if !ok {
				found = false

				break
			}

			if got, found = m[k]; !found {
				break
			}
		}
	}

	if w.yaml == "" {
		if found {
			t.Errorf("%s: want none, got %v", where, got)
		}

		return
	}

	if !found {
		t.Errorf("%s: missing", where)

		return
	}

	var want any
	if err := yaml.Unmarshal([]byte(w.yaml), &want); err != nil {
		t.Fatalf("%s: bad expectation: %v", where, err)
	}

	if len(w.path) == 0 && w.doc != "v1alpha1" {
		whole := want.(map[string]any)
		whole["apiVersion"] = "v1alpha1"
		whole["kind"], _, _ = strings.Cut(w.doc, "/")
	}

	if !reflect.DeepEqual(got, want) {
		g, _ := yaml.Marshal(got)
		e, _ := yaml.Marshal(want)
		t.Errorf("%s:\ngot:\n%s\nwant:\n%s", where, g, e)
	}
}

// A Cluster built in code skips the profile's checks; what the typed documents cannot hold
// fails the node with the field named, rather than reaching the config.
func TestBuiltinRejectsUncheckedNetwork(t *testing.T) {
	cases := []struct {
		name   string
		talos  talosVersions
		breaks func(c *profile.Cluster)
		want   string
	}{
		{"nameserver", multidocContracts[0], func(c *profile.Cluster) { c.Network.Nameservers = []string{"10.1.0.1", "dns.example"} }, "network.nameservers[1]"},
		{"gateway", multidocContracts[0], func(c *profile.Cluster) { c.Network.Gateway = "router" }, "network.gateway"},
		{"legacy gateway", legacyContracts[0], func(c *profile.Cluster) { c.Network.Gateway = "router" }, "network.gateway"},
		{"node address", kubeDocContracts[0], func(c *profile.Cluster) { c.Nodes[0].IP = "10.1.0" }, "node address"},
		{"MTU", kubeDocContracts[0], func(c *profile.Cluster) { c.Network.MTU = -1 }, "network.mtu -1"},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.NewReplacer("TALOS", tc.talos.talos, "K8S", tc.talos.k8s, "NETWORK", builtinNetworks["full"]).Replace(builtinProfile)

			c, err := profile.Parse(filepath.Join(t.TempDir(), "lab.yaml"), []byte(text))
			if err != nil {
				t.Fatal(err)
			}

			tc.breaks(c)

			g, err := New(t.Context(), c, mustImage(t, c), bundleFor(t, c.Talos.Version))
			if err != nil {
				t.Fatal(err)
			}

			_, err = g.Node(c.Nodes[0])
			if err == nil || !strings.Contains(err.Error(), "node cp-1: built-in patch: "+tc.want) {
				t.Fatalf("want the node and %q named, got %v", tc.want, err)
			}
		})
	}
}
