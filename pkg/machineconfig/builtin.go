package machineconfig

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"

	"github.com/talforge/talforge/pkg/profile"
)

// LinkAlias is the name talforge gives the node's NIC (Talos ≥ 1.12), selected by its MAC
// address so that the config never depends on how the kernel names the interface.
const LinkAlias = "lan"

// LonghornNodeLabel makes Longhorn create its default disk (at the data path) on the node:
// with createDefaultDiskLabeledNodes, only labelled nodes — the ones with a data disk — get one.
const LonghornNodeLabel = "node.longhorn.io/create-default-disk"

const builtinSource = "built-in"

// builtinPatches returns talforge's own patches for a node, as strategic-merge documents in
// the shape the node's config contract expects: the node's own network and hostname, then the
// Longhorn data disk (the same for every node that has one, parsed once in New).
func (g *Generator) builtinPatches(n profile.Node) ([]namedPatch, error) {
	var doc string

	if g.contract.MultidocNetworkConfigSupported() {
		doc = strings.Join(g.multidocNetwork(n), "---\n")
	} else {
		doc = g.legacyNetwork(n)
	}

	patch, err := configpatcher.LoadPatch([]byte(doc))
	if err != nil {
		return nil, fmt.Errorf("built-in patch: %w", err)
	}

	out := []namedPatch{{source: builtinSource, patch: patch}}

	if g.longhornPatch != nil && n.HasLonghornDisk() {
		out = append(out, namedPatch{source: builtinSource + " (Longhorn data disk)", patch: g.longhornPatch})
	}

	return out, nil
}

// q quotes a string as a YAML double-quoted scalar.
func q(s string) string { return strconv.Quote(s) }

// multidocNetwork renders hostname, link, routes, resolvers and VIP as Talos ≥ 1.12 documents.
func (g *Generator) multidocNetwork(n profile.Node) []string {
	c := g.cluster
	link := n.Interface

	var docs []string

	docs = append(docs, "apiVersion: v1alpha1\nkind: HostnameConfig\nhostname: "+q(n.Name)+"\n")

	if link == "" {
		link = LinkAlias
		docs = append(docs, fmt.Sprintf("apiVersion: v1alpha1\nkind: LinkAliasConfig\nname: %s\nselector:\n  match: %s\n",
			link, q(fmt.Sprintf("mac(link.permanent_addr) == %q", n.MAC))))
	}

	var b strings.Builder

	fmt.Fprintf(&b, "apiVersion: v1alpha1\nkind: LinkConfig\nname: %s\n", q(link))

	if c.Network.MTU != 0 {
		fmt.Fprintf(&b, "mtu: %d\n", c.Network.MTU)
	}

	fmt.Fprintf(&b, "addresses:\n  - address: %s\nroutes:\n  - gateway: %s\n", c.NodeCIDR(n), c.Network.Gateway)
	docs = append(docs, b.String())

	if len(c.Network.Nameservers) > 0 || len(c.Network.SearchDomains) > 0 {
		b.Reset()
		b.WriteString("apiVersion: v1alpha1\nkind: ResolverConfig\n")

		if len(c.Network.Nameservers) > 0 {
			b.WriteString("nameservers:\n")

			for _, ns := range c.Network.Nameservers {
				fmt.Fprintf(&b, "  - address: %s\n", ns)
			}
		}

		if len(c.Network.SearchDomains) > 0 {
			b.WriteString("searchDomains:\n  domains:\n")

			for _, d := range c.Network.SearchDomains {
				fmt.Fprintf(&b, "    - %s\n", q(d))
			}
		}

		docs = append(docs, b.String())
	}

	if c.Network.VIP != "" && n.Role == profile.RoleControlPlane {
		docs = append(docs, fmt.Sprintf("apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: %s\nlink: %s\n", c.Network.VIP, q(link)))
	}

	return docs
}

// legacyNetwork renders the network as v1alpha1 machine.network (Talos 1.10 and 1.11).
func (g *Generator) legacyNetwork(n profile.Node) string {
	c := g.cluster

	var b strings.Builder

	fmt.Fprintf(&b, "machine:\n  network:\n    hostname: %s\n", q(n.Name))

	if len(c.Network.Nameservers) > 0 {
		b.WriteString("    nameservers:\n")

		for _, ns := range c.Network.Nameservers {
			fmt.Fprintf(&b, "      - %s\n", ns)
		}
	}

	if len(c.Network.SearchDomains) > 0 {
		b.WriteString("    searchDomains:\n")

		for _, d := range c.Network.SearchDomains {
			fmt.Fprintf(&b, "      - %s\n", q(d))
		}
	}

	b.WriteString("    interfaces:\n")

	if n.Interface != "" {
		fmt.Fprintf(&b, "      - interface: %s\n", q(n.Interface))
	} else {
		fmt.Fprintf(&b, "      - deviceSelector:\n          hardwareAddr: %s\n", q(n.MAC))
	}

	fmt.Fprintf(&b, "        addresses:\n          - %s\n        routes:\n          - network: 0.0.0.0/0\n            gateway: %s\n", c.NodeCIDR(n), c.Network.Gateway)

	if c.Network.MTU != 0 {
		fmt.Fprintf(&b, "        mtu: %d\n", c.Network.MTU)
	}

	if c.Network.VIP != "" && n.Role == profile.RoleControlPlane {
		fmt.Fprintf(&b, "        vip:\n          ip: %s\n", c.Network.VIP)
	}

	return b.String()
}

// longhornDisk puts a node's Longhorn data disk under Talos as the user volume "longhorn"
// (mounted at /var/mnt/longhorn), selected by the serial talforge gives the disk, and labels
// the node so Longhorn creates its default disk there. It is the same for every such node.
func (g *Generator) longhornDisk() []string {
	docs := []string{fmt.Sprintf(`apiVersion: v1alpha1
kind: UserVolumeConfig
name: %s
provisioning:
  diskSelector:
    match: %s
  minSize: 1GiB
  grow: true
filesystem:
  type: xfs
`, profile.LonghornVolumeName, q(fmt.Sprintf("disk.serial == %q && !system_disk", profile.LonghornDiskSerial)))}

	if g.contract.MultidocKubernetesConfigSupported() {
		// Talos ≥ 1.14 bind-mounts /var/mnt into the kubelet itself and has no extraMounts.
		return append(docs, fmt.Sprintf("apiVersion: v1alpha1\nkind: KubeNodeConfig\nlabels:\n  %s: \"true\"\n", LonghornNodeLabel))
	}

	// Longhorn's Talos guide: the data path must be a shared, writable bind in the kubelet.
	return append(docs, fmt.Sprintf(`machine:
  nodeLabels:
    %s: "true"
  kubelet:
    extraMounts:
      - destination: %s
        type: bind
        source: %s
        options:
          - bind
          - rshared
          - rw
`, LonghornNodeLabel, profile.LonghornDataPath, profile.LonghornDataPath))
}
