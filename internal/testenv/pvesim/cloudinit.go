package pvesim

import (
	"crypto/sha1" // instance-id as PVE computes it
	"encoding/hex"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// Host resolver settings used when a VM sets neither nameserver nor
// searchdomain (PVE falls back to the node's /etc/resolv.conf).
const (
	hostSearchDomain = "pve.lan"
	hostNameserver   = "192.168.1.1"
)

// GET /nodes/{node}/qemu/{vmid}/cloudinit/dump
func (s *Server) cloudinitDump(c *call) (any, *apiError) {
	return s.auditVM(c, func(v *VM) (any, *apiError) {
		conf := copyMap(v.Config)
		for k, val := range v.Pending {
			conf[k] = val
		}
		switch c.params.Get("type") {
		case "network":
			return NocloudNetwork(conf), nil
		case "user":
			return nocloudUser(conf), nil
		default:
			h := sha1.Sum([]byte(nocloudUser(conf) + NocloudNetwork(conf)))
			return "instance-id: " + hex.EncodeToString(h[:]) + "\n", nil
		}
	})
}

func nocloudUser(conf map[string]string) string {
	name := conf["name"]
	if name == "" {
		name = "VM"
	}
	var b strings.Builder
	b.WriteString("#cloud-config\n")
	b.WriteString("hostname: " + name + "\n")
	b.WriteString("manage_etc_hosts: true\n")
	b.WriteString("fqdn: " + name + "\n")
	b.WriteString("chpasswd:\n  expire: False\n")
	b.WriteString("users:\n  - default\n")
	if conf["ciupgrade"] != "0" {
		b.WriteString("package_upgrade: true\n")
	}
	return b.String()
}

// NocloudNetwork renders the nocloud network-config (version 1) that
// qemu-server's Cloudinit.pm nocloud_network writes to the cloud-init
// drive for a VM config (docs/proxmox.md#cloud-init-drive; indentation copied from the Perl).
func NocloudNetwork(conf map[string]string) string {
	var b strings.Builder
	b.WriteString("version: 1\nconfig:\n")
	var ifaces []int
	for k := range conf {
		if rxNetKey.MatchString(k) {
			n, _ := strconv.Atoi(strings.TrimPrefix(k, "net"))
			ifaces = append(ifaces, n)
		}
	}
	sort.Ints(ifaces)
	for _, id := range ifaces {
		ipc, ok := conf["ipconfig"+strconv.Itoa(id)]
		if !ok || ipc == "" {
			continue
		}
		_, mac, _ := parseNet(conf["net"+strconv.Itoa(id)])
		ip := parsePropString(ipc, "")
		b.WriteString("    - type: physical\n")
		b.WriteString("      name: eth" + strconv.Itoa(id) + "\n")
		b.WriteString("      mac_address: '" + strings.ToLower(mac) + "'\n")
		b.WriteString("      subnets:\n")
		if addr := ip.get("ip"); addr != "" {
			if addr == "dhcp" {
				b.WriteString("      - type: dhcp4\n")
			} else if p, err := netip.ParsePrefix(addr); err == nil {
				b.WriteString("      - type: static\n")
				b.WriteString("        address: '" + p.Addr().String() + "'\n")
				b.WriteString("        netmask: '" + netmask(p.Bits()) + "'\n")
				if gw := ip.get("gw"); gw != "" {
					b.WriteString("        gateway: '" + gw + "'\n")
				}
			}
		}
		if addr := ip.get("ip6"); addr != "" {
			switch addr {
			case "dhcp":
				b.WriteString("      - type: dhcp6\n")
			case "auto":
				b.WriteString("      - type: ipv6_slaac\n")
			default:
				b.WriteString("      - type: static6\n")
				b.WriteString("        address: '" + addr + "'\n")
				if gw := ip.get("gw6"); gw != "" {
					b.WriteString("        gateway: '" + gw + "'\n")
				}
			}
		}
	}
	search, ns := conf["searchdomain"], conf["nameserver"]
	if search == "" && ns == "" {
		search, ns = hostSearchDomain, hostNameserver
	}
	// get_dns_conf splits on whitespace only (docs/proxmox.md#cloud-init-drive): commas survive.
	nameservers, searches := strings.Fields(ns), strings.Fields(search)
	if len(nameservers) > 0 || len(searches) > 0 {
		b.WriteString("    - type: nameserver\n")
		if len(nameservers) > 0 {
			b.WriteString("      address:\n")
			for _, n := range nameservers {
				b.WriteString("      - '" + n + "'\n")
			}
		}
		if len(searches) > 0 {
			b.WriteString("      search:\n")
			for _, n := range searches {
				b.WriteString("      - '" + n + "'\n")
			}
		}
	}
	return b.String()
}

func netmask(bits int) string {
	var m uint32
	if bits > 0 {
		m = ^uint32(0) << (32 - bits)
	}
	return strconv.Itoa(int(m>>24)) + "." + strconv.Itoa(int(m>>16&0xff)) + "." + strconv.Itoa(int(m>>8&0xff)) + "." + strconv.Itoa(int(m&0xff))
}

// checkCustomCloudinit is what a VM start does with cicustom while it generates the cloud-init
// drive (qemu-server PVE/QemuServer/Cloudinit.pm get_custom_cloudinit_files,
// read_cloudinit_snippets_file): every file named must be a snippet, i.e. parse as a volume of
// content type snippets, and exist. Only a VM with its cloud-init drive reads them. It returns
// the start's failure ("" when fine); s.mu held.
func (s *Server) checkCustomCloudinit(v *VM) string {
	if !s.hasCloudinitDrive(v) || v.Config["cicustom"] == "" {
		return ""
	}
	files := parsePropString(v.Config["cicustom"], "")
	for _, k := range []string{"network", "user", "meta", "vendor"} {
		volid := files.get(k)
		if volid == "" {
			continue
		}
		info, msg := s.parseVolname(volid)
		if msg != "" {
			return msg
		}
		if info.vtype != "snippets" {
			return volid + " is not in the snippets directory"
		}
		if s.volumes[volid] == nil {
			st, name, _ := strings.Cut(volid, ":")
			// pve-common PVE/File.pm file_get_contents
			return "can't open '" + s.storages[st].Path + "/" + name + "' - No such file or directory"
		}
	}
	return ""
}

// hasCloudinitDrive: a drive holds the VM's own cloud-init volume (vm-<vmid>-cloudinit), the
// one generate_cloudinit_config regenerates.
func (s *Server) hasCloudinitDrive(v *VM) bool {
	own := "vm-" + strconv.Itoa(v.ID) + "-cloudinit"
	for k, val := range v.Config {
		if isDriveKey(k) && strings.Contains(parseDriveString(val).get("file"), own) {
			return true
		}
	}
	return false
}
