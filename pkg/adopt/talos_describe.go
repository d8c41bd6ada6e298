package adopt

// From the nodes' facts to the import: the profile they derive, the base talforge renders from it,
// and the patches that carry what talforge does not model.

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"gopkg.in/yaml.v3"

	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/talospatch"
)

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
func (imp *TalosImport) patch(rendered map[string][]talospatch.Document) error {
	imp.Files = map[string][]byte{}
	imp.Profile.Patches = profile.Patches{}
	perNode := map[string][]talospatch.Op{}

	for _, n := range imp.nodes {
		r, ok := rendered[n.name]
		if !ok {
			return fmt.Errorf("node %s: talforge rendered no config for it", n.name)
		}

		perNode[n.name] = talospatch.Diff(r, n.docs)
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
func renderBase(ctx context.Context, c *profile.Cluster, bundle *secrets.Bundle) (map[string][]talospatch.Document, error) {
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

	out := map[string][]talospatch.Document{}

	for _, cfg := range r.Configs {
		docs, err := talospatch.Decode(cfg.Provider)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", cfg.Node.Name, err)
		}

		out[cfg.Node.Name] = docs
	}

	return out, nil
}

// factor splits every node's ops into a patch for all nodes (ops every node has), one per role
// (ops every node of the role has) and one per node (the rest), and writes the patch files.
func (imp *TalosImport) factor(nodes []*nodeFacts, perNode map[string][]talospatch.Op) error {
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
			count[o.ID()]++
			roleCount[n.role][o.ID()]++
		}
	}

	var all []talospatch.Op

	roles := map[profile.Role][]talospatch.Op{}
	own := map[string][]talospatch.Op{}
	seenAll := map[string]bool{}
	seenRole := map[profile.Role]map[string]bool{profile.RoleControlPlane: {}, profile.RoleWorker: {}}

	for _, n := range nodes {
		for _, o := range perNode[n.name] {
			id := o.ID()

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

	write := func(file string, ops []talospatch.Op) (string, error) {
		data, err := talospatch.File(ops)
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
func restoreExpressions(n *nodeFacts, levels ...[]talospatch.Op) []talospatch.Op {
	touched := map[talospatch.DocKey]bool{}
	set := map[string]bool{}

	for _, level := range levels {
		for _, o := range level {
			if o.Kind != talospatch.OpDeleteDoc {
				touched[o.Doc] = true
			}

			if o.Kind == talospatch.OpSet || o.Kind == talospatch.OpReplace {
				set[o.Doc.String()+"\x00"+strings.Join(o.Path, "\x00")] = true
			}
		}
	}

	var out []talospatch.Op

	for _, d := range n.docs {
		if !touched[d.Key] || d.Key.Legacy() {
			continue
		}

		var walk func(m map[string]any, path []string)

		walk = func(m map[string]any, path []string) {
			for _, k := range slices.Sorted(maps.Keys(m)) {
				p := append(slices.Clone(path), k)

				switch v := m[k].(type) {
				case map[string]any:
					walk(v, p)
				case string:
					if celKeys[k] && !set[d.Key.String()+"\x00"+strings.Join(p, "\x00")] {
						out = append(out, talospatch.Op{Doc: d.Key, Path: p, Kind: talospatch.OpSet, Value: v})
					}
				}
			}
		}

		walk(d.Data, nil)
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
