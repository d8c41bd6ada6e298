package profile

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/compatibility"
)

var (
	// Longhorn webhook rules (longhorn-manager util.ValidateName, types.NameMaximumLength).
	recurringJobNameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]+$`)
	recurringJobGroupRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)
	extensionRE         = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9._-]*$`)
	// PVE identifiers (pve-node, pve-storage-id, bridge names).
	pveIDRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]*$`)
	// s3://bucket@region/[path/] (Longhorn backupstore s3 URL form with region).
	s3TargetRE = regexp.MustCompile(`^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])@([a-z0-9-]+)/(.*)$`)
)

// Recurring job tasks Longhorn accepts (longhorn-manager types.RecurringJobType).
var recurringJobTasks = []string{"backup", "backup-force-create", "snapshot", "snapshot-force-create", "snapshot-cleanup", "snapshot-delete", "filesystem-trim", "system-backup"}

const (
	maxRecurringJobName = 40  // longhorn-manager types.NameMaximumLength
	maxRecurringRetain  = 100 // default recurring-job-max-retention
	minTalosMemoryMiB   = 2048
)

// normalize rewrites values whose spelling varies but whose meaning does not.
func (c *Cluster) normalize() {
	c.Talos.Version = withV(c.Talos.Version)
	c.Talos.Kubernetes = withV(c.Talos.Kubernetes)

	for i := range c.Nodes {
		c.Nodes[i].MAC = strings.ToLower(c.Nodes[i].MAC)
	}

	if c.Longhorn != nil {
		c.Longhorn.Version = withoutV(c.Longhorn.Version)
	}
}

// validate checks the defaulted profile and returns every error and warning. Once ctx is done
// it returns early, with what it found so far; the caller checks ctx.
func (c *Cluster) validate(ctx context.Context) (errs, warns Problems) {
	e := &problems{src: c.src}
	w := &problems{src: c.src}

	c.validateHeader(e)
	c.validateVersions(e)
	c.validateTalos(e)
	prefix := c.validateNetwork(e)
	c.validateNodes(ctx, e, w, prefix)
	c.validateProxmox(ctx, e, w)
	c.validateFiles(ctx, e)
	c.validateLonghorn(ctx, e, w)

	return e.list, w.list
}

func (c *Cluster) validateHeader(e *problems) {
	if c.APIVersion != APIVersion {
		e.add("apiVersion", "set apiVersion: "+APIVersion, "expected %q, got %q", APIVersion, c.APIVersion)
	}

	if c.Kind != Kind {
		e.add("kind", "set kind: "+Kind, "expected %q, got %q", Kind, c.Kind)
	}

	switch name := c.Metadata.Name; {
	case name == "":
		e.add("metadata.name", "name the cluster, e.g. metadata: {name: homelab}", "is required")
	case !ValidClusterName(name):
		e.add("metadata.name", "use lowercase letters, digits and '-', at most 63 characters", "%q is not a DNS label", name)
	}
}

func (c *Cluster) validateVersions(e *problems) {
	tv, err := parseVersion(c.Talos.Version)

	switch {
	case err != nil:
		e.add("talos.version", "write it like "+DefaultTalosVersion, "%v", err)
	case !supportedTalos.contains(tv):
		e.add("talos.version", "use a Talos release from "+supportedTalos.String(), "Talos %s is not supported (talforge supports the %s config contracts)", c.Talos.Version, supportedTalos)
	default:
		if c.Talos.Kubernetes == "" {
			break
		}

		if _, err := parseVersion(c.Talos.Kubernetes); err != nil {
			e.add("talos.kubernetes", "write it like "+DefaultKubernetesVersion(c.Talos.Version), "%v", err)

			break
		}

		k8s, kerr := compatibility.ParseKubernetesVersion(c.Talos.Kubernetes)
		talos, terr := compatibility.ParseTalosVersion(&machine.VersionInfo{Tag: c.Talos.Version})

		if kerr == nil && terr == nil {
			if err := k8s.SupportedWith(talos); err != nil {
				e.add("talos.kubernetes", "use a Kubernetes version Talos "+tv.MajorMinor()+" supports, e.g. "+DefaultKubernetesVersion(c.Talos.Version), "%v", err)
			}
		}
	}

	if l := c.Longhorn; l != nil {
		lv, err := parseVersion(l.Version)

		switch {
		case err != nil:
			e.add("longhorn.version", "write it like "+DefaultLonghornVersion, "%v", err)
		case !longhornRange().contains(lv):
			e.add("longhorn.version", "use a Longhorn chart from "+SupportedLonghorn(), "Longhorn %s is not supported", l.Version)
		}
	}
}

func (c *Cluster) validateTalos(e *problems) {
	seen := map[string]bool{}

	for i, ext := range c.Talos.Extensions {
		f := fmt.Sprintf("talos.extensions[%d]", i)

		switch {
		case !extensionRE.MatchString(ext):
			e.add(f, "official extensions are named like siderolabs/qemu-guest-agent", "%q is not an extension name", ext)
		case seen[ext]:
			e.add(f, "list each extension once", "%q is listed twice", ext)
		}

		seen[ext] = true
	}

	if ep := c.Talos.Endpoint; ep != "" {
		u, err := url.Parse(ep)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.Path != "" {
			e.add("talos.endpoint", "write it like https://k8s.lan:6443", "%q is not an https://host:port URL", ep)
		}
	}

	if !strings.HasPrefix(c.Talos.InstallDisk, "/dev/") {
		e.add("talos.installDisk", "name a device like /dev/sda", "%q is not a device path", c.Talos.InstallDisk)
	}

	if strings.Contains(c.Talos.ImageFactory, "/") {
		e.add("talos.imageFactory", "give only the host, e.g. factory.talos.dev", "%q is not a host name", c.Talos.ImageFactory)
	}
}

// validateNetwork checks network.* and returns the parsed prefix (invalid if the CIDR is bad).
func (c *Cluster) validateNetwork(e *problems) netip.Prefix {
	n := c.Network

	prefix, err := netip.ParsePrefix(n.CIDR)

	switch {
	case n.CIDR == "":
		e.add("network.cidr", "set the node subnet, e.g. cidr: 192.168.1.0/24", "is required")
	case err != nil:
		e.add("network.cidr", "write it like 192.168.1.0/24", "%q is not a CIDR", n.CIDR)
	case !prefix.Addr().Is4():
		e.add("network.cidr", "use an IPv4 subnet", "%q is not IPv4 (talforge configures static IPv4 only)", n.CIDR)

		prefix = netip.Prefix{}
	case prefix.Masked() != prefix:
		e.add("network.cidr", fmt.Sprintf("write the network address: %s", prefix.Masked()), "%q has host bits set", n.CIDR)
	}

	c.checkAddr(e, "network.gateway", n.Gateway, prefix, true)

	if n.VIP != "" {
		c.checkAddr(e, "network.vip", n.VIP, prefix, true)

		if n.VIP == n.Gateway {
			e.add("network.vip", "pick an unused address for the VIP", "%s is the gateway", n.VIP)
		}
	}

	for i, ns := range n.Nameservers {
		if a, err := netip.ParseAddr(ns); err != nil || !a.Is4() {
			e.add(fmt.Sprintf("network.nameservers[%d]", i), "write an IPv4 address like 1.1.1.1", "%q is not an IPv4 address", ns)
		}
	}

	for i, d := range n.SearchDomains {
		if !isDNSSubdomain(d) {
			e.add(fmt.Sprintf("network.searchDomains[%d]", i), "write a domain like lan or home.example.com", "%q is not a DNS domain", d)
		}
	}

	if n.MTU != 0 && (n.MTU < 576 || n.MTU > 9216) {
		e.add("network.mtu", "use 1500, or up to 9000 for jumbo frames", "%d is outside 576-9216", n.MTU)
	}

	return prefix
}

// checkAddr reports an address that does not parse or lies outside the node subnet.
func (c *Cluster) checkAddr(e *problems, field, addr string, prefix netip.Prefix, required bool) {
	if addr == "" {
		if required {
			e.add(field, "set an IPv4 address inside network.cidr", "is required")
		}

		return
	}

	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is4() {
		e.add(field, "write an IPv4 address like 192.168.1.10", "%q is not an IPv4 address", addr)

		return
	}

	if !prefix.IsValid() {
		return
	}

	if !prefix.Contains(a) {
		e.add(field, fmt.Sprintf("use an address inside %s or widen network.cidr", prefix), "%s is outside network.cidr %s", addr, prefix)

		return
	}

	if prefix.Bits() < 31 && (a == prefix.Addr() || a == broadcast(prefix)) {
		e.add(field, "use a host address", "%s is the network or broadcast address of %s", addr, prefix)
	}
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	hostBits := 32 - p.Bits()

	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= 1<<hostBits - 1

	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (c *Cluster) validateNodes(ctx context.Context, e, w *problems, prefix netip.Prefix) {
	if len(c.Nodes) == 0 {
		e.add("nodes", "add at least one node with role: controlplane", "is empty")

		return
	}

	names, ips, macs, vmids := map[string]int{}, map[string]int{}, map[string]int{}, map[int]int{}
	dup := func(field, what, val string, seen map[string]int, i int) {
		if j, ok := seen[val]; ok {
			e.add(field, "give every node its own "+what, "%s %s is also used by nodes[%d]", what, val, j)

			return
		}

		seen[val] = i
	}

	for i, n := range c.Nodes {
		if ctx.Err() != nil {
			return
		}

		f := func(name string) string { return fmt.Sprintf("nodes[%d].%s", i, name) }

		switch {
		case n.Name == "":
			e.add(f("name"), "name the node, e.g. cp-1", "is required")
		case !isDNSLabel(n.Name):
			e.add(f("name"), "use lowercase letters, digits and '-', at most 63 characters", "%q is not a valid hostname (DNS label)", n.Name)
		default:
			dup(f("name"), "name", n.Name, names, i)
		}

		switch n.Role {
		case RoleControlPlane, RoleWorker:
		case "":
			e.add(f("role"), "set role: controlplane or role: worker", "is required")
		default:
			e.add(f("role"), "set role: controlplane or role: worker", "expected controlplane or worker, got %q", n.Role)
		}

		before := len(e.list)
		c.checkAddr(e, f("ip"), n.IP, prefix, true)

		if len(e.list) == before && n.IP != "" {
			dup(f("ip"), "IP", n.IP, ips, i)

			if n.IP == c.Network.Gateway {
				e.add(f("ip"), "pick an address that is not the gateway", "%s is the gateway", n.IP)
			}

			if n.IP == c.Network.VIP {
				e.add("network.vip", "pick a VIP that no node uses", "%s is also nodes[%d].ip", n.IP, i)
			}
		}

		_, explicitMAC := c.src.pos[f("mac")]

		switch mac, err := net.ParseMAC(n.MAC); {
		case err != nil || len(mac) != 6:
			e.add(f("mac"), "write it like 02:ab:cd:ef:01:23, or leave it out to let talforge derive one", "%q is not a MAC address", n.MAC)
		case mac[0]&1 == 1:
			e.add(f("mac"), "the first octet must be even", "%s is a multicast address", n.MAC)
		case !explicitMAC && names[n.Name] != i:
			// Derived from a repeated name: the name is the mistake, already reported.
		default:
			dup(f("mac"), "MAC", n.MAC, macs, i)
		}

		if n.VMID != 0 {
			if n.VMID < 100 || n.VMID > 999999999 {
				e.add(f("vmid"), "Proxmox VMIDs are 100-999999999", "%d is out of range", n.VMID)
			} else if j, ok := vmids[n.VMID]; ok {
				e.add(f("vmid"), "give every node its own VMID, or leave it out to let Proxmox allocate one", "VMID %d is also used by nodes[%d]", n.VMID, j)
			} else {
				vmids[n.VMID] = i
			}
		}

		if !strings.HasPrefix(n.InstallDisk, "/dev/") {
			e.add(f("installDisk"), "name a device like /dev/sda", "%q is not a device path", n.InstallDisk)
		}

		if n.LonghornDisk != "" {
			field := f("longhornDisk")
			if _, set := c.src.pos[field]; !set && c.src != nil {
				if _, def := c.src.pos["proxmox.defaults.longhornDisk"]; def {
					field = "proxmox.defaults.longhornDisk"
				}
			}

			if _, err := SizeGiB(n.LonghornDisk); err != nil {
				e.add(field, "write a size in GiB like 100G", "%v", err)
			}
		}
	}

	switch cps := len(c.ControlPlanes()); {
	case cps == 0:
		e.add("nodes", "give at least one node role: controlplane", "there is no control-plane node")
	case cps%2 == 0:
		w.add("nodes", "use 1, 3 or 5 control planes", "%d control planes: an even number adds no etcd fault tolerance over %d", cps, cps-1)
	}
}

func (c *Cluster) validateProxmox(ctx context.Context, e, w *problems) {
	p := c.Proxmox
	if p == nil {
		return
	}

	if u, err := url.Parse(p.Endpoint); p.Endpoint == "" {
		e.add("proxmox.endpoint", "set it like https://pve.lan:8006/api2/json", "is required")
	} else if err != nil || u.Scheme != "https" || u.Host == "" {
		e.add("proxmox.endpoint", "set it like https://pve.lan:8006/api2/json", "%q is not an https URL", p.Endpoint)
	}

	for field, v := range map[string]string{"proxmox.node": p.Node, "proxmox.storage": p.Storage, "proxmox.isoStorage": p.ISOStorage, "proxmox.bridge": p.Bridge} {
		switch {
		case v == "":
			e.add(field, "name it as Proxmox shows it", "is required")
		case !pveIDRE.MatchString(v):
			e.add(field, "Proxmox IDs start with a letter and use letters, digits, '.', '_' and '-'", "%q is not a valid Proxmox ID", v)
		}
	}

	if p.VLAN != 0 && (p.VLAN < 1 || p.VLAN > 4094) {
		e.add("proxmox.vlan", "use 1-4094, or leave it out for untagged", "%d is not a VLAN tag", p.VLAN)
	}

	if CPUCannotBootTalos(p.CPU) {
		e.add("proxmox.cpu", "use cpu: host (or x86-64-v2-AES to allow live migration)", "CPU type %q lacks the x86-64-v2 instructions Talos needs; the VM would boot-loop", p.CPU)
	}

	if p.Template != 0 && (p.Template < 100 || p.Template > 999999999) {
		e.add("proxmox.template", "Proxmox VMIDs are 100-999999999", "%d is out of range", p.Template)
	}

	for i, n := range c.Nodes {
		if ctx.Err() != nil {
			return
		}

		// A value the node does not set itself comes from proxmox.defaults: blame that.
		f := func(name string) string {
			own := fmt.Sprintf("nodes[%d].%s", i, name)
			if _, set := c.src.pos[own]; set || c.src == nil {
				return own
			}

			if _, set := c.src.pos["proxmox.defaults."+name]; set {
				return "proxmox.defaults." + name
			}

			return own
		}

		if n.PVENode != "" && !pveIDRE.MatchString(n.PVENode) {
			e.add(f("pveNode"), "name the Proxmox host as Proxmox shows it", "%q is not a valid Proxmox node name", n.PVENode)
		}

		if n.Cores < 1 || n.Cores > 512 {
			e.add(f("cores"), "use 2 or more cores", "%d cores is out of range", n.Cores)
		}

		switch {
		case n.Memory < 1024:
			e.add(f("memory"), "give the node at least 2048 (MiB)", "%d MiB is below what Talos can run in", n.Memory)
		case n.Role == RoleControlPlane && n.Memory < minTalosMemoryMiB:
			w.add(f("memory"), "give control planes at least 2048 MiB (4096 recommended)", "%d MiB is below Talos' control-plane minimum", n.Memory)
		}

		if gib, err := SizeGiB(n.Disk); err != nil {
			e.add(f("disk"), "write a size in GiB like 40G", "%v", err)
		} else if gib < 10 {
			e.add(f("disk"), "give the OS disk at least 10G", "%dG is below Talos' minimum of 10 GiB", gib)
		}

	}
}

// validateFiles checks every file the profile names the way talforge will read it: inside the
// project root or externalDirs (symlinks followed), a regular file of at most MaxFileBytes, and
// for YAML, an alias expansion within MaxYAMLNodes. A file that passes here cannot make a later
// stage read something else or expand without bound.
func (c *Cluster) validateFiles(ctx context.Context, e *problems) {
	for i, d := range c.ExternalDirs {
		if fi, err := os.Stat(c.Resolve(d)); err != nil || !fi.IsDir() {
			e.add(fmt.Sprintf("externalDirs[%d]", i), "list existing directories, absolute or relative to the project root "+c.Root(), "%s is not a directory", c.Resolve(d))
		}
	}

	if p := c.Proxmox; p != nil {
		c.checkFile(e, "proxmox.tokenFile", p.TokenFile, sopsFile)
		c.checkFile(e, "proxmox.caFile", p.CAFile, pemFile)
	}

	if l := c.Longhorn; l != nil && l.Backup != nil && l.Backup.CredentialsFile != "" {
		c.checkFile(e, "longhorn.backup.credentialsFile", l.Backup.CredentialsFile, sopsFile)
	}

	check := func(field string, files []string) {
		for i, f := range files {
			if ctx.Err() != nil {
				return
			}

			c.checkFile(e, fmt.Sprintf("%s[%d]", field, i), f, patchFile)
		}
	}

	check("patches.all", c.Patches.All)
	check("patches.controlplane", c.Patches.ControlPlane)
	check("patches.worker", c.Patches.Worker)

	for _, name := range slices.Sorted(maps.Keys(c.Patches.Nodes)) {
		if _, ok := c.Node(name); !ok {
			e.add("patches.nodes."+name, "use a name from nodes[].name", "there is no node named %q", name)
		}

		check("patches.nodes."+name, c.Patches.Nodes[name])
	}
}

// fileKind is what a referenced file holds.
type fileKind int

const (
	pemFile   fileKind = iota // proxmox.caFile: read as is
	sopsFile                  // a SOPS-encrypted YAML file: its structure is plain YAML
	patchFile                 // a Talos patch: YAML or JSON, several documents allowed
)

// checkFile reports a referenced file that is missing, outside the project root, not a regular
// file, too large, or (YAML) expands too far. Whether a patch applies to a Talos config is
// checked when configs are generated, by machinery itself.
func (c *Cluster) checkFile(e *problems, field, path string, kind fileKind) {
	if path == "" {
		return
	}

	what := "file"
	if kind == patchFile {
		what = "patch"
	}

	data, err := c.ReadFile(path)

	var (
		outside *OutsideRootError
		limit   *LimitError
	)

	switch {
	case errors.As(err, &outside):
		e.add(field, outsideRootHint, "%s %s: %v", what, path, outside)

		return
	case errors.As(err, &limit):
		e.add(field, "keep each file under 1 MiB", "%s %v", what, limit)

		return
	case err != nil:
		e.add(field, "paths are relative to the project root "+c.Root(), "%s %s: %v", what, c.Resolve(path), unwrapPathError(err))

		return
	case kind == pemFile:
		return
	}

	err = CheckYAML(c.Resolve(path), data)

	switch {
	case errors.As(err, &limit):
		e.add(field, limitHint, "%s %v", what, limit)
	case err != nil && kind == patchFile:
		e.add(field, "a patch is a Talos strategic-merge YAML (may hold several documents) or a JSON6902 list", "patch %s is not valid YAML: %v", c.Resolve(path), strings.TrimPrefix(err.Error(), "yaml: "))
	}

	// A secret file that is not YAML is for sops to report when it decrypts it.
}

func (c *Cluster) validateLonghorn(ctx context.Context, e, w *problems) {
	l := c.Longhorn
	if l == nil {
		return
	}

	diskNodes := len(c.LonghornNodes())

	if diskNodes == 0 {
		e.add("longhorn", "give at least one node a longhornDisk (or set proxmox.defaults.longhornDisk)", "Longhorn is enabled but no node has a longhornDisk")
	}

	if l.ReplicaCount < 1 || l.ReplicaCount > 20 {
		e.add("longhorn.replicaCount", "use 1-20", "%d is out of range", l.ReplicaCount)
	} else if diskNodes > 0 && l.ReplicaCount > diskNodes {
		e.add("longhorn.replicaCount", fmt.Sprintf("use at most %d, or give more nodes a longhornDisk", diskNodes), "%d replicas but only %d node(s) have a Longhorn disk: volumes would stay degraded", l.ReplicaCount, diskNodes)
	}

	if u, err := url.Parse(l.RepoURL); err != nil || (u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "oci") || u.Host == "" {
		e.add("longhorn.repoURL", "use https://charts.longhorn.io or your mirror", "%q is not a chart repository URL", l.RepoURL)
	}

	jobs, groups := c.validateBackup(e)

	scNames := map[string]bool{DefaultVolumeStorageClass: true}

	for i, sc := range l.StorageClasses {
		f := func(name string) string { return fmt.Sprintf("longhorn.storageClasses[%d].%s", i, name) }

		switch {
		case !isDNSSubdomain(sc.Name):
			e.add(f("name"), "use lowercase letters, digits, '-' and '.'", "%q is not a valid StorageClass name", sc.Name)
		case scNames[sc.Name]:
			e.add(f("name"), "give each StorageClass its own name (longhorn is the chart's own)", "StorageClass %q is defined twice", sc.Name)
		}

		scNames[sc.Name] = true

		if sc.ReclaimPolicy != "Delete" && sc.ReclaimPolicy != "Retain" {
			e.add(f("reclaimPolicy"), "use Delete or Retain", "%q is not a reclaim policy", sc.ReclaimPolicy)
		}

		if sc.Replicas < 1 || (diskNodes > 0 && sc.Replicas > diskNodes) {
			e.add(f("replicas"), fmt.Sprintf("use 1-%d", max(diskNodes, 1)), "%d replicas but %d node(s) have a Longhorn disk", sc.Replicas, diskNodes)
		}

		c.checkJobRefs(e, f("recurringJobs"), sc.RecurringJobs, jobs, "job")
		c.checkJobRefs(e, f("recurringJobGroups"), sc.RecurringJobGroups, groups, "group")

		if !oneOf(sc.FSType, "ext4", "xfs") {
			e.add(f("fsType"), "use ext4 or xfs", "%q is not supported", sc.FSType)
		}

		if !oneOf(sc.DataLocality, "disabled", "best-effort", "strict-local") {
			e.add(f("dataLocality"), "use disabled, best-effort or strict-local", "%q is not a data locality", sc.DataLocality)
		} else if sc.DataLocality == "strict-local" && sc.Replicas != 1 {
			e.add(f("dataLocality"), "set replicas: 1 with strict-local", "strict-local needs exactly one replica")
		}
	}

	claims, volNames := map[string]bool{}, map[string]bool{}

	for i, v := range l.Volumes {
		if ctx.Err() != nil {
			return
		}

		f := func(name string) string { return fmt.Sprintf("longhorn.volumes[%d].%s", i, name) }

		if v.Name != "" {
			switch {
			case !isDNSLabel(v.Name):
				e.add(f("name"), "use lowercase letters, digits and '-', or leave name out and declare the volume by its claim", "%q is not a valid Longhorn volume name", v.Name)
			case volNames[v.Name]:
				e.add(f("name"), "give each volume its own name", "volume %q is declared twice", v.Name)
			}

			volNames[v.Name] = true
		}

		if !isDNSLabel(v.Namespace) {
			e.add(f("namespace"), "name the namespace of the claim", "%q is not a namespace name", v.Namespace)
		}

		switch {
		case v.Claim == "":
			e.add(f("claim"), "name the PersistentVolumeClaim that holds the data (namespace + claim); name: is only for a statically provisioned Longhorn volume", "a volume is declared by its claim")
		case !isDNSSubdomain(v.Claim):
			e.add(f("claim"), "use a valid PVC name", "%q is not a valid claim name", v.Claim)
		case claims[v.Namespace+"/"+v.Claim]:
			e.add(f("claim"), "declare each claim once", "claim %s/%s is declared twice", v.Namespace, v.Claim)
		}

		claims[v.Namespace+"/"+v.Claim] = true

		if _, err := ParseSize(strings.TrimSuffix(v.Size, "i")); err != nil || v.Size == "" {
			e.add(f("size"), "write it like 1Gi", "%q is not a size", v.Size)
		}

		if !scNames[v.StorageClass] {
			e.add(f("storageClass"), "use longhorn or a name from longhorn.storageClasses", "there is no StorageClass %q", v.StorageClass)
		}

		c.checkJobRefs(e, f("recurringJobs"), v.RecurringJobs, jobs, "job")
		c.checkJobRefs(e, f("recurringJobGroups"), v.RecurringJobGroups, groups, "group")
	}

	if _, ok := l.Values["deletingConfirmationFlag"]; ok {
		e.add("longhorn.values.deletingConfirmationFlag", "remove it: talforge never sets it", "deletingConfirmationFlag is the only guard against an uninstall deleting every volume")
	}

	if ds, ok := l.Values["defaultSettings"].(map[string]any); ok {
		if _, ok := ds["deletingConfirmationFlag"]; ok {
			e.add("longhorn.values.defaultSettings.deletingConfirmationFlag", "remove it: talforge never sets it", "with it set to true, `helm uninstall` deletes every Longhorn volume and its data")
		}

		for _, k := range []string{"backupTarget", "backupTargetCredentialSecret", "backupstorePollInterval"} {
			if _, ok := ds[k]; ok {
				e.add("longhorn.values.defaultSettings."+k, "use longhorn.backup (talforge renders it under defaultBackupStore)", "Longhorn ≥ 1.8 ignores defaultSettings.%s: the backup target moved to defaultBackupStore and the BackupTarget CR", k)
			}
		}
	}
}

// validateBackup checks longhorn.backup and returns the defined job names and groups.
func (c *Cluster) validateBackup(e *problems) (jobs, groups map[string]bool) {
	jobs, groups = map[string]bool{}, map[string]bool{"default": true}

	b := c.Longhorn.Backup
	if b == nil {
		return jobs, groups
	}

	switch m := s3TargetRE.FindStringSubmatch(b.Target); {
	case b.Target == "":
		e.add("longhorn.backup.target", "set it like s3://my-bucket@eu-central-1/", "is required")
	case m == nil:
		e.add("longhorn.backup.target", "write it like s3://my-bucket@eu-central-1/ or s3://my-bucket@eu-central-1/longhorn/", "%q is not of the form s3://bucket@region/[path/]", b.Target)
	case !strings.HasSuffix(b.Target, "/"):
		e.add("longhorn.backup.target", "add the trailing '/': "+b.Target+"/", "%q must end with '/' (Longhorn's backup store rejects it otherwise)", b.Target)
	case strings.ContainsAny(m[3], "$,"):
		e.add("longhorn.backup.target", "remove '$' and ',' from the path", "Longhorn rejects '$' and ',' in the backup path")
	}

	if b.CredentialsFile == "" {
		e.add("longhorn.backup.credentialsFile", "create it with `sops` (keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)", "is required")
	}

	if !isDNSSubdomain(b.CredentialSecret) {
		e.add("longhorn.backup.credentialSecret", "use a valid Secret name", "%q is not a valid Secret name", b.CredentialSecret)
	}

	if d, err := time.ParseDuration(b.PollInterval); err != nil || d < 0 || d%time.Second != 0 {
		e.add("longhorn.backup.pollInterval", "write a duration in whole seconds like 5m or 300s (0 disables polling)", "%q is not a duration", b.PollInterval)
	}

	for i, j := range b.RecurringJobs {
		f := func(name string) string { return fmt.Sprintf("longhorn.backup.recurringJobs[%d].%s", i, name) }

		switch {
		case j.Name == "":
			e.add(f("name"), "name the job, e.g. nightly-s3-backup", "is required")
		case len(j.Name) > maxRecurringJobName:
			e.add(f("name"), "shorten it", "%q is %d characters, Longhorn allows at most %d", j.Name, len(j.Name), maxRecurringJobName)
		case !recurringJobNameRE.MatchString(j.Name):
			e.add(f("name"), "use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit", "%q is not a valid RecurringJob name", j.Name)
		case jobs[j.Name]:
			e.add(f("name"), "give each job its own name", "job %q is defined twice", j.Name)
		}

		jobs[j.Name] = true

		if !oneOf(j.Task, recurringJobTasks...) {
			e.add(f("task"), "use one of "+strings.Join(recurringJobTasks, ", "), "%q is not a RecurringJob task", j.Task)
		}

		if err := validateCron(j.Cron); err != nil {
			e.add(f("cron"), `write 5 fields, e.g. "0 3 * * *" for 03:00 every day`, "%v", err)
		}

		if j.Retain < 0 || j.Retain > maxRecurringRetain {
			e.add(f("retain"), fmt.Sprintf("use 1-%d", maxRecurringRetain), "%d is out of range (Longhorn's recurring-job-max-retention is %d)", j.Retain, maxRecurringRetain)
		} else if j.Retain == 0 && oneOf(j.Task, "backup", "backup-force-create", "snapshot", "snapshot-force-create") {
			e.add(f("retain"), "set how many to keep, e.g. retain: 7", "is required for a %s job", j.Task)
		}

		if j.Concurrency < 1 {
			e.add(f("concurrency"), "use 1 or more", "%d is out of range", j.Concurrency)
		}

		for k, g := range j.Groups {
			if !recurringJobGroupRE.MatchString(g) {
				e.add(fmt.Sprintf("%s[%d]", f("groups"), k), "use letters, digits, '-', '_' and '.'", "%q is not a valid group name", g)
			}

			groups[g] = true
		}

		if oneOf(j.Task, "backup", "backup-force-create") {
			for k := range j.Parameters {
				if k != "full-backup-interval" {
					e.add(f("parameters."+k), "backup jobs take only full-backup-interval", "%q is not a backup job parameter", k)
				}
			}
		}
	}

	return jobs, groups
}

func (c *Cluster) checkJobRefs(e *problems, field string, refs []string, defined map[string]bool, kind string) {
	for i, r := range refs {
		if !defined[r] {
			e.add(fmt.Sprintf("%s[%d]", field, i), fmt.Sprintf("use a %s defined in longhorn.backup.recurringJobs", kind), "there is no recurring-job %s %q", kind, r)
		}
	}
}

func oneOf(s string, options ...string) bool {
	for _, o := range options {
		if s == o {
			return true
		}
	}

	return false
}
