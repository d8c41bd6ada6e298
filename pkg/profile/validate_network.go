// Validation of network.* and the nodes: addresses inside the node subnet, names, roles.

package profile

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

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

		at := "nodes[" + strconv.Itoa(i) + "]."
		f := func(name string) string { return at + name }

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

		if n.Adopted != nil {
			c.validateAdopted(e, f, n, explicitMAC)
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

// diskSlotRE matches the PVE disk slots a system or data disk can sit in (qemu-server
// src/PVE/QemuServer/Drive.pm: ide0-3, sata0-5, scsi0-30, virtio0-15).
// Compiled on first use, not at package initialisation, to keep start-up cheap (issue 16).
var diskSlotRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(?:ide[0-3]|sata[0-5]|scsi(?:[0-9]|[12][0-9]|30)|virtio(?:[0-9]|1[0-5]))$`)
})

// validateAdopted checks nodes[i].adopted: the VM is identified by its VMID and confirmed by
// its NIC's MAC, so both must be written down (a derived MAC would name no real NIC).
func (c *Cluster) validateAdopted(e *problems, f func(string) string, n Node, explicitMAC bool) {
	if c.Proxmox == nil {
		e.add(f("adopted"), "remove adopted, or add the proxmox section the VM lives in", "an adopted VM needs the proxmox section")
	}

	if n.VMID == 0 {
		e.add(f("vmid"), "write the adopted VM's VMID (talforge import records it)", "is required with adopted")
	}

	if !explicitMAC {
		e.add(f("mac"), "write the MAC of the adopted VM's NIC (talforge import records it)", "is required with adopted: it confirms that VMID %d is still the node's VM", n.VMID)
	}

	osDisk, dataDisk := n.Adopted.OSDiskSlot(), n.Adopted.LonghornDiskSlot()

	for _, d := range []struct{ field, slot string }{{"adopted.osDisk", osDisk}, {"adopted.longhornDisk", dataDisk}} {
		if !diskSlotRE().MatchString(d.slot) {
			e.add(f(d.field), "name a PVE disk slot like scsi0, virtio0 or sata0", "%q is not a disk slot", d.slot)
		}
	}

	if osDisk == dataDisk && n.HasLonghornDisk() {
		e.add(f("adopted.longhornDisk"), "name the slot of the VM's second disk", "%s is also adopted.osDisk", dataDisk)
	}
}
