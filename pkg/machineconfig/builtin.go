package machineconfig

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/siderolabs/talos/pkg/machinery/cel"
	"github.com/siderolabs/talos/pkg/machinery/cel/celenv"
	configconfig "github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/container"
	"github.com/siderolabs/talos/pkg/machinery/config/types/meta"
	"github.com/siderolabs/talos/pkg/machinery/config/types/network"

	"github.com/talforge/talforge/pkg/profile"
)

// LinkAlias is the name talforge gives the node's NIC (Talos ≥ 1.12), selected by its MAC
// address so that the config never depends on how the kernel names the interface.
const LinkAlias = "lan"

// LonghornNodeLabel makes Longhorn create its default disk (at the data path) on the node:
// with createDefaultDiskLabeledNodes, only labelled nodes — the ones with a data disk — get one.
const LonghornNodeLabel = "node.longhorn.io/create-default-disk"

const builtinSource = "built-in"

// builtinPatches returns talforge's own patches for a node, as strategic-merge patches of typed
// machinery documents in the shape the node's config contract expects: the node's own network
// and hostname, then the Longhorn data disk (the same for every node that has one, prepared
// once in New).
func (g *Generator) builtinPatches(n profile.Node) ([]namedPatch, error) {
	var (
		docs []configconfig.Document
		err  error
	)

	if g.contract.MultidocNetworkConfigSupported() {
		docs, err = g.multidocNetwork(n)
	} else {
		docs, err = g.legacyNetwork(n)
	}

	if err != nil {
		return nil, fmt.Errorf("built-in patch: %w", err)
	}

	patch, err := strategicPatch(docs...)
	if err != nil {
		return nil, fmt.Errorf("built-in patch: %w", err)
	}

	out := []namedPatch{newNamedPatch(builtinSource, "", patch)}

	if g.longhornPatch.patch != nil && n.HasLonghornDisk() {
		out = append(out, g.longhornPatch)
	}

	return out, nil
}

// strategicPatch makes a strategic-merge patch of typed documents, the in-memory equivalent of
// what configpatcher.LoadPatch returns for their YAML (configpatcher/load.go: a container from
// configloader wrapped by NewStrategicMergePatch), without encoding and parsing them again.
func strategicPatch(docs ...configconfig.Document) (configpatcher.Patch, error) {
	ctr, err := container.New(docs...)
	if err != nil {
		return nil, err
	}

	return configpatcher.NewStrategicMergePatch(ctr), nil
}

// celBool is a boolean CEL expression that keeps expr as written, checked against env by parse
// ((*cel.Expression).ParseBool; generic so that talforge need not import cel-go, which go.mod
// has only as machinery's dependency, to name its Env type). It
// is what machinery holds for a selector loaded from YAML and validated (UnmarshalText, then
// ParseBool as in LinkAliasConfigV1Alpha1.Validate, config/types/network/link_alias.go), and the
// config encodes expr itself. cel.ParseBooleanExpression keeps only the AST, which encodes
// through cel.AstToString (cel/cel.go MarshalText): the rendered text would then follow cel-go's
// unparser, and could change with a cel-go update.
func celBool[Env any](expr string, env Env, parse func(*cel.Expression, Env) error) (cel.Expression, error) {
	var e cel.Expression

	if err := e.UnmarshalText([]byte(expr)); err != nil {
		return cel.Expression{}, fmt.Errorf("selector %s: %w", expr, err)
	}

	if err := parse(&e, env); err != nil {
		return cel.Expression{}, fmt.Errorf("selector %s: %w", expr, err)
	}

	return e, nil
}

// nodeAddresses parses what the profile checked (the node's address with the network's prefix,
// the gateway). A Cluster built in code may not have been checked, and the typed documents have
// no room for an address that does not parse: the node fails here, naming the field.
func (g *Generator) nodeAddresses(n profile.Node) (netip.Prefix, netip.Addr, error) {
	cidr, err := netip.ParsePrefix(g.cluster.NodeCIDR(n))
	if err != nil {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("node address: %w", err)
	}

	gw, err := netip.ParseAddr(g.cluster.Network.Gateway)
	if err != nil {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("network.gateway: %w", err)
	}

	return cidr, gw, nil
}

// multidocNetwork builds hostname, link, routes, resolvers and VIP as Talos ≥ 1.12 documents,
// in the order machinery appends them to the node's config.
func (g *Generator) multidocNetwork(n profile.Node) ([]configconfig.Document, error) {
	c := g.cluster

	cidr, gw, err := g.nodeAddresses(n)
	if err != nil {
		return nil, err
	}

	if c.Network.MTU < 0 {
		return nil, fmt.Errorf("network.mtu %d is negative", c.Network.MTU)
	}

	hostname := network.NewHostnameConfigV1Alpha1()
	hostname.ConfigHostname = n.Name

	docs := []configconfig.Document{hostname}

	link := n.Interface
	if link == "" {
		// The permanent address: the current one changes when the link joins a bond.
		sel, err := celBool(fmt.Sprintf("mac(link.permanent_addr) == %q", n.MAC), celenv.LinkLocator(), (*cel.Expression).ParseBool)
		if err != nil {
			return nil, fmt.Errorf("node MAC: %w", err)
		}

		alias := network.NewLinkAliasConfigV1Alpha1(LinkAlias)
		alias.Selector.Match = sel

		link = LinkAlias
		docs = append(docs, alias)
	}

	lc := network.NewLinkConfigV1Alpha1(link)
	lc.LinkMTU = uint32(c.Network.MTU)
	lc.LinkAddresses = []network.AddressConfig{{AddressAddress: cidr}}
	// No destination: LinkConfig makes it the default route of the gateway's family.
	lc.LinkRoutes = []network.RouteConfig{{RouteGateway: meta.Addr{Addr: gw}}}
	docs = append(docs, lc)

	if len(c.Network.Nameservers) > 0 || len(c.Network.SearchDomains) > 0 {
		rc := network.NewResolverConfigV1Alpha1()

		for i, ns := range c.Network.Nameservers {
			a, err := netip.ParseAddr(ns)
			if err != nil {
				return nil, fmt.Errorf("network.nameservers[%d]: %w", i, err)
			}

			rc.ResolverNameservers = append(rc.ResolverNameservers, network.NameserverConfig{Address: meta.Addr{Addr: a}})
		}

		// Left nil without search domains: the field is encoded unless nil (talos:"omitonlyifnil").
		if len(c.Network.SearchDomains) > 0 {
			// A copy: machinery merges this list by replacing (merge:"replace"), so the node's
			// config would otherwise share the profile's array.
			rc.ResolverSearchDomains.SearchDomains = network.SearchDomainList(slices.Clone(c.Network.SearchDomains))
		}

		docs = append(docs, rc)
	}

	if c.Network.VIP != "" && n.Role == profile.RoleControlPlane {
		vip := network.NewLayer2VIPConfigV1Alpha1(c.Network.VIP)
		vip.LinkName = link
		docs = append(docs, vip)
	}

	return docs, nil
}
