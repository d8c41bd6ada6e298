// The Env: options, start and stop of the emulators it ties together, and its reconcile loop.

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart"
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
	// RebuildTime is how long longhorn-manager takes to rebuild a replica once its node is
	// back (default 300 ms).
	RebuildTime time.Duration
	// Latency models the slow steps of a real homelab (zero fields keep the small defaults).
	Latency Latency
}

// Latency is a latency model of the steps of `up` that take long on real machines. Each
// field is mapped onto the emulator that plays the step; zero keeps the emulator's default.
type Latency struct {
	// VMCreate is a PVE qmcreate or qmclone task (every other task takes TaskLatency).
	VMCreate time.Duration
	// ISOBoot is a VM's start until its Talos maintenance API answers (talosnode StartDelay,
	// counted from the VM's start in PVE).
	ISOBoot time.Duration
	// Install is a config sent to a node in maintenance mode until the node answers in
	// configured mode: applying it, install to disk and reboot (talosnode InstallDelay).
	Install time.Duration
	// Bootstrap is the etcd Bootstrap call until etcd runs with its first member (talosnode
	// EtcdStartDelay); the other control planes join JoinDelay later.
	Bootstrap time.Duration
	// LonghornRollout is the start of the Helm install until longhorn-manager has rolled out
	// and makes its Settings and BackupTarget (lhmanager RolloutTime).
	LonghornRollout time.Duration
}

// RealHomelab is the latency model of a real homelab (issue 16): tests scale it down.
var RealHomelab = Latency{
	VMCreate: 3 * time.Second, ISOBoot: 25 * time.Second, Install: 60 * time.Second,
	Bootstrap: 20 * time.Second, LonghornRollout: 90 * time.Second,
}

// Scaled is l with every figure multiplied by f (RealHomelab.Scaled(0.01): 1/100).
func (l Latency) Scaled(f float64) Latency {
	s := func(d time.Duration) time.Duration { return time.Duration(float64(d) * f) }
	return Latency{VMCreate: s(l.VMCreate), ISOBoot: s(l.ISOBoot), Install: s(l.Install), Bootstrap: s(l.Bootstrap), LonghornRollout: s(l.LonghornRollout)}
}

// pveLatency maps VMCreate onto the PVE task types that create a VM.
func (l Latency) pveLatency() map[string]time.Duration {
	if l.VMCreate <= 0 {
		return nil
	}
	return map[string]time.Duration{"qmcreate": l.VMCreate, "qmclone": l.VMCreate}
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

	cs      kubernetes.Interface
	cancel  context.CancelFunc
	done    chan struct{}
	nodeLog testLog

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

	eventsMu    sync.Mutex
	talosEvents []talosnode.Event

	// handMadeBoots are the VMs HandMade created, which boot Talos without cloud-init.
	handMadeBoots map[int]handMadeBoot
}

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

	pveSchema := pvesim.SchemaForTest(t, 9)

	e := &Env{
		t: t, opts: opts, Kube: kube, S3: srv, S3User: user,
		nodeLog: testLog{logf: t.Logf},
		nodes:   map[int]*vmNode{}, closedCalls: map[string]int{}, done: make(chan struct{}),
		dataRoot: t.TempDir(), dataDisks: map[diskID]bool{}, diskOfVM: map[int]string{},
	}
	e.data = lhdata.New(filepath.Join(e.dataRoot, "0"))
	// A shared server holds the backups of earlier tests: start from empty buckets.
	if err := emptyS3(context.Background(), srv); err != nil {
		t.Fatalf("e2e: empty the S3 server: %v", err)
	}
	e.cs = kubernetes.NewForConfigOrDie(kube.Config)
	e.PVE = pvesim.New(pvesim.Options{
		Schema: pveSchema, AuthFailDelay: -1, DefaultLatency: opts.TaskLatency, Latency: opts.Latency.pveLatency(),
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
	e.nodeLog.stop()
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
		Resync: 150 * time.Millisecond, Data: e.data, RebuildTime: e.opts.RebuildTime, RolloutTime: e.opts.Latency.LonghornRollout})
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

// testLog passes lines to a test's log until stopped: a gRPC handler can outlive its node
// (grpc.Server.Stop does not wait for handlers), and a test must not be logged to once it ended.
type testLog struct {
	mu      sync.Mutex
	stopped bool
	logf    func(format string, args ...any)
}

func (l *testLog) Logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.logf(format, args...)
	}
}

func (l *testLog) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
}
