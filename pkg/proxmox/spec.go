package proxmox

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/schematic"
)

// Disk slots of a node VM.
const (
	SlotOS        = "scsi0"
	SlotData      = "scsi1"
	SlotISO       = "ide0"
	SlotCloudInit = "ide2"
)

// VMSpec is the desired state of one node's VM.
type VMSpec struct {
	Node profile.Node
	// Name is the VM name (the node's hostname).
	Name string
	// PVENode is the Proxmox host.
	PVENode string
	// VMID is fixed by the profile, or 0 (allocated with /cluster/nextid).
	VMID int
	// Template is a VMID to full-clone instead of creating (0 = create).
	Template int
	// Config is the full VM configuration in PVE syntax, as sent on create.
	Config Params
	// OSDiskGiB and DataDiskGiB are the disk sizes (DataDiskGiB 0 = no Longhorn disk).
	OSDiskGiB, DataDiskGiB int
	// Storage is the VM disk storage.
	Storage string
	// Pool is the resource pool (create only).
	Pool string
}

// HasDataDisk reports whether the VM gets a Longhorn data disk.
func (s VMSpec) HasDataDisk() bool { return s.DataDiskGiB > 0 }

// ParkedName is the name of the holder VM that keeps this node's data disk.
func (s VMSpec) ParkedName() string { return ParkedName(s.Name) }

// ParkedName is the holder VM name for a node's kept data disk.
func ParkedName(node string) string { return node + "-parked" }

// BootImage is the ISO every node boots.
type BootImage struct {
	URL      string
	Filename string
	Storage  string
}

// VolID is the volume id of the ISO in its storage.
func (b BootImage) VolID() string { return b.Storage + ":iso/" + b.Filename }

// Desired computes the VM specs of a cluster from its profile and image schematic.
func Desired(c *profile.Cluster, img *schematic.Image) ([]VMSpec, BootImage, error) {
	p := c.Proxmox
	if p == nil {
		return nil, BootImage{}, fmt.Errorf("%s: proxmox: the profile has no proxmox section; nothing to provision", c.File())
	}

	boot := BootImage{URL: img.ISOURL(), Filename: img.ISOFileName(), Storage: p.ISOStorage}
	agent := img.HasExtension(schematic.QemuGuestAgent)

	specs := make([]VMSpec, 0, len(c.Nodes))

	for i, n := range c.Nodes {
		osGiB, err := profile.SizeGiB(n.Disk)
		if err != nil {
			return nil, boot, fmt.Errorf("%s: nodes[%d].disk: %w", c.File(), i, err)
		}

		dataGiB := 0
		if n.HasLonghornDisk() {
			if dataGiB, err = profile.SizeGiB(n.LonghornDisk); err != nil {
				return nil, boot, fmt.Errorf("%s: nodes[%d].longhornDisk: %w", c.File(), i, err)
			}
		}

		cfg := Params{
			"name":        n.Name,
			"ostype":      "l26",
			"cores":       strconv.Itoa(n.Cores),
			"sockets":     "1",
			"memory":      strconv.Itoa(n.Memory),
			"balloon":     "0",
			"cpu":         p.CPU,
			"scsihw":      "virtio-scsi-pci",
			SlotOS:        fmt.Sprintf("%s:%d,discard=on,ssd=1", p.Storage, osGiB),
			SlotISO:       boot.VolID() + ",media=cdrom",
			SlotCloudInit: p.Storage + ":cloudinit",
			"net0":        netValue(n.MAC, p.Bridge, p.VLAN),
			"ipconfig0":   fmt.Sprintf("ip=%s,gw=%s", c.NodeCIDR(n), c.Network.Gateway),
			"serial0":     "socket",
			// scsi0 first: an empty disk falls through to the ISO; once Talos is installed the
			// disk boots (the ISO would halt_if_installed).
			"boot":   "order=" + SlotOS + ";" + SlotISO,
			"onboot": "1",
			"tags":   strings.Join(Tags(c.Metadata.Name, n.Role), ";"),
		}
		if len(c.Network.Nameservers) > 0 {
			// space-separated: PVE's cloud-init generator splits on whitespace only
			// (docs/proxmox.md#cloud-init-drive)
			cfg["nameserver"] = strings.Join(c.Network.Nameservers, " ")
		}

		if len(c.Network.SearchDomains) > 0 {
			cfg["searchdomain"] = strings.Join(c.Network.SearchDomains, " ")
		}

		if agent {
			cfg["agent"] = "enabled=1"
		}

		if dataGiB > 0 {
			// Longhorn replicates and backs up to S3 itself: keep the replica disk out of vzdump.
			cfg[SlotData] = fmt.Sprintf("%s:%d,backup=0,discard=on,serial=%s,ssd=1", p.Storage, dataGiB, profile.LonghornDiskSerial)
		}

		specs = append(specs, VMSpec{Node: n, Name: n.Name, PVENode: n.PVENode, VMID: n.VMID, Template: p.Template,
			Config: cfg, OSDiskGiB: osGiB, DataDiskGiB: dataGiB, Storage: p.Storage, Pool: p.Pool})
	}

	return specs, boot, nil
}

// Tags returns the sorted tags of a node VM: talforge, talforge.node.<cluster> and the role.
func Tags(cluster string, role profile.Role) []string {
	t := []string{TagManaged, OwnerTag(cluster), strings.ToLower(string(role))}
	sort.Strings(t)

	return t
}

func netValue(mac, bridge string, vlan int) string {
	v := "virtio=" + strings.ToUpper(mac) + ",bridge=" + bridge
	if vlan > 0 {
		v += ",tag=" + strconv.Itoa(vlan)
	}

	return v
}

// Severity of a lint finding.
type Severity string

// Severities.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Finding is one lint result.
type Finding struct {
	Severity Severity
	VM       string
	Key      string
	Message  string
}

func (f Finding) String() string {
	return fmt.Sprintf("%s: VM %s: %s: %s", f.Severity, f.VM, f.Key, f.Message)
}

// Lint checks a VM configuration for settings Talos cannot boot or run with
// (docs/talos.md#vm-requirements).
func Lint(name string, cfg Params, hasAgentExtension bool, role profile.Role) []Finding {
	var out []Finding

	add := func(sev Severity, key, format string, a ...any) {
		out = append(out, Finding{Severity: sev, VM: name, Key: key, Message: fmt.Sprintf(format, a...)})
	}

	cpu := strings.SplitN(cfg["cpu"], ",", 2)[0]
	cpu = strings.TrimPrefix(cpu, "cputype=")

	switch {
	case cpu == "":
		add(SeverityError, "cpu", "not set: the PVE default kvm64 lacks x86-64-v2 and Talos boot-loops; use host or x86-64-v2-AES")
	case profile.CPUCannotBootTalos(cpu):
		add(SeverityError, "cpu", "%s lacks the x86-64-v2 instructions Talos needs (the VM would boot-loop); use host or x86-64-v2-AES", cpu)
	}

	minMem := 1024
	if role == profile.RoleControlPlane {
		minMem = 2048
	}

	if mem, err := strconv.Atoi(strings.TrimPrefix(cfg["memory"], "current=")); err != nil || mem < minMem {
		add(SeverityError, "memory", "%q MiB is below Talos' minimum of %d MiB for a %s", cfg["memory"], minMem, role)
	}

	if cfg["balloon"] != "0" {
		add(SeverityError, "balloon", "must be 0: Talos does not support memory ballooning or hot plug")
	}

	switch cfg["scsihw"] {
	case "virtio-scsi-pci":
	case "virtio-scsi-single":
		add(SeverityWarning, "scsihw", "virtio-scsi-single is reported to hang Talos bootstrap (siderolabs/talos#11173); virtio-scsi-pci is safe")
	default:
		add(SeverityError, "scsihw", "%q: Talos installs to /dev/sda on virtio-scsi-pci", cfg["scsihw"])
	}

	if d := parseProp(cfg[SlotOS], "file"); d["file"] != "" {
		if gib := diskGiB(d); gib > 0 && gib < 10 {
			add(SeverityError, SlotOS, "%d GiB is below Talos' minimum system disk of 10 GiB", gib)
		}
	} else {
		add(SeverityError, SlotOS, "no system disk")
	}

	if order := parseProp(cfg["boot"], "legacy")["order"]; order != "" {
		devs := strings.Split(order, ";")
		if len(devs) == 0 || devs[0] != SlotOS {
			add(SeverityWarning, "boot", "%q boots the ISO before the system disk; Talos ISOs halt when Talos is already installed", order)
		}
	}

	if !strings.Contains(cfg[SlotCloudInit], "cloudinit") {
		add(SeverityError, SlotCloudInit, "no cloud-init drive: a nocloud Talos without it has no static IP")
	}

	if !strings.HasPrefix(cfg["ipconfig0"], "ip=") || strings.Contains(cfg["ipconfig0"], "ip=dhcp") {
		add(SeverityError, "ipconfig0", "%q: static IPs need ip=<addr>/<prefix>,gw=<gateway>", cfg["ipconfig0"])
	}

	if strings.Contains(cfg["nameserver"], ",") {
		add(SeverityError, "nameserver", "%q: PVE's cloud-init splits nameservers on whitespace only; Talos rejects a comma list", cfg["nameserver"])
	}

	if _, mac, _ := splitNet(cfg["net0"]); mac != "" {
		if hw, err := net.ParseMAC(mac); err != nil || hw[0]&1 == 1 {
			add(SeverityError, "net0", "%q is not a unicast MAC address", mac)
		}
	}

	agentOn := parseBool(parseProp(cfg["agent"], "enabled")["enabled"])
	if agentOn && !hasAgentExtension {
		add(SeverityWarning, "agent", "enabled without the siderolabs/qemu-guest-agent extension: only log spam")
	}

	if cfg["serial0"] != "socket" {
		add(SeverityWarning, "serial0", "no serial console: early Talos boot logs are only on ttyS0")
	}

	return out
}

// LintSpecs lints every spec but the adopted ones: an adopted VM keeps the hardware its owner
// gave it (it runs Talos already), and its Config is never sent.
func LintSpecs(specs []VMSpec, img *schematic.Image) []Finding {
	var out []Finding
	for _, s := range specs {
		if s.IsAdopted() {
			continue
		}

		out = append(out, Lint(s.Name, s.Config, img.HasExtension(schematic.QemuGuestAgent), s.Node.Role)...)
	}

	return out
}

// parseProp parses a PVE property string; a part without '=' goes to defaultKey.
func parseProp(s, defaultKey string) map[string]string {
	out := map[string]string{}

	for _, part := range strings.Split(s, ",") {
		if part == "" {
			continue
		}

		if k, v, ok := strings.Cut(part, "="); ok {
			out[k] = v
		} else {
			out[defaultKey] = part
		}
	}

	return out
}

// splitNet returns model, MAC and the remaining options of a netN value.
func splitNet(s string) (model, mac string, opts map[string]string) {
	opts = map[string]string{}

	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		switch {
		case part == "":
		case !ok:
			model = part
		case k == "model":
			model = v
		case k == "macaddr":
			mac = v
		case netModel(k):
			model, mac = k, v
		default:
			opts[k] = v
		}
	}

	return model, mac, opts
}

func netModel(k string) bool {
	switch k {
	case "virtio", "e1000", "e1000e", "rtl8139", "vmxnet3", "i82551", "i82557b", "i82559er", "ne2k_isa", "ne2k_pci", "pcnet",
		"e1000-82540em", "e1000-82544gc", "e1000-82545em":
		return true
	}

	return false
}

func parseBool(s string) bool {
	switch strings.ToLower(s) {
	case "1", "on", "yes", "true":
		return true
	}

	return false
}

// diskGiB returns a drive's size in GiB from size= or from the STORAGE:GiB allocation form.
func diskGiB(d map[string]string) int {
	if sz := d["size"]; sz != "" {
		b, err := profile.ParseSize(sz)
		if err == nil {
			return int(b / profile.GiB)
		}
	}

	if _, n, ok := strings.Cut(d["file"], ":"); ok {
		if g, err := strconv.Atoi(n); err == nil {
			return g
		}
	}

	return 0
}
