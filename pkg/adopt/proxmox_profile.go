// From the matched VMs to the profile's proxmox block: shared values once, per-node values
// only where a node differs.

package adopt

import (
	"fmt"
	"strings"

	"github.com/talforge/talforge/pkg/profile"
)

// ProxmoxDefaults are the profile-level values suggested by the matched VMs: the most common
// value of each (ties go to the earlier node).
type ProxmoxDefaults struct {
	PVENode string `json:"pveNode,omitempty"`
	Storage string `json:"storage,omitempty"`
	Bridge  string `json:"bridge,omitempty"`
	VLAN    int    `json:"vlan,omitempty"`
	CPU     string `json:"cpu,omitempty"`
	// VMSize becomes proxmox.defaults. LonghornDisk is only set when every matched VM has a
	// second disk: a node cannot opt out of a default Longhorn disk.
	VMSize profile.VMSize `json:"vmSize"`
}

// mostCommon returns the value that occurs most often, the first one on a tie.
func mostCommon[T comparable](vals []T) T {
	var (
		best  T
		bestN int
	)

	count := map[T]int{}

	for _, v := range vals {
		count[v]++
	}

	for _, v := range vals {
		if count[v] > bestN {
			best, bestN = v, count[v]
		}
	}

	return best
}

func column[T any](ms []ProxmoxMatch, f func(ProxmoxMatch) T) []T {
	out := make([]T, len(ms))
	for i, m := range ms {
		out[i] = f(m)
	}

	return out
}

func suggestDefaults(ms []ProxmoxMatch) ProxmoxDefaults {
	if len(ms) == 0 {
		return ProxmoxDefaults{}
	}

	d := ProxmoxDefaults{
		PVENode: mostCommon(column(ms, func(m ProxmoxMatch) string { return m.PVENode })),
		Storage: mostCommon(column(ms, func(m ProxmoxMatch) string { return m.Storage })),
		Bridge:  mostCommon(column(ms, func(m ProxmoxMatch) string { return m.Bridge })),
		VLAN:    mostCommon(column(ms, func(m ProxmoxMatch) int { return m.VLAN })),
		CPU:     mostCommon(column(ms, func(m ProxmoxMatch) string { return m.CPU })),
		VMSize: profile.VMSize{
			Cores:  mostCommon(column(ms, func(m ProxmoxMatch) int { return m.Cores })),
			Memory: mostCommon(column(ms, func(m ProxmoxMatch) int { return m.Memory })),
			Disk:   mostCommon(column(ms, func(m ProxmoxMatch) string { return m.Disk })),
		},
	}

	all := true

	for _, m := range ms {
		all = all && m.LonghornDisk != ""
	}

	if all {
		d.VMSize.LonghornDisk = mostCommon(column(ms, func(m ProxmoxMatch) string { return m.LonghornDisk }))
	}

	return d
}

// profileWarnings names the VMs that differ from the defaults in what the profile can only
// say once for all nodes (storage, bridge, VLAN, CPU type).
func profileWarnings(ms []ProxmoxMatch, d ProxmoxDefaults) []string {
	var out []string

	shared := []struct {
		key  string
		want string
		have func(ProxmoxMatch) string
	}{
		{"proxmox.storage", d.Storage, func(m ProxmoxMatch) string { return m.Storage }},
		{"proxmox.bridge", d.Bridge, func(m ProxmoxMatch) string { return m.Bridge }},
		{"proxmox.vlan", fmt.Sprint(d.VLAN), func(m ProxmoxMatch) string { return fmt.Sprint(m.VLAN) }},
		{"proxmox.cpu", d.CPU, func(m ProxmoxMatch) string { return m.CPU }},
	}

	for _, s := range shared {
		var odd []string

		for _, m := range ms {
			if v := s.have(m); v != s.want {
				odd = append(odd, fmt.Sprintf("%s (VM %d) has %q", m.Node, m.VMID, v))
			}
		}

		if len(odd) > 0 {
			out = append(out, fmt.Sprintf("%s is one value for every node; %q is suggested, but %s", s.key, s.want, strings.Join(odd, ", ")))
		}
	}

	return out
}

// ApplyTo writes what was found into a profile: the defaults into p (node, storage, bridge,
// VLAN, CPU type, VM sizes) and, into each matched node of nodes (by name), its VMID and
// whatever differs from the defaults (pveNode, cores, memory, disk sizes). A node's MAC is set
// to its VM's NIC when the node has none yet: the profile's derived MAC would not be the
// VM's. Unmatched nodes are left as they are.
func (i *ProxmoxImport) ApplyTo(p *profile.Proxmox, nodes []profile.Node) {
	d := i.Defaults
	p.Node, p.Storage, p.Bridge, p.VLAN, p.CPU = d.PVENode, d.Storage, d.Bridge, d.VLAN, d.CPU
	p.Defaults = d.VMSize

	byName := map[string]ProxmoxMatch{}
	for _, m := range i.Matches {
		byName[m.Node] = m
	}

	for k := range nodes {
		n := &nodes[k]

		m, ok := byName[n.Name]
		if !ok {
			continue
		}

		n.VMID = m.VMID
		// The VM stays the user's: talforge manages its tags, CPU, memory and disk sizes only.
		n.Adopted = &profile.AdoptedVM{
			OSDisk:       differs(m.DiskSlot, profile.DefaultAdoptedOSDisk),
			LonghornDisk: differs(m.LonghornDiskSlot, profile.DefaultAdoptedLonghornDisk),
		}
		n.PVENode = differs(m.PVENode, d.PVENode)
		n.Cores = differs(m.Cores, d.VMSize.Cores)
		n.Memory = differs(m.Memory, d.VMSize.Memory)
		n.Disk = differs(m.Disk, d.VMSize.Disk)
		n.LonghornDisk = differs(m.LonghornDisk, d.VMSize.LonghornDisk)

		if n.MAC == "" {
			n.MAC = m.MAC
		}
	}
}

// differs returns v where it is not the default, the zero value otherwise (the profile then
// takes the default).
func differs[T comparable](v, def T) T {
	var zero T
	if v == def {
		return zero
	}

	return v
}
