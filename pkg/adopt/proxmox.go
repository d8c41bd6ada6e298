// The Proxmox part of `talforge import`: finding the VMs of a hand-made cluster's nodes.

package adopt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/talforge/talforge/pkg/proxmox"
)

// ProxmoxReads is what DiscoverProxmox needs of the Proxmox API: reads only, so that import
// cannot change a VM whatever it finds. proxmox.API satisfies it.
type ProxmoxReads interface {
	ListVMs(ctx context.Context) ([]proxmox.VMResource, error)
	VMConfig(ctx context.Context, node string, vmid int) (map[string]string, error)
	GuestInterfaces(ctx context.Context, node string, vmid int) ([]proxmox.GuestInterface, error)
}

// ProxmoxNode is a node of the live cluster as the Talos part found it: its name, its address
// and the MAC of the link that carries the address.
type ProxmoxNode struct {
	Name string `json:"name"`
	IP   string `json:"ip,omitempty"`
	MAC  string `json:"mac,omitempty"`
}

// How a VM was matched to its node.
const (
	MatchByMAC          = "mac"
	MatchByGuestAgentIP = "guest agent ip"
)

// ProxmoxMatch is a node's VM and what the profile records of it.
type ProxmoxMatch struct {
	Node    string `json:"node"`
	VMID    int    `json:"vmid"`
	PVENode string `json:"pveNode"`
	// Name is the VM's name.
	Name string `json:"name"`
	// By is MatchByMAC or MatchByGuestAgentIP.
	By string `json:"by"`
	// Cores (cores × sockets: talforge VMs have one socket) and Memory (MiB) as profile.VMSize
	// wants them.
	Cores  int `json:"cores"`
	Memory int `json:"memory"`
	// Disk and LonghornDisk are sizes as the profile writes them ("20G", whole GiB rounded
	// down, which is what talforge's plan compares): the OS disk (the first disk of the boot
	// order, else scsi0/virtio0/sata0/ide0) and a second disk if any, whatever it holds (the
	// Longhorn part tells whether Longhorn keeps its data there).
	Disk         string `json:"disk,omitempty"`
	LonghornDisk string `json:"longhornDisk,omitempty"`
	// DiskSlot and LonghornDiskSlot are the slots of those disks (talforge's own VMs use
	// scsi0 and scsi1).
	DiskSlot         string `json:"diskSlot,omitempty"`
	LonghornDiskSlot string `json:"longhornDiskSlot,omitempty"`
	// Storage is the storage of the OS disk.
	Storage string `json:"storage,omitempty"`
	// NIC is the netN that carries the node's address, MAC its address (as PVE writes it),
	// Bridge and VLAN (0: untagged) where it is plugged in.
	NIC    string `json:"nic,omitempty"`
	MAC    string `json:"mac,omitempty"`
	Bridge string `json:"bridge,omitempty"`
	VLAN   int    `json:"vlan,omitempty"`
	// CPU is the VM's CPU type (PVE's default kvm64 when the config has none).
	CPU string `json:"cpu"`
	// Tags are the VM's existing tags; import writes none.
	Tags    []string `json:"tags,omitempty"`
	Running bool     `json:"running"`
	// Notes are what talforge's VM model does not describe as it is (sockets, ballooning,
	// slots, ...): things `plan` would want to change on this VM.
	Notes []string `json:"notes,omitempty"`
}

// ProxmoxImport is what DiscoverProxmox found.
type ProxmoxImport struct {
	// Matches are in the order of the nodes given.
	Matches []ProxmoxMatch `json:"matches"`
	// Unmatched are the nodes no VM was found for.
	Unmatched []string `json:"unmatched,omitempty"`
	// Others are the VMs that are no node's, as `VM 123 "name" on pve`: named in the report,
	// never touched.
	Others []string `json:"others,omitempty"`
	// Defaults are the profile-level values that keep the profile short (see ApplyTo).
	Defaults ProxmoxDefaults `json:"defaults"`
	// Warnings are what the profile cannot say as the VMs are (one storage, bridge or VLAN for
	// all nodes) and why nodes stayed unmatched.
	Warnings []string `json:"warnings,omitempty"`
}

// ErrAmbiguousVM is wrapped by DiscoverProxmox errors about a VM that matches two nodes or a
// node that two VMs match: nothing is decided then.
var ErrAmbiguousVM = errors.New("VMs do not match nodes one to one")

// pveVM is a VM as DiscoverProxmox sees it.
type pveVM struct {
	res  proxmox.VMResource
	cfg  map[string]string
	nics []pveNIC
}

func (v *pveVM) String() string {
	return fmt.Sprintf("VM %d %q on %s", v.res.VMID, v.res.Name, v.res.Node)
}

// DiscoverProxmox finds each node's VM: by the MAC of any of the VM's NICs (net0..netN,
// whatever the model, case-insensitively), then, for nodes still unmatched, by the node's IP
// among the addresses the QEMU guest agent of a running VM reports, where the agent answers.
// A VM that matches two nodes, or a node that two VMs match, is an error naming them all
// (wrapping ErrAmbiguousVM) and nothing is decided. It only reads.
func DiscoverProxmox(ctx context.Context, api ProxmoxReads, nodes []ProxmoxNode) (*ProxmoxImport, error) {
	macs := make([]net.HardwareAddr, len(nodes))
	ips := make([]netip.Addr, len(nodes))

	for i, n := range nodes {
		var err error
		if n.MAC != "" {
			if macs[i], err = net.ParseMAC(n.MAC); err != nil {
				return nil, fmt.Errorf("node %s: MAC %q: %w", n.Name, n.MAC, err)
			}
		}

		if n.IP != "" {
			if ips[i], err = netip.ParseAddr(n.IP); err != nil {
				return nil, fmt.Errorf("node %s: IP %q: %w", n.Name, n.IP, err)
			}
		}
	}

	list, err := pveRead(ctx, func() ([]proxmox.VMResource, error) { return api.ListVMs(ctx) })
	if err != nil {
		return nil, fmt.Errorf("listing Proxmox VMs: %w", err)
	}

	sort.Slice(list, func(i, j int) bool { return list[i].VMID < list[j].VMID })

	vms := make([]*pveVM, 0, len(list))

	for _, r := range list {
		vm := &pveVM{res: r}
		if !r.Template && !r.Container { // neither runs a node; they are only listed among the others
			if vm.cfg, err = pveRead(ctx, func() (map[string]string, error) { return api.VMConfig(ctx, r.Node, r.VMID) }); err != nil {
				return nil, fmt.Errorf("%s: reading its config: %w", vm, err)
			}

			vm.nics = pveNICs(vm.cfg)
		}

		vms = append(vms, vm)
	}

	m := &pveMatcher{nodes: nodes, found: make([][]pveCandidate, len(nodes))}
	m.byMAC(vms, macs)

	var agentNotes []string

	if m.unmatched() {
		if agentNotes, err = m.byAgent(ctx, api, vms, ips); err != nil {
			return nil, err
		}
	}

	if err := m.ambiguity(); err != nil {
		return nil, err
	}

	imp := &ProxmoxImport{}
	taken := map[int]bool{}

	for i, n := range nodes {
		if len(m.found[i]) == 0 {
			imp.Unmatched = append(imp.Unmatched, n.Name)
			continue
		}

		c := m.found[i][0]
		taken[c.vm.res.VMID] = true
		imp.Matches = append(imp.Matches, describeVM(n.Name, c))
	}

	for _, vm := range vms {
		if !taken[vm.res.VMID] {
			imp.Others = append(imp.Others, vm.String())
		}
	}

	imp.Defaults = suggestDefaults(imp.Matches)
	imp.Warnings = profileWarnings(imp.Matches, imp.Defaults)

	if len(imp.Unmatched) > 0 {
		if len(list) == 0 {
			imp.Warnings = append(imp.Warnings, "the API token sees no VM at all: it needs VM.Audit on /vms (or on each node's VM)")
		}

		imp.Warnings = append(imp.Warnings, agentNotes...)
	}

	return imp, nil
}

// pveCandidate is a VM found for a node, and the NIC through which.
type pveCandidate struct {
	vm  *pveVM
	nic pveNIC
	by  string
	// note says how the NIC was chosen when the agent's interface has no NIC of that MAC.
	note string
}

type pveMatcher struct {
	nodes []ProxmoxNode
	// found holds each node's candidate VMs (more than one: ambiguous).
	found [][]pveCandidate
}

func (m *pveMatcher) unmatched() bool {
	for _, f := range m.found {
		if len(f) == 0 {
			return true
		}
	}

	return false
}

// byMAC matches nodes to the VMs that have a NIC with the node's MAC.
func (m *pveMatcher) byMAC(vms []*pveVM, macs []net.HardwareAddr) {
	for i, mac := range macs {
		if mac == nil {
			continue
		}

		for _, vm := range vms {
			for _, nic := range vm.nics {
				if nic.hw != nil && string(nic.hw) == string(mac) {
					m.found[i] = append(m.found[i], pveCandidate{vm: vm, nic: nic, by: MatchByMAC})
					break
				}
			}
		}
	}
}

// byAgent matches the nodes still unmatched to running VMs, not matched already, whose guest
// agent reports the node's IP. It returns notes on the VMs it could not ask.
func (m *pveMatcher) byAgent(ctx context.Context, api ProxmoxReads, vms []*pveVM, ips []netip.Addr) ([]string, error) {
	claimed := map[int]bool{}

	for _, f := range m.found {
		for _, c := range f {
			claimed[c.vm.res.VMID] = true
		}
	}

	var (
		notes     []string
		noAgent   []string
		forbidden []string
	)

	for _, vm := range vms {
		if vm.res.Template || claimed[vm.res.VMID] {
			continue
		}

		if !vm.res.Running || !pveAgentEnabled(vm.cfg["agent"]) {
			noAgent = append(noAgent, vm.String())
			continue
		}

		ifaces, err := agentRead(ctx, api, vm)

		var ae *proxmox.APIError

		switch {
		case errors.Is(err, proxmox.ErrNoGuestAgent):
			noAgent = append(noAgent, vm.String())
			continue
		case errors.As(err, &ae) && ae.Status == 403:
			forbidden = append(forbidden, vm.String())
			continue
		case errors.As(err, &ae):
			// e.g. "qmp command 'guest-network-get-interfaces' failed - got timeout": the
			// agent is best effort, the VM is only not matched through it.
			notes = append(notes, fmt.Sprintf("%s: its guest agent did not answer: %v", vm, err))
			continue
		case err != nil:
			return nil, fmt.Errorf("%s: reading its guest agent's interfaces: %w", vm, err)
		}

		for i, ip := range ips {
			if !ip.IsValid() || len(m.found[i]) > 0 && m.found[i][0].by == MatchByMAC {
				continue
			}

			if c, ok := agentCandidate(vm, ifaces, ip); ok {
				m.found[i] = append(m.found[i], c)
			}
		}
	}

	if len(noAgent) > 0 {
		notes = append(notes, "not asked for their addresses (stopped, or no QEMU guest agent enabled or running): "+strings.Join(noAgent, ", "))
	}

	if len(forbidden) > 0 {
		notes = append(notes, "the API token may not read guest agents (it needs VM.GuestAgent.Audit on PVE 9, VM.Monitor on PVE 8): "+
			strings.Join(forbidden, ", "))
	}

	return notes, nil
}

// agentCandidate reports whether the agent's interfaces carry ip, and through which NIC.
func agentCandidate(vm *pveVM, ifaces []proxmox.GuestInterface, ip netip.Addr) (pveCandidate, bool) {
	for _, ifc := range ifaces {
		for _, a := range ifc.Addrs {
			if a != ip {
				continue
			}

			for _, nic := range vm.nics {
				if nic.hw != nil && string(nic.hw) == string(ifc.MAC) {
					return pveCandidate{vm: vm, nic: nic, by: MatchByGuestAgentIP}, true
				}
			}
			// A bond or bridge in the guest may carry its own MAC: fall back to the first NIC.
			c := pveCandidate{vm: vm, by: MatchByGuestAgentIP, note: fmt.Sprintf("the agent reports %s on %s (%s), which is no NIC's MAC; %s is recorded",
				ip, ifc.Name, ifc.MAC, firstNIC(vm.nics))}
			if len(vm.nics) > 0 {
				c.nic = vm.nics[0]
			}

			return c, true
		}
	}

	return pveCandidate{}, false
}

func firstNIC(nics []pveNIC) string {
	if len(nics) == 0 {
		return "no NIC"
	}

	return nics[0].slot
}

// ambiguity returns an error naming every node that several VMs match and every VM that
// several nodes match.
func (m *pveMatcher) ambiguity() error {
	var problems []string

	byVM := map[int][]string{}
	vmOf := map[int]*pveVM{}

	for i, f := range m.found {
		if len(f) > 1 {
			names := make([]string, len(f))
			for j, c := range f {
				names[j] = fmt.Sprintf("%s (by %s, %s)", c.vm, c.by, c.nic.slot)
			}

			problems = append(problems, fmt.Sprintf("node %s matches %d VMs: %s", m.nodes[i].Name, len(f), strings.Join(names, ", ")))
		}

		for _, c := range f {
			byVM[c.vm.res.VMID] = append(byVM[c.vm.res.VMID], m.nodes[i].Name)
			vmOf[c.vm.res.VMID] = c.vm
		}
	}

	ids := make([]int, 0, len(byVM))
	for id := range byVM {
		ids = append(ids, id)
	}

	sort.Ints(ids)

	for _, id := range ids {
		if ns := byVM[id]; len(ns) > 1 {
			problems = append(problems, fmt.Sprintf("%s matches %d nodes: %s", vmOf[id], len(ns), strings.Join(ns, ", ")))
		}
	}

	if len(problems) == 0 {
		return nil
	}

	return fmt.Errorf("%w (nothing was decided; give each VM its own node's MAC, or remove the stale VM):\n  %s",
		ErrAmbiguousVM, strings.Join(problems, "\n  "))
}

// agentRead asks a VM's guest agent once more only after a dropped connection: PVE answers a
// hung agent with a 500 "got timeout" after waiting for it, which pveRead would retry four times.
func agentRead(ctx context.Context, api ProxmoxReads, vm *pveVM) ([]proxmox.GuestInterface, error) {
	ifaces, err := api.GuestInterfaces(ctx, vm.res.Node, vm.res.VMID)
	if errors.Is(err, proxmox.ErrConnection) && ctx.Err() == nil {
		ifaces, err = api.GuestInterfaces(ctx, vm.res.Node, vm.res.VMID)
	}

	return ifaces, err
}

// pveRead retries a read on transient errors (proxmox.Retryable), as pkg/proxmox's observe.go
// readRetry does: import must not fail on one dropped connection.
func pveRead[T any](ctx context.Context, read func() (T, error)) (T, error) {
	delay := 100 * time.Millisecond

	for attempt := 1; ; attempt++ {
		v, err := read()
		if err == nil || !proxmox.Retryable(err) || attempt == 4 {
			return v, err
		}

		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}

		delay *= 2
	}
}
