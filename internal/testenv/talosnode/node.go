// The Node: options, start and close, the accessors and fault switches tests use, and config
// loading.

package talosnode

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/cosi-project/runtime/pkg/state/impl/inmem"
	"github.com/cosi-project/runtime/pkg/state/impl/namespaced"
	"google.golang.org/grpc"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

// DefaultTalosVersion is the Version tag an emulated node reports unless Options.TalosVersion says otherwise.
const DefaultTalosVersion = "v1.14.1"

// responseFlushGrace is how long a node waits after an RPC finished before it reboots, so the response that
// announced the reboot reaches the client first (a real node also takes a moment to begin its reboot).
const responseFlushGrace = 50 * time.Millisecond

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
	// InstallDelay, when set, is how long an install from maintenance mode takes, from the
	// ApplyConfiguration request's arrival until the API answers in configured mode (applying the
	// config, install to disk and reboot, as one figure of a latency model: the node's own work on
	// the config, parsing and validating it, is part of it, as it is of a real node's minute).
	// Default: the response flush grace plus BootDelay.
	InstallDelay time.Duration
	// EtcdStartDelay is how long etcd takes to start after a Bootstrap call was accepted: the node
	// becomes etcd's first member (and the cluster bootstrapped) this long after the call. Until
	// then its etcd service is Preparing and a repeated Bootstrap answers AlreadyExists. Default 0:
	// at once.
	EtcdStartDelay time.Duration
	// BootstrapNotReadyFor makes Bootstrap answer FailedPrecondition "bootstrap is not available yet" for
	// this long after the node booted configured, as real nodes do while their services start.
	BootstrapNotReadyFor time.Duration
	// AutoReboots makes a configured node resolve an AUTO apply to a reboot (as Talos does for changes it
	// cannot apply live) instead of applying it in place.
	AutoReboots bool
	// TalosVersion is the Talos version the node runs at first (the tag Version reports). It
	// changes when the node installs from an image of another version (an install from
	// maintenance mode, an upgrade). Versions > 1.13.0-alpha.2 serve LifecycleService. Default
	// DefaultTalosVersion.
	TalosVersion string
	// Logf, when set, receives one line per lifecycle event (boot, apply, reboot), e.g. testing.T.Logf.
	Logf func(format string, args ...any)
	// OnEvent, when set, is called every time the node's API goes down or comes up. It is called
	// synchronously with the node's lock held, so that events of one node arrive in order and
	// tests can check invariants across nodes (never two down at once); it must not call back
	// into the node.
	OnEvent func(Event)
}

// Event is a node's API going down (Up false; Stage is why: Rebooting, Upgrading, Installing,
// ShuttingDown…) or coming up (Stage Running or Maintenance), with the version it runs then.
type Event struct {
	Addr    string
	Up      bool
	Stage   runtime.MachineStage
	Version string
	At      time.Time
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

	mu         sync.Mutex
	closed     bool
	gen        uint64
	srv        *grpc.Server
	lis        net.Listener
	cancelBoot context.CancelFunc
	stage      runtime.MachineStage
	bootedAt   time.Time
	// postponed is why the last boot attempt was postponed: logged once per reason, not every retry.
	postponed       string
	active          *loadedConfig
	persistent      *loadedConfig
	pending         *loadedConfig
	applyInProgress bool
	stuck           bool
	version         string
	stagedVersion   string // installed by an upgrade, boots on the next reboot
	upgrading       bool
	failUpgradeBoot bool
	dead            bool // never boots again
	interrupts      map[string]interruptSpec
	calls           map[string]int
	conns           int             // connections accepted (TLS handshakes that succeeded), across reboots
	pulled          map[string]bool // images in the containerd store (pulledKey); a disk keeps them across reboots
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
		version:    opts.TalosVersion,
		interrupts: map[string]interruptSpec{},
		calls:      map[string]int{},
		pulled:     map[string]bool{},
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

// Version is the Talos version the node runs (the tag the Version RPC reports).
func (n *Node) Version() string {
	n.mu.Lock()
	defer n.mu.Unlock()

	return n.version
}

// BootID identifies the node's current boot (what the kubelet reports as nodeInfo.bootID):
// it changes on every boot, "" before the first.
func (n *Node) BootID() string {
	n.mu.Lock()
	defer n.mu.Unlock()

	if n.bootedAt.IsZero() {
		return ""
	}

	return strconv.FormatInt(n.bootedAt.UnixNano(), 36)
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

// Conns returns how many connections the node accepted (each one a TLS handshake that succeeded),
// across reboots.
func (n *Node) Conns() int {
	n.mu.Lock()
	defer n.mu.Unlock()

	return n.conns
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

// FailNextUpgradeBoot makes the next boot into an upgraded version (after either upgrade API
// and the reboot that follows) never happen: the node stays down, connection refused, until
// Close, like a machine that does not come back from its upgrade.
func (n *Node) FailNextUpgradeBoot() {
	n.mu.Lock()
	defer n.mu.Unlock()

	n.failUpgradeBoot = true
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

// emitLocked reports the node's API going up or down to Options.OnEvent.
func (n *Node) emitLocked(up bool) {
	if n.opts.OnEvent != nil {
		n.opts.OnEvent(Event{Addr: n.addr, Up: up, Stage: n.stage, Version: n.version, At: time.Now()})
	}
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
