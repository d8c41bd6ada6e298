package talosnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cosiv1alpha1 "github.com/cosi-project/runtime/api/v1alpha1"
	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/cosi-project/runtime/pkg/state/impl/inmem"
	"github.com/cosi-project/runtime/pkg/state/impl/namespaced"
	cosiserver "github.com/cosi-project/runtime/pkg/state/protobuf/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	machinetype "github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

// DefaultTalosVersion is the Version tag an emulated node reports unless Options.TalosVersion says otherwise.
const DefaultTalosVersion = "v1.14.1"

// responseFlushGrace is how long a node waits after an RPC finished before it reboots, so the response that
// announced the reboot reaches the client first (a real node also takes a moment to begin its reboot).
const responseFlushGrace = 50 * time.Millisecond

// retryBootEvery is how often a node that cannot come up yet (address still busy, worker waiting for trustd)
// tries again.
const retryBootEvery = 20 * time.Millisecond

// Options configure one emulated node.
type Options struct {
	// Address is the host:port apid listens on. Port 0 picks a free port once; the node keeps it across
	// reboots. Use distinct loopback addresses (127.0.0.x) to emulate distinct machines. Default
	// "127.0.0.1:0"; a real node uses port 50000 (constants.ApidPort).
	Address string
	// Hostname is reported when the machine config sets none. Default "talos-" + the IP with dashes.
	Hostname string
	// Cluster is the etcd and trustd the node shares with other nodes. Default: a cluster of its own.
	Cluster *Cluster
	// Config, when set, makes the node start already installed and running this machine config.
	Config []byte
	// StartDelay keeps the first boot slow: connection refused until it has elapsed.
	StartDelay time.Duration
	// BootDelay is how long the node is down (connection refused) when it installs or reboots.
	BootDelay time.Duration
	// JoinDelay is how long a configured control plane takes to join an already bootstrapped etcd.
	JoinDelay time.Duration
	// BootstrapNotReadyFor makes Bootstrap answer FailedPrecondition "bootstrap is not available yet" for
	// this long after the node booted configured, as real nodes do while their services start.
	BootstrapNotReadyFor time.Duration
	// AutoReboots makes a configured node resolve an AUTO apply to a reboot (as Talos does for changes it
	// cannot apply live) instead of applying it in place.
	AutoReboots bool
	// TalosVersion is the tag Version reports. Default DefaultTalosVersion.
	TalosVersion string
	// Logf, when set, receives one line per lifecycle event (boot, apply, reboot), e.g. testing.T.Logf.
	Logf func(format string, args ...any)
}

// Node is one emulated Talos machine. Create it with Start and stop it with Close.
type Node struct {
	opts      Options
	cluster   *Cluster
	ip        net.IP
	addr      string
	st        state.State
	sensitive map[resource.Type]bool
	done      chan struct{}
	wg        sync.WaitGroup

	mu              sync.Mutex
	closed          bool
	gen             uint64
	srv             *grpc.Server
	lis             net.Listener
	cancelBoot      context.CancelFunc
	stage           runtime.MachineStage
	bootedAt        time.Time
	active          *loadedConfig
	persistent      *loadedConfig
	pending         *loadedConfig
	applyInProgress bool
	stuck           bool
	interrupts      map[string]interruptSpec
	calls           map[string]int
}

type loadedConfig struct {
	raw      []byte
	provider config.Provider
}

// Start creates the node and begins its first boot (immediately, or after Options.StartDelay).
func Start(ctx context.Context, opts Options) (*Node, error) {
	if opts.Address == "" {
		opts.Address = "127.0.0.1:0"
	}

	if opts.TalosVersion == "" {
		opts.TalosVersion = DefaultTalosVersion
	}

	host, _, err := net.SplitHostPort(opts.Address)
	if err != nil {
		return nil, fmt.Errorf("talosnode: address %q: %w", opts.Address, err)
	}

	ip := net.ParseIP(host)
	if ip == nil {
		return nil, fmt.Errorf("talosnode: address %q: host must be an IP address (Talos nodes are reached by static IP)", opts.Address)
	}

	if opts.Hostname == "" {
		opts.Hostname = "talos-" + strings.NewReplacer(".", "-", ":", "-").Replace(ip.String())
	}

	if opts.Cluster == nil {
		opts.Cluster = NewCluster()
	}

	n := &Node{
		opts:       opts,
		cluster:    opts.Cluster,
		ip:         ip,
		st:         state.WrapCore(namespaced.NewState(inmem.Build)),
		sensitive:  sensitiveTypes(),
		done:       make(chan struct{}),
		stage:      runtime.MachineStageBooting,
		interrupts: map[string]interruptSpec{},
		calls:      map[string]int{},
	}

	if opts.Config != nil {
		cfg, err := loadConfig(opts.Config)
		if err != nil {
			return nil, fmt.Errorf("talosnode: Options.Config: %w", err)
		}

		n.active, n.persistent = cfg, cfg
	}

	// Bind once to learn the port (port 0) and to fail early on a bad address.
	lis, err := (&net.ListenConfig{}).Listen(ctx, "tcp", opts.Address)
	if err != nil {
		return nil, fmt.Errorf("talosnode: listen %s: %w", opts.Address, err)
	}

	n.addr = lis.Addr().String()

	if opts.StartDelay > 0 {
		if err := lis.Close(); err != nil {
			return nil, fmt.Errorf("talosnode: %w", err)
		}

		n.mu.Lock()
		n.scheduleBootLocked(opts.StartDelay)
		n.mu.Unlock()

		return n, nil
	}

	n.mu.Lock()
	defer n.mu.Unlock()

	if err := n.bootLocked(lis); err != nil {
		_ = lis.Close() // the boot error is the one worth reporting

		return nil, fmt.Errorf("talosnode: boot: %w", err)
	}

	return n, nil
}

// Addr is the host:port the node's API answers on (also while it is down: that is where it will come back).
func (n *Node) Addr() string { return n.addr }

// IP is the node's address without the port.
func (n *Node) IP() string { return n.ip.String() }

// Port is the node's API port.
func (n *Node) Port() int {
	_, port, _ := net.SplitHostPort(n.addr) // n.addr came from a listener
	p, _ := strconv.Atoi(port)              // same

	return p
}

// Hostname is the hostname the node reports: the config's, or Options.Hostname.
func (n *Node) Hostname() string {
	n.mu.Lock()
	defer n.mu.Unlock()

	return n.hostnameLocked()
}

// Stage is the machine stage the node is in (Booting, Installing and Rebooting while it is down).
func (n *Node) Stage() runtime.MachineStage {
	n.mu.Lock()
	defer n.mu.Unlock()

	return n.stage
}

// Up reports whether the node's API is accepting connections.
func (n *Node) Up() bool {
	n.mu.Lock()
	defer n.mu.Unlock()

	return n.srv != nil
}

// ActiveConfig returns the machine config the node runs (nil in maintenance mode).
func (n *Node) ActiveConfig() []byte {
	n.mu.Lock()
	defer n.mu.Unlock()

	if n.active == nil {
		return nil
	}

	return slices.Clone(n.active.raw)
}

// Calls returns how many RPCs of the given full method name (e.g. machine.MachineService_Bootstrap_FullMethodName)
// reached the node, authorized or not.
func (n *Node) Calls(fullMethod string) int {
	n.mu.Lock()
	defer n.mu.Unlock()

	return n.calls[fullMethod]
}

// SetStuckInMaintenance makes every later install fail: the node accepts a config in maintenance mode,
// reboots, and comes back in maintenance mode without it.
func (n *Node) SetStuckInMaintenance(stuck bool) {
	n.mu.Lock()
	defer n.mu.Unlock()

	n.stuck = stuck
}

// RefuseFor takes the node's API down now (listener closed, open connections dropped) and brings it back on
// the same address, in the same mode, after d.
func (n *Node) RefuseFor(d time.Duration) {
	n.log("refusing connections for %s", d)
	n.reboot(n.currentStage(), d)
}

// InterruptNext makes the node reboot in the middle of the next call of fullMethod: the connection is dropped
// before any response. With afterEffect the call's effect happens first (for ApplyConfiguration: the config
// was accepted and the node installs it); without, the call is lost. The node is down for Options.BootDelay.
func (n *Node) InterruptNext(fullMethod string, afterEffect bool) {
	n.mu.Lock()
	defer n.mu.Unlock()

	n.interrupts[fullMethod] = interruptSpec{afterEffect: afterEffect}
}

// Close stops the node for good.
func (n *Node) Close() error {
	n.mu.Lock()

	if n.closed {
		n.mu.Unlock()

		return nil
	}

	n.closed = true
	close(n.done)
	srv := n.goDownLocked(runtime.MachineStageShuttingDown)
	n.mu.Unlock()

	if srv != nil {
		srv.Stop()
	}

	n.wg.Wait()

	return nil
}

func (n *Node) currentStage() runtime.MachineStage {
	n.mu.Lock()
	defer n.mu.Unlock()

	return n.stage
}

// reboot takes the node down in the given stage and schedules its next boot.
func (n *Node) reboot(downStage runtime.MachineStage, downFor time.Duration) {
	n.mu.Lock()

	if n.closed {
		n.mu.Unlock()

		return
	}

	srv := n.goDownLocked(downStage)
	n.scheduleBootLocked(downFor)
	n.mu.Unlock()

	if srv != nil {
		srv.Stop()
	}
}

// goDownLocked marks the node down, closes its listener (so connects are refused from now on, even if the
// Serve goroutine has not started yet) and returns the server the caller must Stop once n.mu is released
// (Stop drops every connection; it does not wait for running handlers).
func (n *Node) goDownLocked(stage runtime.MachineStage) *grpc.Server {
	n.gen++
	n.stage = stage

	if n.cancelBoot != nil {
		n.cancelBoot()
		n.cancelBoot = nil
	}

	if n.lis != nil {
		_ = n.lis.Close() // Serve may have closed it already
		n.lis = nil
	}

	srv := n.srv
	n.srv = nil

	return srv
}

func (n *Node) scheduleBootLocked(after time.Duration) {
	gen := n.gen

	n.wg.Go(func() {
		timer := time.NewTimer(after)
		defer timer.Stop()

		select {
		case <-n.done:
			return
		case <-timer.C:
		}

		n.mu.Lock()
		defer n.mu.Unlock()

		if n.closed || n.gen != gen || n.srv != nil {
			return
		}

		if err := n.bootLocked(nil); err != nil {
			n.log("boot postponed: %v", err)
			n.scheduleBootLocked(retryBootEvery)
		}
	})
}

// bootLocked brings the API up in the mode the node's disk state dictates.
func (n *Node) bootLocked(lis net.Listener) error {
	if n.pending != nil && !n.stuck {
		n.active, n.persistent = n.pending, n.pending
	}

	n.pending = nil
	n.applyInProgress = false

	// A reboot activates a staged config.
	if n.persistent != nil {
		n.active = n.persistent
	}

	hostname := n.hostnameLocked()

	var (
		tlsConfig  *tls.Config
		err        error
		configured = n.active != nil
	)

	if configured {
		cfg := n.active.provider
		if cfg.Machine().Type().IsControlPlane() {
			n.cluster.publishOSCA(cfg.Machine().Security().IssuingCA())
		}

		tlsConfig, err = configuredTLS(cfg, n.cluster.trustdCA(), n.ip, hostname)
	} else {
		tlsConfig, err = maintenanceTLS(n.ip, hostname)
	}

	if err != nil {
		return err
	}

	if lis == nil {
		lis, err = net.Listen("tcp", n.addr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", n.addr, err)
		}
	}

	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsConfig)),
		grpc.ChainUnaryInterceptor(n.unaryInterceptor),
		grpc.ChainStreamInterceptor(n.streamInterceptor),
		grpc.StatsHandler(afterResponseHandler{}),
	)

	machine.RegisterMachineServiceServer(srv, &machineService{n: n})
	cosiv1alpha1.RegisterStateServer(srv, cosiserver.NewState(state.Filter(n.st, n.cosiAccessRule)))

	bootCtx, cancel := context.WithCancel(context.Background())

	n.srv = srv
	n.lis = lis
	n.cancelBoot = cancel
	n.bootedAt = time.Now()

	if configured {
		n.stage = runtime.MachineStageRunning
	} else {
		n.stage = runtime.MachineStageMaintenance
	}

	n.wg.Go(func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			n.log("serve: %v", err)
		}
	})

	if configured && n.active.provider.Machine().Type().IsControlPlane() {
		n.wg.Go(func() { n.joinEtcd(bootCtx, hostname) })
	}

	n.publishStateLocked()
	n.log("up on %s in %s mode as %q", n.addr, n.stage, hostname)

	return nil
}

// joinEtcd makes a configured control plane an etcd member once etcd was bootstrapped (by any node).
func (n *Node) joinEtcd(ctx context.Context, hostname string) {
	select {
	case <-ctx.Done():
		return
	case <-n.cluster.bootstrapped:
	}

	if n.cluster.isMember(n.ip.String()) {
		return
	}

	timer := time.NewTimer(n.opts.JoinDelay)
	defer timer.Stop()

	select {
	case <-ctx.Done():
		return
	case <-timer.C:
	}

	n.mu.Lock()
	defer n.mu.Unlock()

	if ctx.Err() != nil {
		return
	}

	n.cluster.join(hostname, n.ip.String())
	n.publishStateLocked()
	n.log("joined etcd")
}

func (n *Node) hostnameLocked() string {
	if n.active != nil {
		if hc := n.active.provider.NetworkHostnameConfig(); hc != nil && hc.Hostname() != "" {
			return hc.Hostname()
		}
	}

	return n.opts.Hostname
}

func (n *Node) machineTypeLocked() machinetype.Type {
	if n.active == nil {
		return machinetype.TypeUnknown
	}

	return n.active.provider.Machine().Type()
}

// publishStateLocked mirrors the node's state into the COSI resources clients read.
func (n *Node) publishStateLocked() {
	ctx := context.Background()

	ms := runtime.NewMachineStatus()
	ms.TypedSpec().Stage = n.stage
	ms.TypedSpec().Status.Ready = n.readyLocked()

	if !ms.TypedSpec().Status.Ready && n.stage == runtime.MachineStageRunning {
		ms.TypedSpec().Status.UnmetConditions = []runtime.UnmetCondition{{Name: "etcd", Reason: "service not healthy"}}
	}

	mt := configres.NewMachineType()
	mt.SetMachineType(n.machineTypeLocked())

	resources := []resource.Resource{ms, mt}

	if n.active != nil {
		resources = append(resources, configres.NewMachineConfigWithID(n.active.provider, configres.ActiveID))
	}

	if n.persistent != nil {
		resources = append(resources, configres.NewMachineConfigWithID(n.persistent.provider, configres.PersistentID))
	}

	for _, r := range resources {
		if err := putResource(ctx, n.st, r); err != nil {
			n.log("publish %s: %v", r.Metadata().Type(), err)
		}
	}
}

func (n *Node) readyLocked() bool {
	if n.stage != runtime.MachineStageRunning {
		return false
	}

	if n.machineTypeLocked().IsControlPlane() {
		return n.cluster.isMember(n.ip.String())
	}

	return true
}

// putResource creates r or replaces the stored resource of the same id with it.
func putResource(ctx context.Context, st state.State, r resource.Resource) error {
	cur, err := st.Get(ctx, r.Metadata())
	if state.IsNotFoundError(err) {
		return st.Create(ctx, r)
	}

	if err != nil {
		return err
	}

	r.Metadata().SetVersion(cur.Metadata().Version())

	return st.Update(ctx, r)
}

func (n *Node) log(format string, args ...any) {
	if n.opts.Logf != nil {
		n.opts.Logf("talosnode %s: "+format, append([]any{n.addr}, args...)...)
	}
}

// metalMode is the runtime mode machinery validates against for a bare-metal/VM install. machinery exports
// no metal mode (it lives in the main Talos module), so the three methods are spelled out here.
type metalMode struct{}

func (metalMode) String() string        { return "metal" }
func (metalMode) RequiresInstall() bool { return true }
func (metalMode) InContainer() bool     { return false }

// loadConfig parses and validates a machine config the way a metal node does before accepting it.
func loadConfig(raw []byte) (*loadedConfig, error) {
	provider, err := configloader.NewFromBytes(raw)
	if err != nil {
		return nil, fmt.Errorf("failed to parse config: %w", err)
	}

	if _, err := provider.ValidateAsClient(metalMode{}); err != nil {
		return nil, fmt.Errorf("configuration validation failed: %w", err)
	}

	return &loadedConfig{raw: slices.Clone(raw), provider: provider}, nil
}

func joinHostPort(host, port string) string { return net.JoinHostPort(host, port) }

// TalosPort is the port real nodes serve apid on.
const TalosPort = constants.ApidPort
