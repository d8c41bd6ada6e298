// PVE VMs to Talos nodes: a node per running VM, the loss of the cluster (every VM gone, or
// LoseCluster) and the RPC counts tests assert on.

package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/talforge/talforge/internal/testenv/lhdata"
	"github.com/talforge/talforge/internal/testenv/pvesim"
	"github.com/talforge/talforge/internal/testenv/talosnode"
	"github.com/talforge/talforge/pkg/proxmox"
)

// diskID identifies a PVE volume across move_disk, which renames it (qemu-server
// Qemu.pm move_vm_disk) but keeps what it is.
type diskID struct {
	storage, format string
	size, ctime     int64
}

type vmNode struct {
	ip   string
	node *talosnode.Node
	name string // its Kubernetes node name, once it ran configured

	// kubelet is the kubelet version of the config whose digest is cfgSum: parsing a machine
	// config on every kube sync of every node would take a core of its own.
	cfgSum  [sha256.Size]byte
	kubelet string
}

// kubeletOf is the kubelet version of cfg, the node's active config.
func (n *vmNode) kubeletOf(cfg []byte) string {
	if sum := sha256.Sum256(cfg); sum != n.cfgSum {
		n.cfgSum, n.kubelet = sum, kubeletVersion(cfg)
	}
	return n.kubelet
}

// isoVersion is the Talos version of the boot ISO a VM has attached (talforge names it
// talos-<version>-<platform>-<arch>-<schematic>.iso), "" for none.
func isoVersion(cfg map[string]string) string {
	m := isoName.FindStringSubmatch(cfg["ide0"])
	if m == nil {
		return ""
	}
	return m[1]
}

var isoName = regexp.MustCompile(`iso/talos-(v\d+\.\d+\.\d+[^-]*)-`)

// ipOf reads the static address from a VM's cloud-init ipconfig0 ("ip=10.0.0.5/24,gw=...").
func ipOf(cfg map[string]string) string {
	for _, part := range strings.Split(cfg["ipconfig0"], ",") {
		if v, ok := strings.CutPrefix(part, "ip="); ok {
			addr, _, _ := strings.Cut(v, "/")
			return addr
		}
	}
	return ""
}

func (e *Env) syncVMs(ctx context.Context) error {
	vms := e.PVE.VMs()
	exists := map[int]bool{}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, vm := range vms {
		exists[vm.ID] = true
		if vm.Running {
			e.recordDataDiskLocked(vm)
		}
		ip, version := ipOf(vm.Config), isoVersion(vm.Config)
		if hb, ok := e.handMadeBootLocked(vm.ID); ok && ip == "" {
			ip, version = hb.ip, hb.talosVersion // a hand-made VM: no cloud-init (HandMade)
		}
		n, ok := e.nodes[vm.ID]
		switch {
		case ok && (!vm.Running || n.ip != ip):
			e.closeNodeLocked(vm.ID)
		case !ok && vm.Running && ip != "":
			node, err := talosnode.Start(ctx, talosnode.Options{
				Address: net.JoinHostPort(ip, strconv.Itoa(e.TalosPort)), Cluster: e.etcd,
				BootDelay: e.opts.BootDelay, JoinDelay: e.opts.JoinDelay, TalosVersion: version,
				StartDelay: e.bootLeft(vm), InstallDelay: e.opts.Latency.Install, EtcdStartDelay: e.opts.Latency.Bootstrap,
				OnEvent: e.recordTalosEvent, Logf: e.nodeLog.Logf,
			})
			if err != nil {
				return fmt.Errorf("VM %d: boot Talos on %s: %w", vm.ID, ip, err)
			}
			e.nodes[vm.ID] = &vmNode{ip: ip, node: node}
			e.seenVMs[vm.ID] = true
		}
	}
	for id := range e.nodes {
		if !exists[id] {
			e.closeNodeLocked(id)
		}
	}
	if len(e.seenVMs) == 0 {
		return nil
	}
	// A VM seen deleted once is gone for this generation, even if PVE hands its VMID to a
	// new VM afterwards.
	for id := range e.seenVMs {
		if !exists[id] {
			e.goneVMs[id] = true
		}
	}
	for id := range e.seenVMs {
		if !e.goneVMs[id] {
			return nil
		}
	}
	// Every VM of this cluster was deleted, and etcd with their system disks.
	e.t.Logf("e2e: every VM was deleted: etcd and the Kubernetes API state are lost")
	return e.loseClusterLocked(ctx, true)
}

// bootLeft is how much of Latency.ISOBoot a VM that runs has still to wait for its maintenance
// API: the Env sees the VM start up to a Poll late, and the boot counts from the start.
func (e *Env) bootLeft(vm pvesim.VM) time.Duration {
	if e.opts.Latency.ISOBoot <= 0 {
		return 0
	}
	left := e.opts.Latency.ISOBoot - time.Since(vm.StartedAt)
	if vm.StartedAt.IsZero() {
		left = e.opts.Latency.ISOBoot
	}
	return max(left, time.Nanosecond) // StartDelay 0 would boot at once: the boot is due now
}

// LoseCluster makes the cluster state vanish as if every node's system disk was lost:
// etcd starts empty, the Kubernetes API is wiped, longhorn-manager starts afresh. The backup
// store (the bucket), the VMs and their data disks (so the Longhorn volume data) stay.
func (e *Env) LoseCluster(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.loseClusterLocked(ctx, false)
}

// recordDataDiskLocked remembers the Longhorn data disk of a running VM (slot
// proxmox.SlotData) by what survives a move_disk.
func (e *Env) recordDataDiskLocked(vm pvesim.VM) {
	volid, _, _ := strings.Cut(vm.Config[proxmox.SlotData], ",")
	volid = strings.TrimPrefix(volid, "file=")
	if volid == "" || e.diskOfVM[vm.ID] == volid {
		return
	}
	for _, v := range e.PVE.Volumes() {
		if v.VolID == volid {
			e.dataDisks[diskOf(v)] = true
			e.diskOfVM[vm.ID] = volid
		}
	}
}

func diskOf(v pvesim.Volume) diskID {
	return diskID{storage: v.Storage, format: v.Format, size: v.Size, ctime: v.CTime}
}

// dataSurvivesLocked reports whether a Longhorn data disk of this generation still exists
// (kept by `destroy --keep-data-disks`, parked on a holder VM, re-attached): then the
// replicas on it, and the volume data, survive.
func (e *Env) dataSurvivesLocked() bool {
	if len(e.dataDisks) == 0 {
		return true // no VM ever ran with a data disk: nothing of the data was on a VM
	}
	for _, v := range e.PVE.Volumes() {
		if e.dataDisks[diskOf(v)] {
			return true
		}
	}
	return false
}

// loseClusterLocked wipes the cluster state; with vmsGone (every VM was deleted) the volume
// data goes too unless one of the cluster's Longhorn data disks was kept.
func (e *Env) loseClusterLocked(ctx context.Context, vmsGone bool) error {
	for id := range e.nodes {
		e.closeNodeLocked(id) // a node that booted meanwhile boots again, into the new cluster
	}
	if e.stopManager != nil {
		e.stopManager()
	}
	if err := Wipe(ctx, e.Kube.Config); err != nil {
		return fmt.Errorf("wipe after cluster loss: %w", err)
	}
	if vmsGone && !e.dataSurvivesLocked() {
		e.t.Logf("e2e: no Longhorn data disk of the lost cluster is left: its volume data is gone")
		old := e.data.Dir()
		e.dataGen++
		e.data = lhdata.New(filepath.Join(e.dataRoot, strconv.Itoa(e.dataGen)))
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("drop the lost volume data: %w", err)
		}
	}
	e.dataDisks, e.diskOfVM = map[diskID]bool{}, map[int]string{}
	e.resets++
	e.newEtcd()
	return e.startManager()
}

func (e *Env) closeNodeLocked(id int) {
	n := e.nodes[id]
	for _, m := range countedMethods {
		e.closedCalls[m] += n.node.Calls(m)
	}
	_ = n.node.Close() // Close never fails
	delete(e.nodes, id)
}

var countedMethods = []string{
	"/machine.MachineService/ApplyConfiguration",
	"/machine.MachineService/Bootstrap",
	"/machine.MachineService/Upgrade",
	"/machine.LifecycleService/Upgrade",
}

// TalosCalls counts the RPCs of a method (e.g. "/machine.MachineService/ApplyConfiguration")
// that reached any node, past or present.
func (e *Env) TalosCalls(fullMethod string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.closedCalls[fullMethod]
	for _, v := range e.nodes {
		n += v.node.Calls(fullMethod)
	}
	return n
}

// Resets counts how often every VM was gone and the cluster state was wiped.
func (e *Env) Resets() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.resets
}

// EtcdMembers lists the current etcd's members.
func (e *Env) EtcdMembers() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.etcd.EtcdMembers()
}

// BootstrapCalls counts Bootstrap calls on the current etcd generation's control planes.
func (e *Env) BootstrapCalls() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.etcd.BootstrapCalls()
}

// recordTalosEvent keeps a node's API going down or up (called with that node's lock held:
// it only appends).
func (e *Env) recordTalosEvent(ev talosnode.Event) {
	e.eventsMu.Lock()
	defer e.eventsMu.Unlock()
	e.talosEvents = append(e.talosEvents, ev)
}

// TalosEvents are the nodes' APIs going down and coming up, in order, since the Env started.
func (e *Env) TalosEvents() []talosnode.Event {
	e.eventsMu.Lock()
	defer e.eventsMu.Unlock()
	return slices.Clone(e.talosEvents)
}

// TalosNode is the running node at ip (nil when none runs there).
func (e *Env) TalosNode(ip string) *talosnode.Node {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range e.nodes {
		if n.ip == ip {
			return n.node
		}
	}
	return nil
}
