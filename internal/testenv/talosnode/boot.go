// A node's life: going down, booting into the stage its config calls for, joining etcd and
// publishing the COSI resources clients read.

package talosnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	cosiv1alpha1 "github.com/cosi-project/runtime/api/v1alpha1"
	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/state"
	cosiserver "github.com/cosi-project/runtime/pkg/state/protobuf/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	machinetype "github.com/siderolabs/talos/pkg/machinery/config/machine"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

// retryBootEvery is how often a node that cannot come up yet (address still busy, worker waiting for trustd)
// tries again.
const retryBootEvery = 20 * time.Millisecond

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

	if n.srv != nil {
		n.cluster.setUp(n.ip.String(), false)
		n.emitLocked(false)
	}

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

// afterLocked runs fn with n.mu held once d has passed, unless the node is closed first; current
// says whether the node is still open and in the generation (boot) that scheduled it.
func (n *Node) afterLocked(d time.Duration, fn func(current bool)) {
	gen := n.gen

	n.wg.Go(func() {
		timer := time.NewTimer(d)
		defer timer.Stop()

		select {
		case <-n.done:
			return
		case <-timer.C:
		}

		n.mu.Lock()
		defer n.mu.Unlock()

		fn(!n.closed && n.gen == gen)
	})
}

func (n *Node) scheduleBootLocked(after time.Duration) {
	n.afterLocked(after, func(current bool) {
		if !current || n.dead || n.srv != nil {
			return
		}

		if n.stagedVersion != "" && n.failUpgradeBoot {
			n.failUpgradeBoot = false
			n.dead = true
			n.log("boot into %s failed: the node stays down (FailNextUpgradeBoot)", n.stagedVersion)

			return
		}

		if err := n.bootLocked(nil); err != nil {
			if why := err.Error(); why != n.postponed {
				n.postponed = why
				n.log("boot postponed, retrying every %s: %s", retryBootEvery, why)
			}

			n.scheduleBootLocked(retryBootEvery)

			return
		}

		n.postponed = ""
	})
}

// bootLocked brings the API up in the mode the node's disk state dictates.
func (n *Node) bootLocked(lis net.Listener) error {
	if n.pending != nil && !n.stuck {
		n.active, n.persistent = n.pending, n.pending

		// The install ran the config's installer image, so the node boots that image's version.
		if version, ok := imageVersion(installImage(n.pending.provider)); ok {
			n.version = version
		}
	}

	// A reboot after an upgrade boots the version the installer wrote.
	if n.stagedVersion != "" {
		n.version, n.stagedVersion = n.stagedVersion, ""
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
		grpc.StatsHandler(afterResponseHandler{n: n}),
	)

	machine.RegisterMachineServiceServer(srv, &machineService{n: n})

	// Older nodes lack the service, so a call answers Unimplemented (unknown service), which is
	// how clients tell them apart.
	if hasLifecycleAPI(n.version) {
		machine.RegisterLifecycleServiceServer(srv, &lifecycleService{n: n})
		machine.RegisterImageServiceServer(srv, &imageService{n: n})
	}

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
		// goDownLocked closes the listener before it stops the server: a node going down ends
		// Serve with net.ErrClosed, which is not worth a line in the test log.
		if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) && !errors.Is(err, net.ErrClosed) {
			n.log("serve: %v", err)
		}
	})

	if configured && n.active.provider.Machine().Type().IsControlPlane() {
		n.wg.Go(func() { n.joinEtcd(bootCtx, hostname) })
	}

	n.publishStateLocked()
	n.cluster.setUp(n.ip.String(), true)
	n.emitLocked(true)
	n.log("up on %s in %s mode as %q, Talos %s", n.addr, n.stage, hostname, n.version)

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

	n.publishExtensionsLocked(ctx)
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
