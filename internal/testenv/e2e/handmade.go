// A Talos-on-Proxmox cluster with Longhorn built by hand, the way a person does it without
// talforge: the fixture `talforge import` is tested on (issue 12).

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	factory "github.com/siderolabs/image-factory/pkg/schematic"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"

	"github.com/talforge/talforge/internal/testenv/pvesim"
)

// HandMadeNode is one VM of a hand-made cluster as the person created it in the PVE UI.
type HandMadeNode struct {
	// Name is the VM's name and the node's hostname (and Kubernetes Node name).
	Name string
	// IP is the node's static address (a loopback address in tests, e.g. 127.0.81.11).
	IP string
	// MAC is net0's hardware address (PVE writes it in upper case, e.g. BC:24:11:0A:00:11).
	MAC string
	// VMID is the VM's ID.
	VMID int
	// PVENode is the PVE node the VM lives on (default: the emulator's first node).
	PVENode string
	// Cores (default 2) and Memory in MiB (default 4096).
	Cores, Memory int
	// Disk is the system disk's size (default "32G"), scsi0 on local-lvm.
	Disk string
	// DataDisk, when set, is a second disk (scsi1) for Longhorn, e.g. "100G": the config mounts
	// it at HandMadeDataMount. Without it Longhorn keeps its replicas on the system disk.
	DataDisk string
	// Tags are the person's own VM tags, e.g. {"homelab"} (never a talforge tag).
	Tags []string
	// GuestAgent enables the QEMU guest agent in the VM config and makes the agent report
	// the node's address on its NIC (Talos with the qemu-guest-agent extension).
	GuestAgent bool
}

// HandMadeOptions describe a hand-made cluster.
type HandMadeOptions struct {
	// Name is the cluster name given to `talosctl gen config`, e.g. "homelab".
	Name string
	// TalosVersion is the Talos release the person installed (v1.10.x .. v1.14.x): the
	// config contract of the generated configs and the version the nodes report.
	TalosVersion string
	// KubernetesVersion defaults to what machinery's generate writes
	// (constants.DefaultKubernetesVersion).
	KubernetesVersion string
	// ControlPlanes and Workers are the nodes; the first control plane is bootstrapped.
	ControlPlanes, Workers []HandMadeNode
	// VIP is the control planes' shared address (machine.network.interfaces[].vip or a
	// Layer2VIPConfig) and the Kubernetes endpoint host; empty: the first control plane's IP.
	VIP string
	// Gateway defaults to .1 of the first control plane's network; PrefixLen to 24;
	// Nameservers to {Gateway}.
	Gateway     string
	PrefixLen   int
	Nameservers []string
	// CertSANs are extra names in the API and Talos certificates (e.g. "homelab.lan").
	CertSANs []string
	// KubeletExtraArgs default to {"rotate-server-certificates": "true"}; a non-nil empty map
	// means none.
	KubeletExtraArgs map[string]string
	// MultiDocNetwork (Talos 1.12+) writes the network as LinkAliasConfig (by MAC),
	// LinkConfig, ResolverConfig and Layer2VIPConfig documents instead of machine.network.
	MultiDocNetwork bool
	// InstallImage defaults to ghcr.io/siderolabs/installer:<TalosVersion>, or with Schematic
	// to Image Factory's nocloud installer of it.
	InstallImage string
	// Schematic, when set, is the Image Factory schematic the nodes were installed from: they
	// report it (and its extensions) as nodes installed from the factory do.
	Schematic *factory.Schematic
	// Patches are more config patches for every node (strategic merge YAML), applied last.
	Patches []string
	// Foreign are VMs beside the cluster that belong to nobody (never to be touched).
	Foreign []pvesim.SeedVM
	// Longhorn, when set, is installed with Helm and given claims and backups.
	Longhorn *HandMadeLonghorn
}

// HandMade is a running hand-made cluster.
type HandMade struct {
	// Talosconfig is the admin talosconfig `talosctl gen config` wrote, endpoints = the
	// control planes' IPs (Talos' default port: give the Env's TalosPort to clients).
	Talosconfig []byte
	// Kubeconfig is what the Kubeconfig RPC returned.
	Kubeconfig []byte
	// Configs are the machine configs applied, by node name.
	Configs map[string][]byte
	// Nodes are the cluster's nodes, control planes first, with defaults filled in.
	Nodes []HandMadeNode
	// Bundle is the secrets bundle the configs were generated from.
	Bundle *secrets.Bundle
	// Volumes are the Longhorn volumes of the claims, by "namespace/name".
	Volumes map[string]string
	// Backups are the backups taken, in the order of HandMadeLonghorn.Backups.
	Backups []HandMadeBackupResult
}

// handMadeBoot is what the Env needs to boot a hand-made VM's Talos node: its address (a
// hand-made VM has no cloud-init ipconfig0) and the Talos version it runs.
type handMadeBoot struct {
	ip, talosVersion string
}

// HandMade builds a hand-made cluster in the Env, step by step as a person does: VMs created
// in PVE (no talforge tags) and booted from the Talos ISO, configs from machinery's generate
// with their own patches applied in maintenance mode, etcd bootstrapped on the first control
// plane, the kubeconfig fetched; then Longhorn with `helm install` and plain values, its
// credential Secret, RecurringJobs and StorageClasses applied by hand, claims bound and
// backups taken. The Env's PVE request log stays empty: nothing here goes through the PVE
// API. It fails the test on any error.
func (e *Env) HandMade(t testing.TB, o HandMadeOptions) *HandMade {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	h, err := e.handMade(ctx, &o)
	if err != nil {
		t.Fatalf("e2e: hand-made cluster %s: %v", o.Name, err)
	}
	return h
}

func (e *Env) handMade(ctx context.Context, o *HandMadeOptions) (*HandMade, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if o.Schematic != nil {
		if _, err := e.etcd.RegisterSchematic(*o.Schematic); err != nil {
			return nil, fmt.Errorf("schematic: %w", err)
		}
	}
	gen, err := generateHandMade(o)
	if err != nil {
		return nil, err
	}
	talosconfig, err := gen.talosconfig.Bytes()
	if err != nil {
		return nil, fmt.Errorf("talosconfig: %w", err)
	}
	h := &HandMade{Talosconfig: talosconfig, Configs: gen.configs, Bundle: gen.bundle,
		Nodes: append(append([]HandMadeNode(nil), o.ControlPlanes...), o.Workers...), Volumes: map[string]string{}}

	// The VMs, created by hand and started from the ISO: the Env boots a maintenance-mode
	// node for each on its address.
	e.mu.Lock()
	if e.handMadeBoots == nil {
		e.handMadeBoots = map[int]handMadeBoot{}
	}
	for _, n := range h.Nodes {
		e.handMadeBoots[n.VMID] = handMadeBoot{ip: n.IP, talosVersion: o.TalosVersion}
	}
	e.mu.Unlock()
	seeds := make([]pvesim.SeedVM, 0, len(h.Nodes)+len(o.Foreign))
	for _, n := range h.Nodes {
		seeds = append(seeds, n.seedVM(o.PrefixLen))
	}
	e.PVE.Seed(append(seeds, o.Foreign...)...)

	if err := e.handMadeTalos(ctx, o, h, gen); err != nil {
		return nil, err
	}
	if o.Longhorn != nil {
		if err := e.handMadeLonghorn(ctx, o.Longhorn, h); err != nil {
			return nil, fmt.Errorf("longhorn: %w", err)
		}
	}
	return h, nil
}

func (o *HandMadeOptions) defaults() error {
	if o.Name == "" || o.TalosVersion == "" || len(o.ControlPlanes) == 0 {
		return errors.New("a name, a Talos version and a control plane are required")
	}
	if o.KubernetesVersion == "" {
		o.KubernetesVersion = defaultKubernetesVersion
	}
	if o.PrefixLen == 0 {
		o.PrefixLen = 24
	}
	if o.Gateway == "" {
		addr, err := netip.ParseAddr(o.ControlPlanes[0].IP)
		if err != nil {
			return fmt.Errorf("control plane address: %w", err)
		}
		o.Gateway = netip.PrefixFrom(addr, o.PrefixLen).Masked().Addr().Next().String()
	}
	if len(o.Nameservers) == 0 {
		o.Nameservers = []string{o.Gateway}
	}
	if o.KubeletExtraArgs == nil {
		o.KubeletExtraArgs = map[string]string{"rotate-server-certificates": "true"}
	}
	if o.Schematic != nil && o.InstallImage == "" {
		id, err := o.Schematic.ID()
		if err != nil {
			return fmt.Errorf("schematic: %w", err)
		}
		o.InstallImage = "factory.talos.dev/nocloud-installer/" + id + ":" + o.TalosVersion
	}
	if o.InstallImage == "" {
		o.InstallImage = "ghcr.io/siderolabs/installer:" + o.TalosVersion
	}
	seen := map[int]bool{}
	for _, nodes := range [][]HandMadeNode{o.ControlPlanes, o.Workers} {
		for i := range nodes {
			n := &nodes[i]
			if n.Name == "" || n.IP == "" || n.MAC == "" || n.VMID == 0 {
				return fmt.Errorf("node %+v: Name, IP, MAC and VMID are required", *n)
			}
			if seen[n.VMID] {
				return fmt.Errorf("VMID %d used twice", n.VMID)
			}
			seen[n.VMID] = true
			n.Cores = cmpOr(n.Cores, 2)
			n.Memory = cmpOr(n.Memory, 4096)
			if n.Disk == "" {
				n.Disk = "32G"
			}
		}
	}
	return nil
}

func cmpOr(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// seedVM is the VM as the PVE UI's "Create VM" wizard leaves it for a Talos guest: SCSI
// disks on virtio-scsi-single with iothread, virtio NIC on vmbr0 with the firewall box
// ticked, the Talos ISO in ide2, no cloud-init drive and no ipconfig0.
func (n HandMadeNode) seedVM(prefixLen int) pvesim.SeedVM {
	cfg := map[string]string{
		"name": n.Name, "cores": strconv.Itoa(n.Cores), "memory": strconv.Itoa(n.Memory), "sockets": "1",
		"cpu": "x86-64-v2-AES", "ostype": "l26", "numa": "0", "scsihw": "virtio-scsi-single",
		"net0":  "virtio=" + strings.ToUpper(n.MAC) + ",bridge=vmbr0,firewall=1",
		"scsi0": fmt.Sprintf("local-lvm:vm-%d-disk-0,iothread=1,size=%s", n.VMID, n.Disk),
		"ide2":  "local:iso/metal-amd64.iso,media=cdrom",
		"boot":  "order=scsi0;ide2;net0",
	}
	if n.DataDisk != "" {
		cfg["scsi1"] = fmt.Sprintf("local-lvm:vm-%d-disk-1,iothread=1,size=%s", n.VMID, n.DataDisk)
	}
	if len(n.Tags) > 0 {
		cfg["tags"] = strings.Join(n.Tags, ";")
	}
	sv := pvesim.SeedVM{ID: n.VMID, Node: n.PVENode, Config: cfg, Running: true}
	if n.GuestAgent {
		cfg["agent"] = "1"
		// guest-network-get-interfaces lists lo too; the link name is Talos' for net0.
		sv.Agent = []pvesim.AgentInterface{
			{Name: "lo", MAC: "00:00:00:00:00:00", Addrs: []string{"127.0.0.1/8", "::1/128"}},
			{Name: handMadeLink, MAC: strings.ToLower(n.MAC), Addrs: []string{n.IP + "/" + strconv.Itoa(prefixLen)}},
		}
	}
	return sv
}

// handMadeBootLocked is the address and Talos version of a hand-made VM's node (ok false
// for any other VM).
func (e *Env) handMadeBootLocked(vmid int) (handMadeBoot, bool) {
	b, ok := e.handMadeBoots[vmid]
	return b, ok
}
