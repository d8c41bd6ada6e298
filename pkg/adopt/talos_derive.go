package adopt

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"

	factory "github.com/siderolabs/image-factory/pkg/schematic"

	"github.com/talforge/talforge/pkg/machineconfig"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/talospatch"
)

// nodeFacts is what talforge models of one node, read from its live config.
type nodeFacts struct {
	live     *liveNode
	docs     []talospatch.Document
	name     string
	role     profile.Role
	addr     netip.Prefix
	gateway  string
	mac      string
	iface    string
	mtu      int
	vip      string
	dns      []string
	search   []string
	disk     string
	image    string
	fallback bool // the name is made up: the config sets no hostname
}

// macSelectorRE reads the MAC out of a link selector such as talforge writes and Talos'
// documentation shows: mac(link.permanent_addr) == "aa:bb:cc:dd:ee:ff".
// Compiled on first use, not at package initialisation, to keep start-up cheap (issue 16).
var macSelectorRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^mac\(link\.(?:permanent_addr|hardware_addr)\)\s*==\s*"([0-9a-fA-F:]{17})"$`)
})

// devPathRE reads the device out of the install disk selector machinery generates for an
// install disk (Talos ≥ 1.14): disk.dev_path == "/dev/sda".
var devPathRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^disk\.dev_path\s*==\s*"(/dev/[^"]+)"$`)
})

// get walks a decoded document by keys.
func get(m map[string]any, keys ...string) any {
	var v any = m

	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}

		v = mm[k]
	}

	return v
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func num(v any) int {
	n, _ := v.(int)
	return n
}

func strs(v any) []string {
	var out []string

	for _, x := range list(v) {
		if s := str(x); s != "" {
			out = append(out, s)
		}
	}

	return out
}

// facts reads a node's identity and network from its live config: the v1alpha1
// machine.network form (Talos ≤ 1.11 and hand-made configs of any version) or the network
// documents (Talos ≥ 1.12: HostnameConfig, LinkAliasConfig, LinkConfig, ResolverConfig,
// Layer2VIPConfig; machinery config/types/network).
func facts(n *liveNode) (*nodeFacts, error) {
	docs, err := talospatch.Decode(n.cfg)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.ip, err)
	}

	f := &nodeFacts{live: n, docs: docs, role: profile.RoleWorker}
	if n.cfg.Machine().Type().IsControlPlane() {
		f.role = profile.RoleControlPlane
	}

	f.disk = n.cfg.Machine().Install().Disk()
	f.image = machineconfig.InstallImage(n.cfg)

	if f.disk == "" {
		// Talos ≥ 1.14 writes the install disk as a selector of UnattendedInstallConfig.
		for _, d := range docs {
			if d.Key.Kind == "UnattendedInstallConfig" {
				if m := devPathRE().FindStringSubmatch(str(get(d.Data, "provisioning", "diskSelector", "match"))); m != nil {
					f.disk = m[1]
				}
			}
		}
	}

	var links []map[string]any // candidate links carrying addresses, in order

	aliases := map[string]string{} // alias name → MAC

	for _, d := range docs {
		m := d.Data

		switch d.Key.Kind {
		case "v1alpha1":
			nw, _ := get(m, "machine", "network").(map[string]any)
			f.name = str(nw["hostname"])
			f.dns = strs(nw["nameservers"])
			f.search = strs(nw["searchDomains"])

			for _, it := range list(nw["interfaces"]) {
				if dev, ok := it.(map[string]any); ok {
					links = append(links, map[string]any{
						"name": str(dev["interface"]), "mac": str(get(dev, "deviceSelector", "hardwareAddr")),
						"addresses": strs(dev["addresses"]), "routes": dev["routes"], "mtu": num(dev["mtu"]),
						"vip": str(get(dev, "vip", "ip")),
					})
				}
			}
		case "HostnameConfig":
			if h := str(m["hostname"]); h != "" {
				f.name = h
			}
		case "LinkAliasConfig":
			if mm := macSelectorRE().FindStringSubmatch(str(get(m, "selector", "match"))); mm != nil {
				aliases[str(m["name"])] = strings.ToLower(mm[1])
			}
		case "LinkConfig":
			var addrs []string
			for _, a := range list(m["addresses"]) {
				addrs = append(addrs, str(get(a.(map[string]any), "address")))
			}

			links = append(links, map[string]any{"name": str(m["name"]), "addresses": addrs, "routes": m["routes"], "mtu": num(m["mtu"])})
		case "ResolverConfig":
			for _, ns := range list(m["nameservers"]) {
				if mm, ok := ns.(map[string]any); ok {
					f.dns = append(f.dns, str(mm["address"]))
				}
			}

			f.search = strs(get(m, "searchDomains", "domains"))
		case "Layer2VIPConfig":
			f.vip = str(m["name"])
		}
	}

	if err := f.pickLink(links, aliases); err != nil {
		return nil, err
	}

	return f, nil
}

// pickLink takes the link whose static address is the one we reached the node on, else the
// first link with a static IPv4 address.
func (f *nodeFacts) pickLink(links []map[string]any, aliases map[string]string) error {
	var chosen map[string]any

	for _, l := range links {
		for _, a := range l["addresses"].([]string) {
			p, err := netip.ParsePrefix(a)
			if err != nil || !p.Addr().Is4() {
				continue
			}

			if chosen == nil || p.Addr().String() == f.live.ip {
				chosen, f.addr = l, p
			}
		}
	}

	if chosen == nil {
		return fmt.Errorf("node %s: its config has no static IPv4 address (machine.network.interfaces or LinkConfig): "+
			"talforge manages static addresses only; give the node a static address first", f.live.ip)
	}

	f.mtu = chosen["mtu"].(int)

	if v, _ := chosen["vip"].(string); v != "" {
		f.vip = v
	}

	name := chosen["name"].(string)
	mac, _ := chosen["mac"].(string)

	switch {
	case mac != "":
		f.mac = strings.ToLower(mac)
	case aliases[name] != "":
		f.mac = aliases[name]
	default:
		f.iface = name
	}

	for _, r := range list(chosen["routes"]) {
		rm, ok := r.(map[string]any)
		if !ok {
			continue
		}

		if dst := cmpOr(str(rm["network"]), str(rm["destination"])); dst == "" || dst == "0.0.0.0/0" {
			f.gateway = str(rm["gateway"])

			break
		}
	}

	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}

	return b
}

// derive builds the profile: only what the live configs say, nothing talforge would default.
func derive(name string, nodes []*nodeFacts) (*profile.Cluster, *factory.Schematic, []string, error) {
	var warnings []string

	slices.SortStableFunc(nodes, func(a, b *nodeFacts) int {
		if a.role != b.role {
			if a.role == profile.RoleControlPlane {
				return -1
			}

			return 1
		}

		return strings.Compare(a.name, b.name)
	})

	var cp *nodeFacts

	for _, n := range nodes {
		if n.role == profile.RoleControlPlane {
			cp = n

			break
		}
	}

	if cp == nil {
		return nil, nil, nil, fmt.Errorf("none of the nodes %s is a control plane: include the control planes (--nodes)", ipsOf(nodes))
	}

	c := &profile.Cluster{APIVersion: profile.APIVersion, Kind: profile.Kind, Metadata: profile.Metadata{Name: name}}

	c.Talos.Version = cp.live.version
	for _, n := range nodes {
		if n.live.version != cp.live.version {
			warnings = append(warnings, fmt.Sprintf("node %s runs Talos %s, the control plane %s runs %s: the profile says %s (finish the upgrade first)",
				n.name, n.live.version, cp.name, cp.live.version, cp.live.version))
		}
	}

	cfg := cp.live.cfg
	if api := cfg.K8sAPIServerConfig(); api != nil {
		if img := api.Image(); strings.LastIndex(img, ":") > 0 {
			c.Talos.Kubernetes = img[strings.LastIndex(img, ":")+1:]
		}
	}

	c.Talos.AllowSchedulingOnControlPlanes = schedulesOnControlPlanes(cp.docs)
	live, imageWarnings := deriveImage(c, cp.image, cp.live.schematic)
	warnings = append(warnings, imageWarnings...)

	c.Network = profile.Network{
		CIDR:          cp.addr.Masked().String(),
		Gateway:       cp.gateway,
		Nameservers:   cp.dns,
		SearchDomains: cp.search,
		VIP:           cp.vip,
		MTU:           cp.mtu,
	}

	for _, n := range nodes {
		if n.fallback {
			warnings = append(warnings, fmt.Sprintf("node %s sets no hostname: named %s in the profile", n.live.ip, n.name))
		}

		c.Nodes = append(c.Nodes, profile.Node{
			Name: n.name, Role: n.role, IP: n.addr.Addr().String(), MAC: n.mac, InstallDisk: n.disk, Interface: n.iface,
		})
	}

	// The endpoint talforge derives is the VIP, else the first control plane, on 6443.
	if kc := cfg.K8sClusterConfig(); kc != nil {
		if u := kc.ClusterEndpoint(); u != nil && u.Host != "" && u.String() != c.ControlPlaneEndpoint() {
			c.Talos.Endpoint = "https://" + u.Host
		}
	}

	return c, live, warnings, nil
}

// deriveImage reads the Image Factory host and schematic from the install image and the
// schematic the node reports. Any other image stays in a patch, exactly as it is.
func deriveImage(c *profile.Cluster, image string, rs *reportedSchematic) (*factory.Schematic, []string) {
	ref, _, ok := strings.Cut(image, ":")
	if !ok {
		return nil, nil
	}

	parts := strings.Split(ref, "/")
	if len(parts) != 3 || (parts[1] != "installer" && !strings.HasSuffix(parts[1], "-installer")) || strings.Contains(parts[0], "ghcr.io") {
		return nil, []string{fmt.Sprintf("install image %s is not an Image Factory image: it is kept as it is, in a patch", image)}
	}

	live, warnings := liveSchematic(parts[2], rs)
	if live == nil {
		return nil, warnings
	}

	if parts[0] != profile.DefaultImageFactory {
		c.Talos.ImageFactory = parts[0]
	}

	c.Talos.Extensions = slices.Clone(live.Customization.SystemExtensions.OfficialExtensions)
	c.Talos.KernelArgs = slices.Clone(live.Customization.ExtraKernelArgs)

	return live, warnings
}

// schedulesOnControlPlanes reads whether workloads may run on control planes: the v1alpha1
// cluster.allowSchedulingOnControlPlanes, or (Talos ≥ 1.14 documents) a control plane's
// KubeNodeConfig without the control-plane NoSchedule taint that machinery adds otherwise.
func schedulesOnControlPlanes(docs []talospatch.Document) bool {
	for _, d := range docs {
		switch d.Key.Kind {
		case "v1alpha1":
			if v, ok := get(d.Data, "cluster", "allowSchedulingOnControlPlanes").(bool); ok {
				return v
			}
		case "KubeNodeConfig":
			_, tainted := get(d.Data, "taints").(map[string]any)["node-role.kubernetes.io/control-plane"]

			return !tainted
		}
	}

	return false
}

func ipsOf(nodes []*nodeFacts) string {
	var ips []string
	for _, n := range nodes {
		ips = append(ips, n.live.ip)
	}

	return strings.Join(ips, ", ")
}
