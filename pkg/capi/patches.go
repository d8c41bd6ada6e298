package capi

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/config"
	talosgenerate "github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"gopkg.in/yaml.v3"

	"github.com/talforge/talforge/pkg/machineconfig"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/talospatch"
)

// nodeOwnKinds are the documents that hold a node's own network, which CAPMOX provides instead
// (its nocloud network-config: address, gateway, DNS by MAC) and CABPT's hostname patch.
var nodeOwnKinds = map[string]bool{"HostnameConfig": true, "LinkAliasConfig": true, "LinkConfig": true, "Layer2VIPConfig": true}

// RoleDocuments are the documents of a config that a role's machines share: the config without
// the node's own network (nodeOwnKinds; before Talos 1.12 the v1alpha1 machine.network
// hostname and interfaces). Two configs of one role that talforge would render alike give
// equal RoleDocuments.
func RoleDocuments(cfg config.Provider) ([]talospatch.Document, error) {
	docs, err := talospatch.Decode(cfg)
	if err != nil {
		return nil, err
	}

	return roleOnly(docs), nil
}

// roleOnly drops the node's own network from docs (see RoleDocuments).
func roleOnly(docs []talospatch.Document) []talospatch.Document {
	out := docs[:0]

	for _, d := range docs {
		if nodeOwnKinds[d.Key.Kind] {
			continue
		}

		if d.Key.Legacy() {
			if m, ok := d.Data["machine"].(map[string]any); ok {
				if n, ok := m["network"].(map[string]any); ok {
					delete(n, "hostname")
					delete(n, "interfaces")

					if len(n) == 0 {
						delete(m, "network")
					}
				}
			}
		}

		out = append(out, d)
	}

	return out
}

// rolePatches are the strategic patches of a role's TalosConfig: the difference between the
// config CABPT generates for the role (cabptBase) and talforge's config of the role's first
// node, as machinery's strategic merge carries it out exactly (talospatch), so that the
// install image, the Longhorn volume, DNS, SANs, scheduling and the profile's own patches come
// out as talforge renders them; then, on control planes, the VIP on the physical NIC (CAPMOX
// gives the address by the MAC Proxmox chose, so talforge's link selected by MAC cannot be
// named). CABPT applies them in order and its hostname patch last
// (controllers/talosconfig_controller.go).
func (b *builder) rolePatches(ctx context.Context, role profile.Role) (_ []string, err error) {
	first := b.nodesOf(role)[0]

	var own []talospatch.Document

	for _, cfg := range b.r.Configs {
		if cfg.Node.Name == first.Name {
			if own, err = renderedRoleDocs(cfg); err != nil {
				return nil, err
			}
		}
	}

	if own == nil {
		return nil, fmt.Errorf("node %s: not rendered", first.Name)
	}

	base, err := b.cabptBase(role)
	if err != nil {
		return nil, err
	}

	baseDocs, err := RoleDocuments(base)
	if err != nil {
		return nil, err
	}

	file, err := talospatch.File(talospatch.Diff(baseDocs, own))
	if err != nil {
		return nil, fmt.Errorf("%s patch: %w", role, err)
	}

	var out []string
	if len(file) > 0 {
		out = append(out, string(file))
	}

	if vip := b.c.Network.VIP; role == profile.RoleControlPlane && vip != "" {
		text, err := encode(map[string]any{"machine": map[string]any{"network": map[string]any{"interfaces": []any{map[string]any{
			"deviceSelector": map[string]any{"physical": true},
			"vip":            map[string]any{"ip": vip},
		}}}}})
		if err != nil {
			return nil, err
		}

		out = append(out, text)
	}

	return out, b.alike(ctx, first, own)
}

// alike reports the nodes of first's role whose config differs from first's beyond their own
// network: the role's machines share one config.
func (b *builder) alike(ctx context.Context, first profile.Node, want []talospatch.Document) error {
	index := make(map[string]int, len(b.c.Nodes))
	for i, n := range b.c.Nodes {
		index[n.Name] = i
	}

	for _, cfg := range b.r.Configs {
		if err := ctx.Err(); err != nil {
			return err
		}

		n := cfg.Node
		if n.Role != first.Role || n.Name == first.Name {
			continue
		}

		docs, err := renderedRoleDocs(cfg)
		if err != nil {
			return err
		}

		if !reflect.DeepEqual(docs, want) {
			b.lossy(fmt.Sprintf("nodes[%d] (%s)", index[n.Name], n.Name), "its Talos config differs from %s's beyond its own network (per-node patches, install disk, data disk); the machines of a role share one config", first.Name)
		}
	}

	return nil
}

// renderedRoleDocs are RoleDocuments of a rendered config, read from its encoding (the one
// talospatch.Decode would make again).
func renderedRoleDocs(cfg *machineconfig.Config) ([]talospatch.Document, error) {
	docs, err := talospatch.DecodeYAML(cfg.Bytes)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Node.Name, err)
	}

	return roleOnly(docs), nil
}

// cabptBase is the config CABPT v0.6.12 generates for a role before any patch
// (controllers/talosconfig_controller.go genConfigs): machinery's generate with the Cluster's
// name and endpoint, the Machine's Kubernetes version, the contract of talosVersion, the
// secrets bundle and the Cluster's DNS domain (cluster.local), nothing else.
func (b *builder) cabptBase(role profile.Role) (config.Provider, error) {
	host, port, err := endpoint(b.c)
	if err != nil {
		return nil, err
	}

	in, err := talosgenerate.NewInput(b.c.Metadata.Name, "https://"+net.JoinHostPort(host, strconv.Itoa(port)), strings.TrimPrefix(b.c.Talos.Kubernetes, "v"),
		talosgenerate.WithVersionContract(b.r.Generator.Contract()),
		talosgenerate.WithSecretsBundle(b.r.Bundle),
		talosgenerate.WithDNSDomain("cluster.local"),
	)
	if err != nil {
		return nil, fmt.Errorf("%s base config: %w", role, err)
	}

	t := machine.TypeWorker
	if role == profile.RoleControlPlane {
		t = machine.TypeControlPlane
	}

	return in.Config(t)
}

func encode(doc map[string]any) (string, error) {
	var buf strings.Builder

	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)

	if err := enc.Encode(doc); err != nil {
		return "", err
	}

	return buf.String(), enc.Close()
}
