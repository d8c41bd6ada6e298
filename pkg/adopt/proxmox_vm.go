// Reading a hand-made VM's config the way PVE writes it: NICs, disks, sizes, CPU and memory.

package adopt

import (
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/proxmox"
)

// pveNIC is a netN entry of a VM config.
type pveNIC struct {
	slot   string
	model  string
	mac    string // as the config writes it
	hw     net.HardwareAddr
	bridge string
	vlan   int
}

// Compiled on first use, not at package initialisation, to keep start-up cheap (issue 16).
var (
	rxNetKey  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^net(\d+)$`) })
	rxDiskKey = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^(ide|sata|scsi|virtio)(\d+)$`)
	})
	// rxCloudInitVol is PVE's cloud-init volume name (qemu-server src/PVE/QemuServer/Drive.pm
	// drive_is_cloudinit).
	rxCloudInitVol = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`[:/](?:vm-\d+-)?cloudinit(?:\.\w+)?$`)
	})
)

// pveNetModels are the NIC models of qemu-server's $nic_model_list (PVE/QemuServer/Network.pm):
// a netN value is "<model>=<MAC>,bridge=...", or "model=<model>,macaddr=<MAC>,..." in the
// long form.
var pveNetModels = map[string]bool{
	"e1000": true, "e1000-82540em": true, "e1000-82544gc": true, "e1000-82545em": true, "e1000e": true,
	"i82551": true, "i82557b": true, "i82559er": true, "ne2k_isa": true, "ne2k_pci": true, "pcnet": true,
	"rtl8139": true, "virtio": true, "vmxnet3": true,
}

// pveNICs parses every netN of a config, in slot order.
func pveNICs(cfg map[string]string) []pveNIC {
	var out []pveNIC

	for k, v := range cfg {
		if !rxNetKey().MatchString(k) {
			continue
		}

		nic := pveNIC{slot: k}

		for _, part := range strings.Split(v, ",") {
			key, val, ok := strings.Cut(part, "=")

			switch {
			case !ok:
				nic.model = part // a model without a MAC (PVE generates one on write)
			case pveNetModels[key]:
				nic.model, nic.mac = key, val
			case key == "model":
				nic.model = val
			case key == "macaddr":
				nic.mac = val
			case key == "bridge":
				nic.bridge = val
			case key == "tag":
				nic.vlan, _ = strconv.Atoi(val)
			}
		}

		nic.hw, _ = net.ParseMAC(nic.mac)
		out = append(out, nic)
	}

	sort.Slice(out, func(i, j int) bool { return slotLess(out[i].slot, out[j].slot) })

	return out
}

// slotLess orders slots by bus (scsi, virtio, sata, ide, as talforge prefers them) and index.
func slotLess(a, b string) bool {
	ka, kb := slotKey(a), slotKey(b)
	if ka.bus != kb.bus {
		return ka.bus < kb.bus
	}

	return ka.index < kb.index
}

type slotOrder struct{ bus, index int }

func slotKey(s string) slotOrder {
	if m := rxNetKey().FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		return slotOrder{0, n}
	}

	m := rxDiskKey().FindStringSubmatch(s)
	if m == nil {
		return slotOrder{9, 0}
	}

	n, _ := strconv.Atoi(m[2])

	return slotOrder{map[string]int{"scsi": 0, "virtio": 1, "sata": 2, "ide": 3}[m[1]], n}
}

func pveProps(v string) (first string, props map[string]string) {
	props = map[string]string{}

	for i, part := range strings.Split(v, ",") {
		if k, val, ok := strings.Cut(part, "="); ok {
			props[k] = val
		} else if i == 0 {
			first = part
		}
	}

	return first, props
}

// pveAgentEnabled reads the agent option: "[enabled=]1|0[,...]".
func pveAgentEnabled(v string) bool {
	first, props := pveProps(v)
	if e, ok := props["enabled"]; ok {
		first = e
	}

	switch strings.ToLower(first) {
	case "1", "on", "yes", "true":
		return true
	}

	return false
}

// pveDisk is a disk slot of a VM config (CD-ROMs, cloud-init drives and empty slots aside).
type pveDisk struct {
	slot, volume, storage, size, serial string
}

func pveDisks(cfg map[string]string) []pveDisk {
	var out []pveDisk

	for k, v := range cfg {
		if !rxDiskKey().MatchString(k) {
			continue
		}

		file, props := pveProps(v)
		if f, ok := props["file"]; ok {
			file = f
		}

		if file == "" || file == "none" || props["media"] == "cdrom" || rxCloudInitVol().MatchString(file) {
			continue
		}

		st, _, _ := strings.Cut(file, ":")
		out = append(out, pveDisk{slot: k, volume: file, storage: st, size: props["size"], serial: props["serial"]})
	}

	sort.Slice(out, func(i, j int) bool { return slotLess(out[i].slot, out[j].slot) })

	return out
}

// osDisk picks the OS disk: the first disk of the boot order (boot: order=a;b;c, or the
// legacy bootdisk key), else the first disk in slot order.
func osDisk(cfg map[string]string, disks []pveDisk) int {
	var order []string

	if _, props := pveProps(cfg["boot"]); props["order"] != "" {
		order = strings.Split(props["order"], ";")
	}

	if bd := cfg["bootdisk"]; bd != "" {
		order = append(order, bd)
	}

	for _, o := range order {
		for i, d := range disks {
			if d.slot == o {
				return i
			}
		}
	}

	if len(disks) == 0 {
		return -1
	}

	return 0
}

// profileSize renders a PVE disk size (format_size: "32G", "512M", "1T" or bytes) as the
// profile writes it: whole GiB, rounded down like talforge's plan (pkg/proxmox diskGiB).
func profileSize(pve string) (string, string) {
	if pve == "" {
		return "", "has no size= option"
	}

	b, err := profile.ParseSize(pve)
	if err != nil {
		return "", fmt.Sprintf("size %q: %v", pve, err)
	}

	gib := b / profile.GiB
	if gib == 0 {
		return "", fmt.Sprintf("is %s, less than 1 GiB", pve)
	}

	if b%profile.GiB != 0 {
		return fmt.Sprintf("%dG", gib), fmt.Sprintf("is %s, not a whole number of GiB: recorded as %dG (talforge compares whole GiB and never shrinks a disk)", pve, gib)
	}

	return fmt.Sprintf("%dG", gib), ""
}

// describeVM is a node's VM as the profile records it, with notes on what talforge's model
// of a node VM (pkg/proxmox Desired) says otherwise.
func describeVM(node string, c pveCandidate) ProxmoxMatch {
	vm, cfg := c.vm, c.vm.cfg
	m := ProxmoxMatch{Node: node, VMID: vm.res.VMID, PVENode: vm.res.Node, Name: vm.res.Name, By: c.by, Running: vm.res.Running,
		NIC: c.nic.slot, MAC: c.nic.mac, Bridge: c.nic.bridge, VLAN: c.nic.vlan, Tags: append([]string(nil), vm.res.Tags...)}
	note := func(format string, a ...any) { m.Notes = append(m.Notes, fmt.Sprintf(format, a...)) }

	if c.note != "" {
		m.Notes = append(m.Notes, c.note)
	}

	if m.NIC != "" && m.NIC != "net0" {
		note("the node's NIC is %s; talforge manages net0", m.NIC)
	}

	// qemu-server defaults: cores 1, sockets 1, memory 512 MiB, cpu kvm64.
	cores, sockets := pveInt(cfg["cores"], 1), pveInt(cfg["sockets"], 1)
	m.Cores = cores * sockets

	if sockets != 1 {
		note("%d sockets × %d cores: talforge VMs have one socket of %d cores", sockets, cores, m.Cores)
	}

	mem := cfg["memory"]
	if _, props := pveProps(mem); props["current"] != "" { // PVE 8.1+: [current=]<MiB>
		mem = props["current"]
	}

	m.Memory = pveInt(mem, 512)

	if b, ok := cfg["balloon"]; !ok || b != "0" {
		note("memory ballooning is on (balloon=%s); Talos does not support it and talforge sets balloon=0", orDefault(b, "default"))
	}

	m.CPU, _ = pveProps(cfg["cpu"])
	if _, props := pveProps(cfg["cpu"]); props["cputype"] != "" {
		m.CPU = props["cputype"]
	}

	m.CPU = orDefault(m.CPU, "kvm64")

	disks := pveDisks(cfg)
	osIdx := osDisk(cfg, disks)

	if osIdx < 0 {
		note("has no disk")
	} else {
		d := disks[osIdx]
		m.DiskSlot, m.Storage = d.slot, d.storage

		var why string
		if m.Disk, why = profileSize(d.size); why != "" {
			note("OS disk %s %s", d.slot, why)
		}

		if d.slot != proxmox.SlotOS {
			note("the OS disk is %s; talforge manages %s", d.slot, proxmox.SlotOS)
		}

		rest := append(append([]pveDisk(nil), disks[:osIdx]...), disks[osIdx+1:]...)
		if len(rest) > 0 {
			l := rest[0]
			m.LonghornDiskSlot = l.slot

			var why string
			if m.LonghornDisk, why = profileSize(l.size); why != "" {
				note("second disk %s %s", l.slot, why)
			}

			if l.slot != proxmox.SlotData {
				note("the second disk is %s; talforge manages %s", l.slot, proxmox.SlotData)
			}

			if l.storage != d.storage {
				note("the second disk is on storage %s, the OS disk on %s; talforge keeps both on proxmox.storage", l.storage, d.storage)
			}

			for _, o := range rest[1:] {
				note("disk %s (%s) is neither the OS disk nor the second disk; talforge leaves it alone", o.slot, o.volume)
			}
		}
	}

	if o := proxmox.ParseOwnership(m.Tags); o.Kind != proxmox.KindNone || o.Ambiguous != "" {
		switch {
		case o.Ambiguous != "":
			note("its tags are ambiguous: it %s", o.Ambiguous)
		default:
			note("it already carries the ownership tag of cluster %s (%s)", o.Cluster, o.Kind)
		}
	}

	return m
}

func pveInt(s string, def int) int {
	if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n > 0 {
		return n
	}

	return def
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}

	return s
}
