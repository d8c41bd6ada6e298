// The hand-made cluster's machine configs: what a person gets from `talosctl gen secrets` +
// `talosctl gen config` (machinery's generate package, for the Talos version they installed)
// and their own patches, never talforge's pkg/machineconfig.

package e2e

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/types/k8s"
	"github.com/siderolabs/talos/pkg/machinery/config/types/network"
	"github.com/siderolabs/talos/pkg/machinery/constants"
)

// handMadeLink is the name of the VM's virtio NIC in a Talos guest on Proxmox (predictable
// name of the first PCI slot PVE gives net0); the multi-doc network config aliases it.
const handMadeLink = "ens18"

// handMadeConfigs are the generated secrets, the machine config of every node (by name) and
// the admin talosconfig.
type handMadeConfigs struct {
	bundle      *secrets.Bundle
	configs     map[string][]byte
	talosconfig *clientconfig.Config
}

// generateHandMade renders every node's config the way `talosctl gen config` does (generate
// .NewInput with the version contract of o.TalosVersion, machinery
// config/generate/generate.go), then applies the person's patches with configpatcher, as
// `talosctl gen config --config-patch` and `talosctl machineconfig patch` do.
func generateHandMade(o *HandMadeOptions) (*handMadeConfigs, error) {
	contract, err := config.ParseContractFromVersion(o.TalosVersion)
	if err != nil {
		return nil, fmt.Errorf("talos version %s: %w", o.TalosVersion, err)
	}
	if o.MultiDocNetwork && !contract.MultidocNetworkConfigSupported() {
		return nil, fmt.Errorf("talos %s: multi-document network config needs Talos 1.12 or later", o.TalosVersion)
	}
	bundle, err := secrets.NewBundle(secrets.NewFixedClock(time.Now()), contract)
	if err != nil {
		return nil, fmt.Errorf("secrets bundle: %w", err)
	}
	var cpIPs []string
	for _, n := range o.ControlPlanes {
		cpIPs = append(cpIPs, n.IP)
	}
	endpointHost := cpIPs[0]
	if o.VIP != "" {
		endpointHost = o.VIP
	}
	in, err := generate.NewInput(o.Name, "https://"+endpointHost+":6443", o.KubernetesVersion,
		generate.WithVersionContract(contract),
		generate.WithSecretsBundle(bundle),
		generate.WithInstallDisk("/dev/sda"),
		generate.WithInstallImage(o.InstallImage),
		generate.WithAdditionalSubjectAltNames(o.CertSANs),
		generate.WithEndpointList(cpIPs),
	)
	if err != nil {
		return nil, fmt.Errorf("generate input: %w", err)
	}
	talosconfig, err := in.Talosconfig()
	if err != nil {
		return nil, fmt.Errorf("talosconfig: %w", err)
	}

	out := &handMadeConfigs{bundle: bundle, configs: map[string][]byte{}, talosconfig: talosconfig}
	for _, role := range []struct {
		typ   machine.Type
		nodes []HandMadeNode
	}{{machine.TypeControlPlane, o.ControlPlanes}, {machine.TypeWorker, o.Workers}} {
		base, err := in.Config(role.typ)
		if err != nil {
			return nil, fmt.Errorf("generate %s config: %w", role.typ, err)
		}
		for _, n := range role.nodes {
			patches, err := handMadePatches(o, n, role.typ == machine.TypeControlPlane, base)
			if err != nil {
				return nil, fmt.Errorf("node %s: %w", n.Name, err)
			}
			raw, err := applyPatches(base, patches)
			if err != nil {
				return nil, fmt.Errorf("node %s: %w", n.Name, err)
			}
			out.configs[n.Name] = raw
		}
	}
	return out, nil
}

func applyPatches(base config.Provider, texts []string) ([]byte, error) {
	patches, err := configpatcher.LoadPatches(texts)
	if err != nil {
		return nil, fmt.Errorf("load patches: %w", err)
	}
	res, err := configpatcher.Apply(configpatcher.WithConfig(base), patches)
	if err != nil {
		return nil, fmt.Errorf("apply patches: %w", err)
	}
	cfg, err := res.Config()
	if err != nil {
		return nil, fmt.Errorf("patched config: %w", err)
	}
	// Bytes keeps the documentation comments, like the file talosctl writes.
	return cfg.Bytes()
}

// handMadePatches are one node's patches as a person writes them after reading the
// generated file: the network by MAC (deviceSelector.hardwareAddr in machine.network, or
// LinkAliasConfig + LinkConfig + Layer2VIPConfig + ResolverConfig from 1.12), the hostname,
// the kubelet's extra args, the data disk for Longhorn and their own extra patches.
func handMadePatches(o *HandMadeOptions, n HandMadeNode, controlPlane bool, base config.Provider) ([]string, error) {
	prefix, err := netip.ParsePrefix(fmt.Sprintf("%s/%d", n.IP, o.PrefixLen))
	if err != nil {
		return nil, fmt.Errorf("address %s/%d: %w", n.IP, o.PrefixLen, err)
	}
	mac := strings.ToLower(n.MAC)
	var patches []string
	var b strings.Builder

	// Hostname: a config generated for 1.12+ holds `HostnameConfig{auto: stable}`, which the
	// person switches off for their own name (network/hostname.go: hostname needs auto off);
	// older ones take machine.network.hostname.
	// Nameservers: a config generated for 1.14 holds a ResolverConfig (hostDNS), and Talos
	// refuses nameservers in both places (network/resolver.go V1Alpha1ConflictValidate).
	hostnameDoc, resolverDoc, kubeletDoc := false, false, false
	for _, d := range base.Documents() {
		switch d.Kind() {
		case k8s.KubeletConfig:
			kubeletDoc = true
		case network.HostnameKind:
			hostnameDoc = true
		case network.ResolverKind:
			resolverDoc = true
		}
	}
	resolverPatch := "apiVersion: v1alpha1\nkind: ResolverConfig\nnameservers:\n"
	for _, ns := range o.Nameservers {
		resolverPatch += "  - address: " + ns + "\n"
	}

	if o.MultiDocNetwork {
		fmt.Fprintf(&b, "apiVersion: v1alpha1\nkind: LinkAliasConfig\nname: net0\nselector:\n  match: mac(link.permanent_addr) == %q\n", mac)
		fmt.Fprintf(&b, "---\napiVersion: v1alpha1\nkind: LinkConfig\nname: net0\nup: true\naddresses:\n  - address: %s\nroutes:\n  - gateway: %s\n", prefix, o.Gateway)
		if controlPlane && o.VIP != "" {
			fmt.Fprintf(&b, "---\napiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: %s\nlink: net0\n", o.VIP)
		}
	} else {
		b.WriteString("machine:\n  network:\n")
		if !hostnameDoc {
			fmt.Fprintf(&b, "    hostname: %s\n", n.Name)
		}
		if !resolverDoc {
			b.WriteString("    nameservers:\n")
			for _, ns := range o.Nameservers {
				fmt.Fprintf(&b, "      - %s\n", ns)
			}
		}
		fmt.Fprintf(&b, "    interfaces:\n      - deviceSelector:\n          hardwareAddr: %q\n        dhcp: false\n        addresses:\n          - %s\n        routes:\n          - network: 0.0.0.0/0\n            gateway: %s\n", mac, prefix, o.Gateway)
		if controlPlane && o.VIP != "" {
			fmt.Fprintf(&b, "        vip:\n          ip: %s\n", o.VIP)
		}
	}
	patches = append(patches, b.String())
	if o.MultiDocNetwork || resolverDoc {
		patches = append(patches, resolverPatch)
	}
	if hostnameDoc {
		patches = append(patches, fmt.Sprintf("apiVersion: v1alpha1\nkind: HostnameConfig\nauto: \"off\"\nhostname: %s\n", n.Name))
	} else if o.MultiDocNetwork {
		patches = append(patches, fmt.Sprintf("machine:\n  network:\n    hostname: %s\n", n.Name))
	}

	if len(o.KubeletExtraArgs) > 0 {
		// From the 1.14 contract the kubelet lives in a KubeletConfig document
		// (contract.MultidocKubernetesConfigSupported, generate/init.go).
		b.Reset()
		indent := "  "
		if kubeletDoc {
			b.WriteString("apiVersion: v1alpha1\nkind: KubeletConfig\nextraArgs:\n")
		} else {
			b.WriteString("machine:\n  kubelet:\n    extraArgs:\n")
			indent = "      "
		}
		for _, k := range slices.Sorted(maps.Keys(o.KubeletExtraArgs)) {
			fmt.Fprintf(&b, "%s%s: %q\n", indent, k, o.KubeletExtraArgs[k])
		}
		patches = append(patches, b.String())
	}

	if n.DataDisk != "" {
		// Longhorn's data on a disk of its own, mounted under /var/mnt as the Longhorn docs for
		// Talos suggest (machine.disks; the kubelet extraMounts they also ask for are left to
		// Patches).
		patches = append(patches, "machine:\n  disks:\n    - device: /dev/sdb\n      partitions:\n        - mountpoint: "+HandMadeDataMount+"\n")
	}
	return append(patches, o.Patches...), nil
}

// HandMadeDataMount is where a hand-made node with a DataDisk mounts it (machine.disks), the
// path the person then gives Longhorn as defaultSettings.defaultDataPath.
const HandMadeDataMount = "/var/mnt/longhorn"

// defaultKubernetesVersion is what `talosctl gen config` of machinery's version writes.
const defaultKubernetesVersion = constants.DefaultKubernetesVersion
