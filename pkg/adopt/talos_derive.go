package adopt

import (
	"context"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"gopkg.in/yaml.v3"

	factory "github.com/siderolabs/image-factory/pkg/schematic"

	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/machineconfig"
	"github.com/talforge/talforge/pkg/profile"
)

// nodeFacts is what talforge models of one node, read from its live config.
type nodeFacts struct {
	live     *liveNode
	docs     []document
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
var macSelectorRE = regexp.MustCompile(`^mac\(link\.(?:permanent_addr|hardware_addr)\)\s*==\s*"([0-9a-fA-F:]{17})"$`)

// devPathRE reads the device out of the install disk selector machinery generates for an
// install disk (Talos ≥ 1.14): disk.dev_path == "/dev/sda".
var devPathRE = regexp.MustCompile(`^disk\.dev_path\s*==\s*"(/dev/[^"]+)"$`)

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
	docs, err := decodeDocs(n.cfg)
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
			if d.key.Kind == "UnattendedInstallConfig" {
				if m := devPathRE.FindStringSubmatch(str(get(d.data, "provisioning", "diskSelector", "match"))); m != nil {
					f.disk = m[1]
				}
			}
		}
	}

	var links []map[string]any // candidate links carrying addresses, in order

	aliases := map[string]string{} // alias name → MAC

	for _, d := range docs {
		m := d.data

		switch d.key.Kind {
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
			if mm := macSelectorRE.FindStringSubmatch(str(get(m, "selector", "match"))); mm != nil {
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
func schedulesOnControlPlanes(docs []document) bool {
	for _, d := range docs {
		switch d.key.Kind {
		case "v1alpha1":
			if v, ok := get(d.data, "cluster", "allowSchedulingOnControlPlanes").(bool); ok {
				return v
			}
		case "KubeNodeConfig":
			_, tainted := get(d.data, "taints").(map[string]any)["node-role.kubernetes.io/control-plane"]

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

// describe turns the live nodes into the import: profile, patches, bundle.
func describe(ctx context.Context, name string, bundle *secrets.Bundle, live []*liveNode) (*TalosImport, error) {
	var nodes []*nodeFacts

	names := map[string]string{}

	for _, l := range live {
		f, err := facts(l)
		if err != nil {
			return nil, err
		}

		if f.name == "" {
			f.name, f.fallback = "talos-"+strings.NewReplacer(".", "-", ":", "-").Replace(l.ip), true
		}

		if other, dup := names[f.name]; dup {
			return nil, fmt.Errorf("nodes %s and %s both have the hostname %s: talforge names nodes by hostname", other, l.ip, f.name)
		}

		names[f.name] = l.ip
		nodes = append(nodes, f)
	}

	c, schematic, warnings, err := derive(name, nodes)
	if err != nil {
		return nil, err
	}

	rendered, err := renderBase(ctx, c, bundle)
	if err != nil {
		return nil, err
	}

	imp := &TalosImport{Bundle: bundle, Profile: c, Live: map[string][]byte{}, Warnings: warnings, nodes: nodes, schematic: schematic}
	for _, n := range nodes {
		imp.Live[n.name] = n.live.raw
	}

	if err := imp.patch(rendered); err != nil {
		return nil, err
	}

	return imp, nil
}

// Repatch computes the patch files again against c, the whole profile the import writes (the
// derived Talos part with the Proxmox and Longhorn blocks added: a node with a Longhorn data
// disk gets talforge's built-in data-disk documents, which the live config may not have). c's
// patch references are replaced, and so is Files.
func (imp *TalosImport) Repatch(ctx context.Context, c *profile.Cluster) error {
	c.Patches = profile.Patches{}
	imp.Warnings = append(imp.Warnings, fitSchematic(c, imp.schematic)...)

	rendered, err := renderBase(ctx, c, imp.Bundle)
	if err != nil {
		return err
	}

	imp.Profile = c

	return imp.patch(rendered)
}

// patch diffs every node's rendered config (without patches) with its live one and writes the
// patches that close the difference.
func (imp *TalosImport) patch(rendered map[string][]document) error {
	imp.Files = map[string][]byte{}
	imp.Profile.Patches = profile.Patches{}
	perNode := map[string][]op{}

	for _, n := range imp.nodes {
		r, ok := rendered[n.name]
		if !ok {
			return fmt.Errorf("node %s: talforge rendered no config for it", n.name)
		}

		perNode[n.name] = diffConfigs(r, n.docs)
	}

	return imp.factor(imp.nodes, perNode)
}

// owns reports whether a change names the node itself (its address, MAC or name): such a
// change belongs in the node's own patch even where it is the only node of its role.
func (f *nodeFacts) owns(id string) bool {
	for _, s := range []string{f.live.ip, f.addr.Addr().String(), f.mac, f.name} {
		if s != "" && strings.Contains(id, s) {
			return true
		}
	}

	return false
}

// renderBase renders the derived profile, without patches, with talforge's own pipeline.
func renderBase(ctx context.Context, c *profile.Cluster, bundle *secrets.Bundle) (map[string][]document, error) {
	data, err := yaml.Marshal(withoutSecretInputs(c))
	if err != nil {
		return nil, fmt.Errorf("encode the derived profile: %w", err)
	}

	parsed, err := profile.ParseContext(ctx, path.Join("profiles", c.Metadata.Name+".yaml"), data)
	if err != nil {
		return nil, fmt.Errorf("the profile derived from the live configs does not load: %w", err)
	}

	r, err := generate.Render(ctx, parsed, bundle, nil)
	if err != nil {
		return nil, fmt.Errorf("render the derived profile: %w", err)
	}

	out := map[string][]document{}

	for _, cfg := range r.Configs {
		docs, err := decodeDocs(cfg.Provider)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", cfg.Node.Name, err)
		}

		out[cfg.Node.Name] = docs
	}

	return out, nil
}

// factor splits every node's ops into a patch for all nodes (ops every node has), one per role
// (ops every node of the role has) and one per node (the rest), and writes the patch files.
func (imp *TalosImport) factor(nodes []*nodeFacts, perNode map[string][]op) error {
	name := imp.Profile.Metadata.Name
	dir := "patches/" + name + "/"

	count := map[string]int{}
	roleCount := map[profile.Role]map[string]int{}
	roleNodes := map[profile.Role]int{}

	for _, n := range nodes {
		if roleCount[n.role] == nil {
			roleCount[n.role] = map[string]int{}
		}

		roleNodes[n.role]++

		for _, o := range perNode[n.name] {
			count[o.id()]++
			roleCount[n.role][o.id()]++
		}
	}

	var all []op

	roles := map[profile.Role][]op{}
	own := map[string][]op{}
	seenAll := map[string]bool{}
	seenRole := map[profile.Role]map[string]bool{profile.RoleControlPlane: {}, profile.RoleWorker: {}}

	for _, n := range nodes {
		for _, o := range perNode[n.name] {
			id := o.id()

			switch {
			case count[id] == len(nodes):
				if !seenAll[id] {
					seenAll[id] = true
					all = append(all, o)
				}
			case roleCount[n.role][id] == roleNodes[n.role] && !n.owns(id):
				if !seenRole[n.role][id] {
					seenRole[n.role][id] = true
					roles[n.role] = append(roles[n.role], o)
				}
			default:
				own[n.name] = append(own[n.name], o)
			}
		}
	}

	for _, n := range nodes {
		own[n.name] = append(own[n.name], restoreExpressions(n, all, roles[n.role], own[n.name])...)
	}

	write := func(file string, ops []op) (string, error) {
		data, err := patchFile(ops)
		if err != nil || data == nil {
			return "", err
		}

		imp.Files[dir+file] = data

		return dir + file, nil
	}

	p := &imp.Profile.Patches

	f, err := write("all.yaml", all)
	if err != nil {
		return err
	}

	if f != "" {
		p.All = []string{f}
	}

	if f, err = write("controlplane.yaml", roles[profile.RoleControlPlane]); err != nil {
		return err
	} else if f != "" {
		p.ControlPlane = []string{f}
	}

	if f, err = write("worker.yaml", roles[profile.RoleWorker]); err != nil {
		return err
	} else if f != "" {
		p.Worker = []string{f}
	}

	for _, n := range nodes {
		if f, err = write("nodes/"+n.name+".yaml", own[n.name]); err != nil {
			return err
		} else if f != "" {
			if p.Nodes == nil {
				p.Nodes = map[string][]string{}
			}

			p.Nodes[n.name] = []string{f}
		}
	}

	return nil
}

// celKeys are the fields of machinery's documents that hold a CEL expression
// (cel.Expression: selector.match, provisioning.diskSelector.match, the OOM expressions).
var celKeys = map[string]bool{"match": true, "triggerExpression": true, "cgroupRankingExpression": true}

// restoreExpressions works around cel.Expression's Merge (machinery cel/cel.go), which takes
// the patch's expression even when the patch has none: any patch document that touches a
// document with a selector empties the selector. For every such document a patch touches,
// the node's own patch (applied last) sets each expression to its live value again, unless
// it sets it already.
func restoreExpressions(n *nodeFacts, levels ...[]op) []op {
	touched := map[docKey]bool{}
	set := map[string]bool{}

	for _, level := range levels {
		for _, o := range level {
			if o.kind != opDeleteDoc {
				touched[o.doc] = true
			}

			if o.kind == opSet || o.kind == opReplace {
				set[o.doc.String()+"\x00"+strings.Join(o.path, "\x00")] = true
			}
		}
	}

	var out []op

	for _, d := range n.docs {
		if !touched[d.key] || d.key.legacy() {
			continue
		}

		var walk func(m map[string]any, path []string)

		walk = func(m map[string]any, path []string) {
			for _, k := range sortedKeys(m) {
				p := child(path, k)

				switch v := m[k].(type) {
				case map[string]any:
					walk(v, p)
				case string:
					if celKeys[k] && !set[d.key.String()+"\x00"+strings.Join(p, "\x00")] {
						out = append(out, op{doc: d.key, path: p, kind: opSet, value: v})
					}
				}
			}
		}

		walk(d.data, nil)
	}

	return out
}

// withoutSecretInputs is c without the references to secret input files (the PVE token, its
// CA, the backup credentials) and what depends on them: they do not change a machine config,
// and while importing they are not written yet, so the profile could not load with them.
func withoutSecretInputs(c *profile.Cluster) *profile.Cluster {
	out := *c
	if c.Proxmox != nil {
		p := *c.Proxmox
		p.TokenFile, p.CAFile = "", ""
		out.Proxmox = &p
	}
	if c.Longhorn != nil {
		// Only the data disks matter to a machine config; the backup block (and what refers
		// to its recurring-job groups) goes with the credentials file it names.
		l := *c.Longhorn
		l.Backup, l.StorageClasses, l.Volumes = nil, nil, nil
		out.Longhorn = &l
	}
	return &out
}
