package adopt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/talforge/talforge/internal/testenv/pvesim"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/proxmox"
)

// pveTestSchema is the PVE 9 API schema fixture (pvesim.SchemaForTest: required under CI).
func pveTestSchema(t *testing.T) *pvesim.Schema {
	t.Helper()

	return pvesim.SchemaForTest(t, 9)
}

// pveHandMade is a cluster built by hand: four node VMs on two PVE hosts made four different
// ways (NIC models, MAC case, long-form netN, virtio disks, PVE 8.1 memory syntax), one node
// only findable through its guest agent, and foreign VMs beside them.
func pveHandMade() []pvesim.SeedVM {
	lo := pvesim.AgentInterface{Name: "lo", MAC: "00:00:00:00:00:00", Addrs: []string{"127.0.0.1/8", "::1/128"}}

	return []pvesim.SeedVM{
		{ID: 101, Node: "pve", Running: true, Config: map[string]string{
			"name": "cp-1", "cores": "2", "memory": "4096", "balloon": "0", "cpu": "x86-64-v2-AES", "scsihw": "virtio-scsi-pci",
			"net0":  "virtio=BC:24:11:AA:00:01,bridge=vmbr0,firewall=1,tag=20",
			"scsi0": "local-lvm:vm-101-disk-0,iothread=1,size=32G", "scsi1": "local-lvm:vm-101-disk-1,backup=0,size=100G",
			"ide0": "local:iso/talos-v1.10.6-nocloud-amd64.iso,media=cdrom", "ide2": "local-lvm:vm-101-cloudinit,media=cdrom",
			"boot": "order=scsi0;ide0;net0", "tags": "k8s;talos", "agent": "1"}},
		{ID: 102, Node: "pve", Running: true, Config: map[string]string{
			"name": "cp-2", "cores": "2", "memory": "4096", "balloon": "0", "cpu": "x86-64-v2-AES",
			"net0":  "e1000=bc:24:11:aa:00:02,bridge=vmbr0,tag=20",
			"scsi0": "local-lvm:vm-102-disk-0,size=32G", "scsi1": "local-lvm:vm-102-disk-1,size=100G",
			"boot": "order=scsi0", "tags": "k8s;talos"}},
		{ID: 103, Node: "pve2", Running: true, Config: map[string]string{
			"name": "worker-1", "cores": "2", "sockets": "2", "memory": "current=8192", "cpu": "cputype=host",
			"net0":    "virtio=BC:24:11:FF:FF:01,bridge=vmbr1",
			"net1":    "model=vmxnet3,macaddr=Bc:24:11:aA:00:03,bridge=vmbr0,tag=20",
			"virtio0": "local-zfs:vm-103-disk-0,size=40G", "virtio1": "local-zfs:vm-103-disk-1,size=102400M",
			"bootdisk": "virtio0"}},
		{ID: 104, Node: "pve", Running: true, Config: map[string]string{
			"name": "worker-2", "cores": "2", "memory": "4096", "balloon": "0", "cpu": "x86-64-v2-AES", "agent": "enabled=1,fstrim_cloned_disks=1",
			"net0":  "rtl8139=BC:24:11:AA:00:04,bridge=vmbr0,tag=20",
			"scsi0": "local-lvm:vm-104-disk-0,size=34359738880", "scsi1": "local-lvm:vm-104-disk-1,size=100G", "scsi2": "local-lvm:vm-104-disk-2,size=8G",
			"boot": "order=scsi0", "tags": "talforge.node.other"},
			Agent: []pvesim.AgentInterface{lo, {Name: "eth0", MAC: "bc:24:11:aa:00:04", Addrs: []string{"10.0.20.14/24", "fe80::be24:11ff:feaa:4/64"}}}},
		// foreign VMs: a running one whose agent answers, a stopped one, a template
		{ID: 200, Node: "pve", Running: true, Config: map[string]string{
			"name": "pihole", "agent": "1", "net0": "virtio=BC:24:11:00:02:00,bridge=vmbr0", "scsi0": "local-lvm:vm-200-disk-0,size=8G"},
			Agent: []pvesim.AgentInterface{lo, {Name: "eth0", MAC: "bc:24:11:00:02:00", Addrs: []string{"10.0.20.53/24"}}}},
		{ID: 201, Node: "pve2", Config: map[string]string{
			"name": "old-cp-1", "net0": "virtio=BC:24:11:00:02:01,bridge=vmbr0", "scsi0": "local-lvm:vm-201-disk-0,size=32G"}},
		{ID: 9000, Node: "pve", Config: map[string]string{
			"name": "talos-template", "template": "1", "net0": "virtio=BC:24:11:AA:00:01,bridge=vmbr0", "scsi0": "local-lvm:base-9000-disk-0,size=10G"}},
	}
}

// pveHandMadeNodes are the nodes as the Talos part reads them (Talos writes MACs in lower case);
// worker-2's link is a bond whose MAC is no NIC's, and worker-3 has no VM.
func pveHandMadeNodes() []ProxmoxNode {
	return []ProxmoxNode{
		{Name: "cp-1", IP: "10.0.20.11", MAC: "bc:24:11:aa:00:01"},
		{Name: "cp-2", IP: "10.0.20.12", MAC: "bc:24:11:aa:00:02"},
		{Name: "worker-1", IP: "10.0.20.13", MAC: "bc:24:11:aa:00:03"},
		{Name: "worker-2", IP: "10.0.20.14", MAC: "02:00:00:00:00:14"},
		{Name: "worker-3", IP: "10.0.20.15", MAC: "bc:24:11:aa:00:05"},
	}
}

func pveSeedWith(f func(map[int]*pvesim.SeedVM)) []pvesim.SeedVM {
	vms := pveHandMade()
	byID := map[int]*pvesim.SeedVM{}

	for i := range vms {
		byID[vms[i].ID] = &vms[i]
	}

	if f != nil {
		f(byID)
	}

	return vms
}

// renderProxmoxImport prints an import in a stable, readable form for comparison.
func renderProxmoxImport(imp *ProxmoxImport) string {
	var b strings.Builder

	for _, m := range imp.Matches {
		fmt.Fprintf(&b, "%s: VM %d %q on %s by %s via %s %s %s/%d, cores=%d memory=%d cpu=%s, disk=%s(%s on %s) second=%s(%s), running=%v, tags=%s\n",
			m.Node, m.VMID, m.Name, m.PVENode, m.By, m.NIC, m.MAC, m.Bridge, m.VLAN, m.Cores, m.Memory, m.CPU,
			m.Disk, m.DiskSlot, m.Storage, m.LonghornDisk, m.LonghornDiskSlot, m.Running, strings.Join(m.Tags, ","))

		for _, n := range m.Notes {
			fmt.Fprintf(&b, "  # %s\n", n)
		}
	}

	fmt.Fprintf(&b, "unmatched: %s\n", strings.Join(imp.Unmatched, ", "))
	fmt.Fprintf(&b, "others: %s\n", strings.Join(imp.Others, ", "))
	fmt.Fprintf(&b, "defaults: %+v\n", imp.Defaults)

	for _, w := range imp.Warnings {
		fmt.Fprintf(&b, "! %s\n", w)
	}

	return b.String()
}

const wantPVEHandMade = `cp-1: VM 101 "cp-1" on pve by mac via net0 BC:24:11:AA:00:01 vmbr0/20, cores=2 memory=4096 cpu=x86-64-v2-AES, disk=32G(scsi0 on local-lvm) second=100G(scsi1), running=true, tags=k8s,talos
cp-2: VM 102 "cp-2" on pve by mac via net0 bc:24:11:aa:00:02 vmbr0/20, cores=2 memory=4096 cpu=x86-64-v2-AES, disk=32G(scsi0 on local-lvm) second=100G(scsi1), running=true, tags=k8s,talos
worker-1: VM 103 "worker-1" on pve2 by mac via net1 Bc:24:11:aA:00:03 vmbr0/20, cores=4 memory=8192 cpu=host, disk=40G(virtio0 on local-zfs) second=100G(virtio1), running=true, tags=
  # the node's NIC is net1; talforge manages net0
  # 2 sockets × 2 cores: talforge VMs have one socket of 4 cores
  # memory ballooning is on (balloon=default); Talos does not support it and talforge sets balloon=0
  # the OS disk is virtio0; talforge manages scsi0
  # the second disk is virtio1; talforge manages scsi1
worker-2: VM 104 "worker-2" on pve by guest agent ip via net0 BC:24:11:AA:00:04 vmbr0/20, cores=2 memory=4096 cpu=x86-64-v2-AES, disk=32G(scsi0 on local-lvm) second=100G(scsi1), running=true, tags=talforge.node.other
  # OS disk scsi0 is 34359738880, not a whole number of GiB: recorded as 32G (talforge compares whole GiB and never shrinks a disk)
  # disk scsi2 (local-lvm:vm-104-disk-2) is neither the OS disk nor the second disk; talforge leaves it alone
  # it already carries the ownership tag of cluster other (node VM)
unmatched: worker-3
others: VM 200 "pihole" on pve, VM 201 "old-cp-1" on pve2, VM 9000 "talos-template" on pve
defaults: {PVENode:pve Storage:local-lvm Bridge:vmbr0 VLAN:20 CPU:x86-64-v2-AES VMSize:{Cores:2 Memory:4096 Disk:32G LonghornDisk:100G}}
! proxmox.storage is one value for every node; "local-lvm" is suggested, but worker-1 (VM 103) has "local-zfs"
! proxmox.cpu is one value for every node; "x86-64-v2-AES" is suggested, but worker-1 (VM 103) has "host"
! not asked for their addresses (stopped, or no QEMU guest agent enabled or running): VM 201 "old-cp-1" on pve2
`

func TestDiscoverProxmox(t *testing.T) {
	cases := []struct {
		name  string
		seed  func(map[int]*pvesim.SeedVM)
		nodes func([]ProxmoxNode) []ProxmoxNode
		acl   map[string][]string // nil: an administrator token
		// faults are injected; each must fire exactly Count times (a dropped read is read again,
		// a guest agent's timeout is not)
		faults []pvesim.Fault
		want   string   // renderProxmoxImport output
		err    []string // substrings of an ErrAmbiguousVM error
	}{
		{name: "hand-made cluster with foreign VMs", want: wantPVEHandMade},
		{name: "two VMs with a node's MAC", seed: func(v map[int]*pvesim.SeedVM) {
			v[201].Config["net0"] = "virtio=bc:24:11:aa:00:01,bridge=vmbr0" // a stale copy of cp-1, MAC in lower case
		}, err: []string{`node cp-1 matches 2 VMs: VM 101 "cp-1" on pve (by mac, net0), VM 201 "old-cp-1" on pve2 (by mac, net0)`}},
		{name: "a VM with the MACs of two nodes", seed: func(v map[int]*pvesim.SeedVM) {
			v[102].Config["net1"] = "virtio=BC:24:11:AA:00:01,bridge=vmbr0"
		}, err: []string{
			`node cp-1 matches 2 VMs: VM 101 "cp-1" on pve (by mac, net0), VM 102 "cp-2" on pve (by mac, net1)`,
			`VM 102 "cp-2" on pve matches 2 nodes: cp-1, cp-2`,
		}},
		{name: "a foreign VM's agent reports a node's IP", seed: func(v map[int]*pvesim.SeedVM) {
			v[200].Agent[1].Addrs = append(v[200].Agent[1].Addrs, "10.0.20.14/24")
		}, err: []string{`node worker-2 matches 2 VMs: VM 104 "worker-2" on pve (by guest agent ip, net0), VM 200 "pihole" on pve (by guest agent ip, net0)`}},
		{name: "one VM's agent reports the IPs of two nodes", seed: func(v map[int]*pvesim.SeedVM) {
			v[104].Agent[1].Addrs = append(v[104].Agent[1].Addrs, "10.0.20.15/24")
		}, err: []string{`VM 104 "worker-2" on pve matches 2 nodes: worker-2, worker-3`}},
		{name: "the agent's interface is no NIC's", seed: func(v map[int]*pvesim.SeedVM) {
			v[104].Agent[1].MAC = "02:00:00:00:00:14" // a bond in the guest
		}, want: strings.Replace(wantPVEHandMade, "tags=talforge.node.other\n",
			"tags=talforge.node.other\n  # the agent reports 10.0.20.14 on eth0 (02:00:00:00:00:14), which is no NIC's MAC; net0 is recorded\n", 1)},
		{name: "a dropped read is read again, an agent timeout is not", faults: []pvesim.Fault{
			{Kind: pvesim.FaultDropBefore, Method: "GET", Path: "/cluster/resources", Count: 1},
			{Kind: pvesim.FaultHTTPError, Method: "GET", Path: "/nodes/pve/qemu/200/agent/.*", Count: 1, Status: 500,
				Message: "VM 200 qmp command 'guest-network-get-interfaces' failed - got timeout"},
		}, want: strings.Replace(wantPVEHandMade, "! not asked", `! VM 200 "pihole" on pve: its guest agent did not answer: HTTP 500: `+
			"VM 200 qmp command 'guest-network-get-interfaces' failed - got timeout\n! not asked", 1)},
		{name: "token may not read guest agents", acl: map[string][]string{"/vms": {"VM.Audit"}},
			want: strings.NewReplacer(
				wantPVEHandMade[strings.Index(wantPVEHandMade, "worker-2: "):strings.Index(wantPVEHandMade, "unmatched:")], "",
				"unmatched: worker-3", "unmatched: worker-2, worker-3",
				`others: VM 200`, `others: VM 104 "worker-2" on pve, VM 200`,
				"defaults: {PVENode:pve Storage:local-lvm Bridge:vmbr0 VLAN:20 CPU:x86-64-v2-AES VMSize:{Cores:2 Memory:4096 Disk:32G",
				"defaults: {PVENode:pve Storage:local-lvm Bridge:vmbr0 VLAN:20 CPU:x86-64-v2-AES VMSize:{Cores:2 Memory:4096 Disk:32G",
				`on pve2
`, `on pve2
! the API token may not read guest agents (it needs VM.GuestAgent.Audit on PVE 9, VM.Monitor on PVE 8): VM 104 "worker-2" on pve, VM 200 "pihole" on pve
`).Replace(wantPVEHandMade)},
		{name: "token sees no VM", acl: map[string][]string{"/storage": {"Datastore.Audit"}},
			want: "unmatched: cp-1, cp-2, worker-1, worker-2, worker-3\nothers: \ndefaults: {PVENode: Storage: Bridge: VLAN:0 CPU: VMSize:{Cores:0 Memory:0 Disk: LonghornDisk:}}\n" +
				"! the API token sees no VM at all: it needs VM.Audit on /vms (or on each node's VM)\n"},
		{name: "nodes without MAC or IP stay unmatched", nodes: func(ns []ProxmoxNode) []ProxmoxNode {
			return []ProxmoxNode{ns[0], {Name: "bare"}}
		}, want: `cp-1: VM 101 "cp-1" on pve by mac via net0 BC:24:11:AA:00:01 vmbr0/20, cores=2 memory=4096 cpu=x86-64-v2-AES, disk=32G(scsi0 on local-lvm) second=100G(scsi1), running=true, tags=k8s,talos
unmatched: bare
others: VM 102 "cp-2" on pve, VM 103 "worker-1" on pve2, VM 104 "worker-2" on pve, VM 200 "pihole" on pve, VM 201 "old-cp-1" on pve2, VM 9000 "talos-template" on pve
defaults: {PVENode:pve Storage:local-lvm Bridge:vmbr0 VLAN:20 CPU:x86-64-v2-AES VMSize:{Cores:2 Memory:4096 Disk:32G LonghornDisk:100G}}
! not asked for their addresses (stopped, or no QEMU guest agent enabled or running): VM 102 "cp-2" on pve, VM 103 "worker-1" on pve2, VM 201 "old-cp-1" on pve2
`},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := pvesim.New(pvesim.Options{Schema: pveTestSchema(t), Nodes: []string{"pve", "pve2"}, AuthFailDelay: -1, DefaultLatency: time.Millisecond,
				Storages: []pvesim.Storage{{ID: "local", Type: "dir", Content: []string{"iso"}}, {ID: "local-lvm", Type: "lvmthin", Content: []string{"images"}},
					{ID: "local-zfs", Type: "zfspool", Content: []string{"images"}}}})
			t.Cleanup(srv.Close)
			srv.Seed(pveSeedWith(tc.seed)...)

			var fired []pvesim.FaultHandle
			for _, f := range tc.faults {
				fired = append(fired, srv.InjectFault(f))
			}

			defer func() {
				for i, h := range fired {
					if h.Fired() != tc.faults[i].Count {
						t.Errorf("fault on %s fired %d times, want %d", tc.faults[i].Path, h.Fired(), tc.faults[i].Count)
					}
				}
			}()

			id, secret := pvesim.DefaultTokenID, pvesim.DefaultTokenSecret
			if tc.acl != nil {
				id, secret = "import@pve!t", "s"
				srv.SetACL(id, secret, tc.acl)
			}

			tok, err := proxmox.NewToken(id, secret)
			if err != nil {
				t.Fatal(err)
			}

			api, err := proxmox.NewTelmateAPI(proxmox.ClientOptions{Endpoint: srv.URL(), Token: tok,
				TLS: &tls.Config{RootCAs: srv.CertPool(), MinVersion: tls.VersionTLS12}})
			if err != nil {
				t.Fatal(err)
			}

			nodes := pveHandMadeNodes()
			if tc.nodes != nil {
				nodes = tc.nodes(nodes)
			}

			imp, err := DiscoverProxmox(context.Background(), api, nodes)

			if m := srv.MutatingRequests(); len(m) != 0 {
				t.Errorf("import sent mutating requests: %+v", m)
			}

			if tc.err != nil {
				if !errors.Is(err, ErrAmbiguousVM) || imp != nil {
					t.Fatalf("DiscoverProxmox = %v, %v; want nothing and an ErrAmbiguousVM", imp, err)
				}

				for _, s := range tc.err {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error lacks %q:\n%v", s, err)
					}
				}

				return
			}

			if err != nil {
				t.Fatalf("DiscoverProxmox: %v\n%s", err, srv.RequestSummary())
			}

			if got := renderProxmoxImport(imp); got != tc.want {
				t.Errorf("import:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestProxmoxConfigParsing(t *testing.T) {
	cases := []struct {
		name string
		cfg  map[string]string
		nics string // slot model mac bridge/vlan ...
		os   string // OS disk slot, size
	}{
		{name: "talforge's own VM", cfg: map[string]string{"net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0,tag=10", "scsi0": "local-lvm:vm-1-disk-0,discard=on,size=20G",
			"scsi1": "local-lvm:vm-1-disk-1,backup=0,serial=talforge-longhorn,size=50G", "ide0": "local:iso/t.iso,media=cdrom", "ide2": "local-lvm:vm-1-cloudinit,media=cdrom",
			"boot": "order=scsi0;ide0"},
			nics: "net0 virtio BC:24:11:00:00:01 vmbr0/10", os: "scsi0 20G"},
		{name: "NIC models and MAC cases", cfg: map[string]string{"net2": "e1000e=aa:bb:cc:dd:ee:02,bridge=vmbr2", "net10": "model=virtio,macaddr=Aa:Bb:Cc:Dd:Ee:10,bridge=vmbr0",
			"net1": "e1000-82540em=AA:BB:CC:DD:EE:01,bridge=vmbr1,firewall=1", "net0": "virtio,bridge=vmbr0"},
			nics: "net0 virtio  vmbr0/0, net1 e1000-82540em AA:BB:CC:DD:EE:01 vmbr1/0, net2 e1000e aa:bb:cc:dd:ee:02 vmbr2/0, net10 virtio Aa:Bb:Cc:Dd:Ee:10 vmbr0/0",
			os:   " "},
		{name: "boot order picks the OS disk", cfg: map[string]string{"sata0": "local:vm-1-disk-1,size=1T", "virtio0": "local:vm-1-disk-0,size=4G",
			"boot": "order=net0;sata0;virtio0"}, os: "sata0 1024G"},
		{name: "legacy bootdisk", cfg: map[string]string{"scsi0": "local:vm-1-disk-1,size=8G", "virtio3": "local:vm-1-disk-0,size=16G",
			"boot": "cdn", "bootdisk": "virtio3"}, os: "virtio3 16G"},
		{name: "no boot order: scsi before virtio before sata before ide", cfg: map[string]string{"ide1": "local:vm-1-disk-3,size=1G",
			"virtio1": "local:vm-1-disk-1,size=2G", "sata0": "local:vm-1-disk-2,size=3G", "scsi0": "none,media=cdrom"}, os: "virtio1 2G"},
		{name: "cloud-init and CD-ROMs are no disks", cfg: map[string]string{"ide2": "local-lvm:vm-1-cloudinit,media=cdrom", "scsi5": "local-lvm:vm-1-cloudinit",
			"ide0": "local:iso/x.iso,media=cdrom"}, os: " "},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var nics []string
			for _, n := range pveNICs(tc.cfg) {
				nics = append(nics, fmt.Sprintf("%s %s %s %s/%d", n.slot, n.model, n.mac, n.bridge, n.vlan))
			}

			if got := strings.Join(nics, ", "); got != tc.nics {
				t.Errorf("NICs = %q, want %q", got, tc.nics)
			}

			disks := pveDisks(tc.cfg)
			os := " "

			if i := osDisk(tc.cfg, disks); i >= 0 {
				size, _ := profileSize(disks[i].size)
				os = disks[i].slot + " " + size
			}

			if os != tc.os {
				t.Errorf("OS disk = %q, want %q", os, tc.os)
			}
		})
	}
}

func TestProxmoxSizes(t *testing.T) {
	cases := []struct{ pve, size, why string }{
		{"32G", "32G", ""},
		{"1T", "1024G", ""},
		{"102400M", "100G", ""},
		{"34359738368", "32G", ""},
		{"33280M", "32G", "is 33280M, not a whole number of GiB: recorded as 32G (talforge compares whole GiB and never shrinks a disk)"},
		{"512M", "", "is 512M, less than 1 GiB"},
		{"", "", "has no size= option"},
		{"lots", "", `size "lots": "lots" is not a size like 40G`},
	}

	for _, tc := range cases {
		if size, why := profileSize(tc.pve); size != tc.size || why != tc.why {
			t.Errorf("profileSize(%q) = %q, %q; want %q, %q", tc.pve, size, why, tc.size, tc.why)
		}
	}
}

func TestProxmoxApplyTo(t *testing.T) {
	imp := &ProxmoxImport{Matches: []ProxmoxMatch{
		{Node: "cp-1", VMID: 101, PVENode: "pve", Cores: 2, Memory: 4096, Disk: "32G", LonghornDisk: "100G", Storage: "local-lvm", Bridge: "vmbr0", VLAN: 20, CPU: "host", MAC: "BC:24:11:AA:00:01"},
		{Node: "cp-2", VMID: 102, PVENode: "pve", Cores: 2, Memory: 4096, Disk: "32G", Storage: "local-lvm", Bridge: "vmbr0", VLAN: 20, CPU: "host", MAC: "BC:24:11:AA:00:02"},
		{Node: "w-1", VMID: 103, PVENode: "pve2", Cores: 4, Memory: 8192, Disk: "32G", LonghornDisk: "200G", Storage: "local-lvm", Bridge: "vmbr0", VLAN: 20, CPU: "host", MAC: "BC:24:11:AA:00:03"},
	}}
	imp.Defaults = suggestDefaults(imp.Matches)

	p := &profile.Proxmox{Endpoint: "https://pve:8006/api2/json"}
	nodes := []profile.Node{{Name: "cp-1", MAC: "bc:24:11:aa:00:01"}, {Name: "cp-2"}, {Name: "w-1"}, {Name: "w-2"}}
	imp.ApplyTo(p, nodes)

	got := fmt.Sprintf("%s %s %s %s %d %s %+v\n", p.Endpoint, p.Node, p.Storage, p.Bridge, p.VLAN, p.CPU, p.Defaults)
	for _, n := range nodes {
		got += fmt.Sprintf("%s vmid=%d pveNode=%q mac=%s %+v\n", n.Name, n.VMID, n.PVENode, n.MAC, n.VMSize)
	}

	// No default Longhorn disk: cp-2 has none, and a node cannot opt out of a default.
	want := `https://pve:8006/api2/json pve local-lvm vmbr0 20 host {Cores:2 Memory:4096 Disk:32G LonghornDisk:}
cp-1 vmid=101 pveNode="" mac=bc:24:11:aa:00:01 {Cores:0 Memory:0 Disk: LonghornDisk:100G}
cp-2 vmid=102 pveNode="" mac=BC:24:11:AA:00:02 {Cores:0 Memory:0 Disk: LonghornDisk:}
w-1 vmid=103 pveNode="pve2" mac=BC:24:11:AA:00:03 {Cores:4 Memory:8192 Disk: LonghornDisk:200G}
w-2 vmid=0 pveNode="" mac= {Cores:0 Memory:0 Disk: LonghornDisk:}
`
	if got != want {
		t.Errorf("profile:\n%s\nwant:\n%s", got, want)
	}
}
