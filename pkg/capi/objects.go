package capi

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/schematic"
)

// names of the objects of a cluster called c.
func controlPlaneName(c string) string { return c + "-controlplane" }
func workersName(c string) string      { return c + "-workers" }

func ref(group, kind, name string) map[string]any {
	return map[string]any{"apiGroup": group, "kind": kind, "name": name}
}

// cluster is CAPI's Cluster: the endpoint, the networks talforge's configs carry, and the
// references (v1beta2: apiGroup, kind, name).
func (b *builder) cluster(host string, port int) Object {
	name := b.c.Metadata.Name

	return Object{APIVersion: clusterAPI, Kind: "Cluster", Metadata: b.meta(name), Spec: map[string]any{
		"clusterNetwork": map[string]any{
			"pods":     map[string]any{"cidrBlocks": podSubnets},
			"services": map[string]any{"cidrBlocks": serviceSubnets},
		},
		"controlPlaneEndpoint": map[string]any{"host": host, "port": port},
		"controlPlaneRef":      ref("controlplane.cluster.x-k8s.io", "TalosControlPlane", controlPlaneName(name)),
		"infrastructureRef":    ref("infrastructure.cluster.x-k8s.io", "ProxmoxCluster", name),
	}}
}

// proxmoxCluster is CAPMOX's ProxmoxCluster: the endpoint, the node addresses as its IP pool,
// the DNS servers and the PVE hosts the nodes run on.
func (b *builder) proxmoxCluster(host string, port int, pool map[string]any) Object {
	spec := map[string]any{
		"controlPlaneEndpoint": map[string]any{"host": host, "port": port},
		"ipv4Config":           pool,
		"dnsServers":           b.dnsServers(),
		"allowedNodes":         b.hosts(),
	}

	return Object{APIVersion: proxmoxAPI, Kind: "ProxmoxCluster", Metadata: b.meta(b.c.Metadata.Name), Spec: spec}
}

func (b *builder) dnsServers() []string {
	if ns := b.c.Network.Nameservers; len(ns) > 0 {
		return ns
	}

	return []string{b.c.Network.Gateway}
}

// hosts are the PVE hosts of the nodes, sorted.
func (b *builder) hosts() []string {
	var out []string
	for _, n := range b.c.Nodes {
		if !slices.Contains(out, n.PVENode) {
			out = append(out, n.PVENode)
		}
	}

	slices.Sort(out)

	return out
}

// machineTemplate is the ProxmoxMachineTemplate of a role: the first node of the role gives the
// sizes (lossesOfNodes reports nodes that differ), the profile the source, storage and network.
func (b *builder) machineTemplate(role profile.Role) Object {
	c := b.c
	nodes := b.nodesOf(role)
	n := nodes[0]

	spec := map[string]any{
		"full":       true,
		"format":     "raw",
		"storage":    c.Proxmox.Storage,
		"numSockets": 1,
		"numCores":   n.Cores,
		"memoryMiB":  n.Memory,
		"network":    map[string]any{"networkDevices": []any{b.networkDevice()}},
		// Talos has neither cloud-init nor, without the extension, the guest agent.
		"checks":           map[string]any{"skipCloudInitStatus": true, "skipQemuGuestAgent": !b.r.Image.HasExtension(schematic.QemuGuestAgent)},
		"metadataSettings": map[string]any{"providerIDInjection": false},
	}

	if gib, err := profile.SizeGiB(n.Disk); err == nil {
		spec["disks"] = map[string]any{"bootVolume": map[string]any{"disk": "scsi0", "sizeGb": gib}}
	}

	if c.Proxmox.Pool != "" {
		spec["pool"] = c.Proxmox.Pool
	}

	if c.Proxmox.Template != 0 {
		spec["sourceNode"], spec["templateID"] = c.Proxmox.Node, c.Proxmox.Template
	} else {
		// CAPMOX only clones: the template made from the cluster's image carries this tag.
		spec["templateSelector"] = map[string]any{"matchTags": []string{b.templateTag()}}
	}

	return Object{APIVersion: proxmoxAPI, Kind: "ProxmoxMachineTemplate", Metadata: b.meta(b.roleName(role)),
		Spec: map[string]any{"template": map[string]any{"spec": spec}}}
}

func (b *builder) networkDevice() map[string]any {
	d := map[string]any{"name": "net0", "bridge": b.c.Proxmox.Bridge, "model": "virtio"}
	if v := b.c.Proxmox.VLAN; v != 0 {
		d["vlan"] = v
	}

	if m := b.c.Network.MTU; m != 0 {
		d["mtu"] = m
	}

	return d
}

// templateTag names the Proxmox VM template made from the cluster's boot image.
func (b *builder) templateTag() string {
	id := b.r.Image.ID
	if len(id) > 12 {
		id = id[:12]
	}

	return "talos-" + strings.ReplaceAll(b.c.Talos.Version, ".", "-") + "-" + id
}

func (b *builder) roleName(role profile.Role) string {
	if role == profile.RoleControlPlane {
		return controlPlaneName(b.c.Metadata.Name)
	}

	return workersName(b.c.Metadata.Name)
}

func (b *builder) nodesOf(role profile.Role) []profile.Node {
	if role == profile.RoleControlPlane {
		return b.c.ControlPlanes()
	}

	return b.c.Workers()
}

// talosSpec is a TalosConfig spec for a role: its patches, the contract, and the hostname
// CAPMOX gives the VM.
func (b *builder) talosSpec(ctx context.Context, role profile.Role) (map[string]any, error) {
	version, err := b.talosVersion()
	if err != nil {
		return nil, err
	}

	patches, err := b.rolePatches(ctx, role)
	if err != nil {
		return nil, err
	}

	generateType := "worker"
	if role == profile.RoleControlPlane {
		generateType = "controlplane"
	}

	spec := map[string]any{
		"generateType": generateType,
		"talosVersion": version,
		"hostname":     map[string]any{"source": "InfrastructureName"},
	}

	if len(patches) > 0 {
		spec["strategicPatches"] = patches
	}

	return spec, nil
}

// talosControlPlane is CACPPT's TalosControlPlane: every control plane, one rollout at a time.
func (b *builder) talosControlPlane(ctx context.Context) (Object, error) {
	spec, err := b.talosSpec(ctx, profile.RoleControlPlane)
	if err != nil {
		return Object{}, err
	}

	name := controlPlaneName(b.c.Metadata.Name)

	return Object{APIVersion: controlAPI, Kind: "TalosControlPlane", Metadata: b.meta(name), Spec: map[string]any{
		"version":  b.kubernetesVersion(),
		"replicas": len(b.c.ControlPlanes()),
		// CACPPT reads a corev1.ObjectReference here; its webhook would default the namespace.
		"infrastructureTemplate": map[string]any{"apiVersion": proxmoxAPI, "kind": "ProxmoxMachineTemplate", "name": name, "namespace": b.ns},
		"controlPlaneConfig":     map[string]any{"controlplane": spec},
		"rolloutStrategy":        map[string]any{"type": "RollingUpdate", "rollingUpdate": map[string]any{"maxSurge": 1}},
	}}, nil
}

// talosConfigTemplate is CABPT's TalosConfigTemplate for the workers.
func (b *builder) talosConfigTemplate(ctx context.Context) (Object, error) {
	spec, err := b.talosSpec(ctx, profile.RoleWorker)
	if err != nil {
		return Object{}, err
	}

	return Object{APIVersion: bootstrapAPI, Kind: "TalosConfigTemplate", Metadata: b.meta(workersName(b.c.Metadata.Name)),
		Spec: map[string]any{"template": map[string]any{"spec": spec}}}, nil
}

// machineDeployment is the workers' MachineDeployment, with the labels CAPI's webhook would add
// (a management cluster without the webhook, like a server-side check, needs them written).
func (b *builder) machineDeployment() Object {
	cluster, name := b.c.Metadata.Name, workersName(b.c.Metadata.Name)
	labels := map[string]any{ClusterNameLabel: cluster, deploymentLabel: name}

	return Object{APIVersion: clusterAPI, Kind: "MachineDeployment", Metadata: b.meta(name), Spec: map[string]any{
		"clusterName": cluster,
		"replicas":    len(b.c.Workers()),
		"selector":    map[string]any{"matchLabels": labels},
		"template": map[string]any{
			"metadata": map[string]any{"labels": labels},
			"spec": map[string]any{
				"clusterName":       cluster,
				"version":           b.kubernetesVersion(),
				"bootstrap":         map[string]any{"configRef": ref("bootstrap.cluster.x-k8s.io", "TalosConfigTemplate", name)},
				"infrastructureRef": ref("infrastructure.cluster.x-k8s.io", "ProxmoxMachineTemplate", name),
			},
		},
	}}
}

// lossesOfNodes reports what the profile pins per node: Cluster API's machines of one role are
// alike and get their address, MAC, VMID and host from the providers.
func (b *builder) lossesOfNodes() {
	c := b.c
	firsts := map[profile.Role]profile.Node{}

	for _, role := range []profile.Role{profile.RoleControlPlane, profile.RoleWorker} {
		if nodes := b.nodesOf(role); len(nodes) > 0 {
			firsts[role] = nodes[0]
		}
	}

	for i, n := range c.Nodes {
		field := func(f string) string { return fmt.Sprintf("nodes[%d].%s (%s)", i, f, n.Name) }
		first := firsts[n.Role]

		if n.MAC != "" && n.MAC != profile.DeriveMAC(c.Metadata.Name, n.Name) {
			// A MAC talforge derived serves only its own link selector, which CAPMOX's
			// network-config replaces; one the person gave may be keyed on elsewhere.
			b.lossy(field("mac"), "CAPMOX lets Proxmox choose a machine's MAC (its network devices carry no macaddr), so a DHCP reservation or a switch ACL keyed on %s no longer matches", n.MAC)
		}

		if n.VMID != 0 {
			b.lossy(field("vmid"), "a machine's VMID comes from the template's vmIDRange or PVE's next free id, not %d", n.VMID)
		}

		if n.PVENode != c.Proxmox.Node {
			b.lossy(field("pveNode"), "machines are spread over allowedNodes %v by CAPMOX's scheduler; none is pinned to %s", b.hosts(), n.PVENode)
		}

		if n.Cores != first.Cores || n.Memory != first.Memory || n.Disk != first.Disk || n.LonghornDisk != first.LonghornDisk {
			b.lossy(field("cores/memory/disk/longhornDisk"), "the machines of a role share one ProxmoxMachineTemplate, sized like %s", first.Name)
		}
	}

	b.out.Notes = append(b.out.Notes,
		"every machine gets the next free address of the ProxmoxCluster's pool (the profile's node IPs), not a given node's: install the in-cluster IPAM provider")

	if c.Proxmox.Template == 0 {
		b.out.Notes = append(b.out.Notes, fmt.Sprintf("CAPMOX clones a VM template: make one from %s (scsi0 on %s, net0 on %s%s) and tag it %s",
			b.r.Image.ISOURL(), c.Proxmox.Storage, c.Proxmox.Bridge, b.dataDiskNote(), b.templateTag()))
	} else if b.dataDiskNote() != "" {
		b.out.Notes = append(b.out.Notes, fmt.Sprintf("template %d must carry the Longhorn data disk%s: CAPMOX v0.9 adds no disks to a clone", c.Proxmox.Template, b.dataDiskNote()))
	}
}

// dataDiskNote describes the Longhorn data disk the template must carry ("" without one).
func (b *builder) dataDiskNote() string {
	for _, n := range b.c.Nodes {
		if n.HasLonghornDisk() {
			return fmt.Sprintf(", scsi1 of %s with serial=%s for Longhorn", n.LonghornDisk, profile.LonghornDiskSerial)
		}
	}

	return ""
}
