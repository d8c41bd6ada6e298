package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/talforge/talforge/internal/testenv/helmrepo"
	"github.com/talforge/talforge/internal/testenv/kubeenv"
	"github.com/talforge/talforge/internal/testenv/lhchart"
	"github.com/talforge/talforge/internal/testenv/lhdata"
	"github.com/talforge/talforge/internal/testenv/lhmanager"
	"github.com/talforge/talforge/internal/testenv/pvesim"
	"github.com/talforge/talforge/internal/testenv/s3server"
	"github.com/talforge/talforge/internal/testenv/talosnode"
	"github.com/talforge/talforge/pkg/backuptarget"
	"github.com/talforge/talforge/pkg/proxmox"
)

// Token is the Proxmox API token the emulator accepts (minimal privileges on local-lvm,
// local, pve and vmbr0).
const (
	TokenID     = "talforge@pve!e2e"
	TokenSecret = "5f0c8a2e-7b1d-4e3f-9a6c-0d1e2f3a4b5c"
)

// Options tune an Env. The zero value gives small latencies.
type Options struct {
	// Addresses are the node IPs the test profile uses; the Talos port is checked free on
	// each (they must be loopback addresses, e.g. 127.0.71.11).
	Addresses []string
	// TaskLatency is every PVE task's duration (default 5 ms).
	TaskLatency time.Duration
	// BootDelay is how long a Talos node is down while it installs or reboots (default 50 ms).
	BootDelay time.Duration
	// JoinDelay is how long a control plane takes to join etcd (default 20 ms).
	JoinDelay time.Duration
	// Poll is how often the Env looks at the emulators (default 10 ms).
	Poll time.Duration
}

// Env is one emulated homelab. Create it with Start.
type Env struct {
	t    testing.TB
	opts Options

	// PVE is the Proxmox VE emulator.
	PVE *pvesim.Server
	// Kube is the real test control plane.
	Kube *kubeenv.ControlPlane
	// Repo serves every test chart version of Longhorn.
	Repo *helmrepo.Repo
	// S3 is the S3 server behind every backup target; its buckets outlive every cluster.
	S3 *s3server.Server
	// S3User reads, writes and lists every bucket: the test's own view of the store
	// (Backups, S3Credentials). Projects get users of their own, holding only talforge's
	// policy (Project.S3User).
	S3User s3server.User
	// TalosPort is the Talos API port of every node.
	TalosPort int

	cs     kubernetes.Interface
	cancel context.CancelFunc
	done   chan struct{}

	mu          sync.Mutex
	etcd        *talosnode.Cluster
	nodes       map[int]*vmNode // by VMID
	seenVMs     map[int]bool    // VMs that ran a node in this etcd generation
	goneVMs     map[int]bool    // of those, the ones seen deleted
	closedCalls map[string]int  // RPC counts of nodes that are gone
	resets      int
	loopErr     error
	stopManager func()
	manager     *lhmanager.Manager

	// Longhorn's volume data: on the nodes' data disks in a real cluster, so it survives a
	// cluster loss when one of those disks does (see loseClusterLocked).
	dataRoot  string
	dataGen   int
	data      *lhdata.Store
	dataDisks map[diskID]bool // Longhorn data disks of this generation's VMs
	diskOfVM  map[int]string  // VMID -> volume ID of its data disk, as last recorded
}

// diskID identifies a PVE volume across move_disk, which renames it (qemu-server
// Qemu.pm move_vm_disk) but keeps what it is.
type diskID struct {
	storage, format string
	size, ctime     int64
}

type vmNode struct {
	ip   string
	node *talosnode.Node
}

var (
	schemaOnce sync.Once
	pveSchema  *pvesim.Schema
	schemaErr  error
)

// Start builds the Env on a control plane (share one per test package with kubeenv.Shared:
// Start wipes it first, so tests do not see each other's objects). Everything stops when the
// test ends.
//
// Start runs an S3 server of its own; Shared.Start shares one per test package.
func Start(t testing.TB, kube *kubeenv.ControlPlane, opts Options) *Env {
	t.Helper()
	user := newS3User()
	srv := s3server.Start(t, s3server.Options{Users: []s3server.User{user}})
	return start(t, kube, srv, user, opts)
}

// newS3User is Env.S3User: any bucket, since profiles name theirs.
func newS3User() s3server.User {
	return s3server.NewUser("talforge-e2e", "Read", "Write", "List")
}

func start(t testing.TB, kube *kubeenv.ControlPlane, srv *s3server.Server, user s3server.User, opts Options) *Env {
	t.Helper()
	if opts.TaskLatency == 0 {
		opts.TaskLatency = 5 * time.Millisecond
	}
	if opts.BootDelay == 0 {
		opts.BootDelay = 50 * time.Millisecond
	}
	if opts.JoinDelay == 0 {
		opts.JoinDelay = 20 * time.Millisecond
	}
	if opts.Poll == 0 {
		opts.Poll = 10 * time.Millisecond
	}

	schemaOnce.Do(func() {
		var p string
		if p, schemaErr = pvesim.FindSchema(9); schemaErr == nil {
			pveSchema, schemaErr = pvesim.LoadSchema(p)
		}
	})
	if schemaErr != nil && !errors.Is(schemaErr, pvesim.ErrSchemaNotFound) {
		t.Fatalf("e2e: PVE schema: %v", schemaErr)
	}
	if pveSchema == nil {
		t.Logf("e2e: PVE API schema fixture not found: requests are not schema-checked")
	}

	e := &Env{
		t: t, opts: opts, Kube: kube, S3: srv, S3User: user,
		nodes: map[int]*vmNode{}, closedCalls: map[string]int{}, done: make(chan struct{}),
		dataRoot: t.TempDir(), dataDisks: map[diskID]bool{}, diskOfVM: map[int]string{},
	}
	e.data = lhdata.New(filepath.Join(e.dataRoot, "0"))
	// A shared server holds the backups of earlier tests: start from empty buckets.
	if err := emptyS3(context.Background(), srv); err != nil {
		t.Fatalf("e2e: empty the S3 server: %v", err)
	}
	e.cs = kubernetes.NewForConfigOrDie(kube.Config)
	e.PVE = pvesim.New(pvesim.Options{
		Schema: pveSchema, AuthFailDelay: -1, DefaultLatency: opts.TaskLatency,
		Tokens: []pvesim.Token{{ID: TokenID, Secret: TokenSecret, ACL: pvesim.MinimalACL("local-lvm", "local", "pve", "vmbr0")}},
	})
	t.Cleanup(e.PVE.Close)

	var charts []*chart.Chart
	for _, v := range lhchart.Versions {
		ch, err := lhchart.Chart(v)
		if err != nil {
			t.Fatal(err)
		}
		charts = append(charts, ch)
	}
	e.Repo = helmrepo.Start(t, charts...)

	var err error
	if e.TalosPort, err = freePort(opts.Addresses); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	if err := Wipe(ctx, kube.Config); err != nil {
		t.Fatalf("e2e: wipe the control plane: %v", err)
	}
	e.newEtcd()
	if err := e.startManager(); err != nil {
		t.Fatal(err)
	}

	ctx, e.cancel = context.WithCancel(ctx)
	go e.loop(ctx)
	t.Cleanup(e.stop)
	return e
}

func (e *Env) stop() {
	e.cancel()
	<-e.done
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, n := range e.nodes {
		_ = n.node.Close() // Close never fails
		delete(e.nodes, id)
	}
	if e.stopManager != nil {
		e.stopManager()
	}
	if e.loopErr != nil {
		e.t.Errorf("e2e: %v", e.loopErr)
	}
}

func (e *Env) newEtcd() {
	e.etcd = talosnode.NewCluster()
	e.etcd.SetKubeconfig(e.Kube.Kubeconfig)
	e.seenVMs, e.goneVMs = map[int]bool{}, map[int]bool{}
}

// startManager runs a fresh longhorn-manager (with its data path over the current volume
// data and the S3 server) on the apiserver.
func (e *Env) startManager() error {
	m, err := lhmanager.New(e.Kube.Config, lhmanager.Options{Logf: func(f string, a ...any) { e.t.Logf("lhmanager: "+f, a...) },
		Resync: 150 * time.Millisecond, Data: e.data})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = m.Run(ctx) })        // ends with ctx
	wg.Go(func() { _ = m.RunBackups(ctx) }) // ends with ctx
	e.manager = m
	e.stopManager = func() { cancel(); wg.Wait() }
	return nil
}

// Data is the current Longhorn volume data (also the Manager's).
func (e *Env) Data() *lhdata.Store {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.data
}

// S3Credentials are S3User's keys with the server's endpoint, in the shape of Longhorn's
// credential Secret. A project's credentials file holds its own user's keys instead
// (Project.S3User).
func (e *Env) S3Credentials() backuptarget.Credentials {
	return e.S3.Credentials(e.S3User)
}

// Backups lists the backups in a backup target (e.g. s3://bucket@region/) with Longhorn's
// library, as a new cluster would find them (with S3User's keys, so it sees any target).
func (e *Env) Backups(ctx context.Context, target string) ([]lhdata.StoredBackup, error) {
	return lhdata.ListBackups(ctx, e.S3Credentials(), target)
}

// Manager is the current fake longhorn-manager (a new one runs after every cluster loss).
func (e *Env) Manager() *lhmanager.Manager {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.manager
}

// loop reacts to the emulators until ctx ends.
func (e *Env) loop(ctx context.Context) {
	defer close(e.done)
	tick := time.NewTicker(e.opts.Poll)
	defer tick.Stop()
	kubeEvery := max(1, int(50*time.Millisecond/e.opts.Poll))
	for i := 0; ; i++ {
		if err := e.syncVMs(ctx); err != nil && ctx.Err() == nil {
			e.fail(err)
		}
		if i%kubeEvery == 0 {
			if err := e.syncKube(ctx); err != nil && ctx.Err() == nil {
				e.t.Logf("e2e: %v", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (e *Env) fail(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.loopErr == nil {
		e.loopErr = err
	}
}

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
		ip := ipOf(vm.Config)
		n, ok := e.nodes[vm.ID]
		switch {
		case ok && (!vm.Running || n.ip != ip):
			e.closeNodeLocked(vm.ID)
		case !ok && vm.Running && ip != "":
			node, err := talosnode.Start(ctx, talosnode.Options{
				Address: net.JoinHostPort(ip, strconv.Itoa(e.TalosPort)), Cluster: e.etcd,
				BootDelay: e.opts.BootDelay, JoinDelay: e.opts.JoinDelay,
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

// syncKube registers configured nodes with Kubernetes (the kubelet's job) and binds
// pre-bound PV/PVC pairs (kube-controller-manager's).
func (e *Env) syncKube(ctx context.Context) error {
	type reg struct{ name, ip string }
	var regs []reg
	e.mu.Lock()
	for _, n := range e.nodes {
		if n.node.Up() && n.node.ActiveConfig() != nil {
			regs = append(regs, reg{n.node.Hostname(), n.ip})
		}
	}
	e.mu.Unlock()
	for _, r := range regs {
		if err := e.registerNode(ctx, r.name, r.ip); err != nil {
			return err
		}
	}
	return e.bindVolumes(ctx)
}

func (e *Env) registerNode(ctx context.Context, name, ip string) error {
	if _, err := e.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); err == nil {
		return nil
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	n, err := e.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: name, Labels: map[string]string{"kubernetes.io/hostname": name},
	}}, metav1.CreateOptions{})
	if err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return fmt.Errorf("register node %s: %w", name, err)
	}
	now := metav1.Now()
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		Message: "kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now}}
	if _, err := e.cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("node %s status: %w", name, err)
	}
	return nil
}

func (e *Env) bindVolumes(ctx context.Context) error {
	pvs, err := e.cs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range pvs.Items {
		pv := &pvs.Items[i]
		ref := pv.Spec.ClaimRef
		if ref == nil || pv.Status.Phase == corev1.VolumeBound {
			continue
		}
		pvc, err := e.cs.CoreV1().PersistentVolumeClaims(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		if pvc.Spec.VolumeName != pv.Name {
			continue
		}
		pv.Status.Phase = corev1.VolumeBound
		if _, err := e.cs.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("bind PV %s: %w", pv.Name, err)
		}
		pvc.Status.Phase = corev1.ClaimBound
		pvc.Status.AccessModes = pv.Spec.AccessModes
		pvc.Status.Capacity = pv.Spec.Capacity
		if _, err := e.cs.CoreV1().PersistentVolumeClaims(ref.Namespace).UpdateStatus(ctx, pvc, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("bind PVC %s/%s: %w", ref.Namespace, ref.Name, err)
		}
	}
	return nil
}

var countedMethods = []string{
	"/machine.MachineService/ApplyConfiguration",
	"/machine.MachineService/Bootstrap",
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

// freePort finds a port free on every address.
func freePort(addrs []string) (int, error) {
	if len(addrs) == 0 {
		addrs = []string{"127.0.0.1"}
	}
	for range 50 {
		lis, err := net.Listen("tcp", net.JoinHostPort(addrs[0], "0"))
		if err != nil {
			return 0, fmt.Errorf("e2e: %w (node addresses must be loopback addresses)", err)
		}
		port := lis.Addr().(*net.TCPAddr).Port
		_ = lis.Close() // probe
		free := true
		for _, a := range addrs[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(a, strconv.Itoa(port)))
			if err != nil {
				free = false
				break
			}
			_ = l.Close() // probe
		}
		if free {
			return port, nil
		}
	}
	return 0, errors.New("e2e: no port is free on every node address")
}
