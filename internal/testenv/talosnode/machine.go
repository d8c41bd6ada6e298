package talosnode

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	talosruntime "github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

// machineService implements the MachineService RPCs talforge uses; the rest answer Unimplemented.
type machineService struct {
	machine.UnimplementedMachineServiceServer

	n *Node
}

// Version answers in both modes (Talos ≥ 1.13 unified the maintenance and regular APIs).
func (s *machineService) Version(context.Context, *emptypb.Empty) (*machine.VersionResponse, error) {
	return &machine.VersionResponse{Messages: []*machine.Version{{
		Version: &machine.VersionInfo{
			Tag:       s.n.Version(),
			Sha:       "talosnode",
			GoVersion: runtime.Version(),
			Os:        "linux",
			Arch:      runtime.GOARCH,
		},
		Platform: &machine.PlatformInfo{Name: "nocloud", Mode: "cloud"},
		Features: &machine.FeaturesInfo{Rbac: true},
	}}}, nil
}

// ApplyConfiguration validates the config like a metal node and applies it according to the node's mode.
func (s *machineService) ApplyConfiguration(ctx context.Context, req *machine.ApplyConfigurationRequest) (*machine.ApplyConfigurationResponse, error) {
	n := s.n
	received := time.Now()

	cfg, err := loadConfig(req.GetData())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}

	n.mu.Lock()
	defer n.mu.Unlock()

	if n.applyInProgress {
		return nil, status.Error(codes.FailedPrecondition, "another apply configuration is already in progress")
	}

	if n.active == nil {
		return s.applyInMaintenanceLocked(ctx, req, cfg, received)
	}

	if current, desired := n.active.provider.Machine().Type(), cfg.provider.Machine().Type(); current != desired {
		// Emulator choice: the node refuses to change its role in place (talforge must never try).
		return nil, status.Errorf(codes.InvalidArgument, "machine type can't be changed from %q to %q", current, desired)
	}

	reply := func(mode machine.ApplyConfigurationRequest_Mode, details string) *machine.ApplyConfigurationResponse {
		if req.GetDryRun() {
			details = "Dry run summary:\n" + details + " (skipped in dry-run)."
		}

		return &machine.ApplyConfigurationResponse{Messages: []*machine.ApplyConfiguration{{Mode: mode, ModeDetails: details}}}
	}

	mode := req.GetMode()
	if mode == machine.ApplyConfigurationRequest_AUTO && n.opts.AutoReboots {
		//lint:ignore SA1019 AUTO resolves to a reboot here, and Talos reports it with this mode
		mode = machine.ApplyConfigurationRequest_REBOOT
	}

	switch mode {
	case machine.ApplyConfigurationRequest_AUTO, machine.ApplyConfigurationRequest_NO_REBOOT:
		// Emulator choice: unless Options.AutoReboots, every change can be applied without a reboot, so
		// AUTO resolves to NO_REBOOT.
		if !req.GetDryRun() {
			n.active, n.persistent = cfg, cfg
			n.publishStateLocked()
			n.log("applied config without a reboot")
		}

		return reply(machine.ApplyConfigurationRequest_NO_REBOOT, "Applied configuration without a reboot"), nil
	case machine.ApplyConfigurationRequest_STAGED:
		if !req.GetDryRun() {
			n.persistent = cfg
			n.publishStateLocked()
			n.log("staged config for the next reboot")
		}

		return reply(machine.ApplyConfigurationRequest_STAGED, "Staged configuration to be applied after the next reboot"), nil
	//lint:ignore SA1019 deprecated in the proto, still sent by older clients and honoured by Talos
	case machine.ApplyConfigurationRequest_REBOOT:
		if !req.GetDryRun() {
			n.persistent = cfg
			n.applyInProgress = true
			n.publishStateLocked()
			runAfterResponse(ctx, func() { n.reboot(talosruntime.MachineStageRebooting, n.opts.BootDelay) })
		}

		//lint:ignore SA1019 the reply names the mode the client asked for
		return reply(machine.ApplyConfigurationRequest_REBOOT, "Applied configuration with a reboot"), nil
	default:
		return nil, status.Errorf(codes.Unimplemented, "apply mode %s is not emulated", mode)
	}
}

func (s *machineService) applyInMaintenanceLocked(ctx context.Context, req *machine.ApplyConfigurationRequest, cfg *loadedConfig,
	received time.Time,
) (*machine.ApplyConfigurationResponse, error) {
	n := s.n

	// Talos ≥ 1.13 rewrites REBOOT to NO_REBOOT in maintenance: the node simply continues its boot (install,
	// then reboot into the installed system) with the new config.
	switch req.GetMode() { // the rest is refused below
	//lint:ignore SA1019 deprecated in the proto, still sent by older clients
	case machine.ApplyConfigurationRequest_AUTO, machine.ApplyConfigurationRequest_REBOOT, machine.ApplyConfigurationRequest_NO_REBOOT:
	default:
		return nil, status.Errorf(codes.Unimplemented, "apply configuration in %s mode is not supported in maintenance mode", req.GetMode())
	}

	if req.GetDryRun() {
		return &machine.ApplyConfigurationResponse{Messages: []*machine.ApplyConfiguration{{
			Mode:        machine.ApplyConfigurationRequest_NO_REBOOT,
			ModeDetails: "Dry run summary:\nNode is running in maintenance mode and does not have a config yet.",
		}}}, nil
	}

	n.pending = cfg
	n.applyInProgress = true
	n.log("accepted config in maintenance mode; installing")

	runAfterResponse(ctx, func() { n.reboot(talosruntime.MachineStageInstalling, n.installDownTime(received)) })

	return &machine.ApplyConfigurationResponse{Messages: []*machine.ApplyConfiguration{{
		Mode:        machine.ApplyConfigurationRequest_NO_REBOOT,
		ModeDetails: "Applied configuration in maintenance mode: the node installs and boots it",
	}}}, nil
}

// Bootstrap makes this control plane the first etcd member, exactly once per cluster.
func (s *machineService) Bootstrap(context.Context, *machine.BootstrapRequest) (*machine.BootstrapResponse, error) {
	n := s.n

	n.mu.Lock()
	defer n.mu.Unlock()

	if err := n.requireControlPlaneLocked("bootstrap"); err != nil {
		return nil, err
	}

	if time.Since(n.bootedAt) < n.opts.BootstrapNotReadyFor {
		return nil, status.Error(codes.FailedPrecondition, "bootstrap is not available yet")
	}

	if n.cluster.bootstrap(n.hostnameLocked(), n.ip.String(), n.opts.EtcdStartDelay > 0) {
		return nil, status.Error(codes.AlreadyExists, "etcd data directory is not empty")
	}

	if n.opts.EtcdStartDelay > 0 {
		n.startEtcdLocked(n.hostnameLocked())

		return &machine.BootstrapResponse{Messages: []*machine.Bootstrap{{}}}, nil
	}

	n.publishStateLocked()
	n.log("bootstrapped etcd")

	return &machine.BootstrapResponse{Messages: []*machine.Bootstrap{{}}}, nil
}

// EtcdMemberList lists the cluster's etcd members. Emulator choice: like Talos' non-local query, it asks
// the cluster's etcd through the control plane endpoints, so it fails until etcd has a member.
func (s *machineService) EtcdMemberList(_ context.Context, req *machine.EtcdMemberListRequest) (*machine.EtcdMemberListResponse, error) {
	n := s.n

	n.mu.Lock()
	defer n.mu.Unlock()

	if err := n.requireControlPlaneLocked("etcd member list"); err != nil {
		return nil, err
	}

	members := n.cluster.memberList()

	if req.GetQueryLocal() && !n.cluster.isMember(n.ip.String()) {
		return nil, status.Error(codes.Unavailable, "etcd is not running on this node")
	}

	if len(members) == 0 {
		return nil, status.Error(codes.Unknown, "failed to create etcd client: no controlplane endpoints discovered yet")
	}

	return &machine.EtcdMemberListResponse{Messages: []*machine.EtcdMembers{{Members: members}}}, nil
}

// ServiceList reports the node's services; etcd runs on control planes once they are etcd members.
func (s *machineService) ServiceList(context.Context, *emptypb.Empty) (*machine.ServiceListResponse, error) {
	n := s.n

	n.mu.Lock()
	defer n.mu.Unlock()

	since := timestamppb.New(n.bootedAt)
	running := func(id string) *machine.ServiceInfo {
		return &machine.ServiceInfo{
			Id:     id,
			State:  "Running",
			Health: &machine.ServiceHealth{Healthy: true, LastChange: since},
		}
	}

	services := []*machine.ServiceInfo{running("apid"), running("machined")}

	if n.active != nil {
		services = append(services, running("containerd"), running("cri"), running("kubelet"), running("udevd"))

		if n.machineTypeLocked().IsControlPlane() {
			etcd := &machine.ServiceInfo{
				Id:     "etcd",
				State:  "Preparing",
				Health: &machine.ServiceHealth{Unknown: true, LastMessage: "etcd is waiting to join the cluster, if this node is the first node in the cluster, please run `talosctl bootstrap`"},
			}

			if n.cluster.isMember(n.ip.String()) {
				etcd = running("etcd")
			}

			services = append(services, etcd, running("trustd"))
		}
	}

	return &machine.ServiceListResponse{Messages: []*machine.ServiceList{{Services: services}}}, nil
}

// Kubeconfig streams the admin kubeconfig as Talos does: one common.Data holding a tar.gz with a single file
// "kubeconfig".
func (s *machineService) Kubeconfig(_ *emptypb.Empty, stream grpc.ServerStreamingServer[common.Data]) error {
	n := s.n

	n.mu.Lock()

	if err := n.requireControlPlaneLocked("kubeconfig"); err != nil {
		n.mu.Unlock()

		return err
	}

	kubeconfig := n.cluster.servedKubeconfig()
	cfg := n.active.provider
	n.mu.Unlock()

	if kubeconfig == nil {
		var err error

		kubeconfig, err = adminKubeconfig(cfg)
		if err != nil {
			return status.Errorf(codes.Internal, "generate kubeconfig: %v", err)
		}
	}

	archive, err := kubeconfigArchive(kubeconfig)
	if err != nil {
		return status.Errorf(codes.Internal, "archive kubeconfig: %v", err)
	}

	return stream.Send(&common.Data{Bytes: archive})
}

// requireControlPlaneLocked refuses APIs that only exist on configured control planes.
func (n *Node) requireControlPlaneLocked(api string) error {
	if n.active == nil {
		return status.Errorf(codes.FailedPrecondition, "%s is not available in maintenance mode", api)
	}

	if !n.machineTypeLocked().IsControlPlane() {
		return status.Error(codes.FailedPrecondition, fmt.Sprintf("%s is only supported on control plane nodes", api))
	}

	return nil
}

// installDownTime is how long the node stays down to install a config accepted in maintenance
// mode, asked once the response went out and the flush grace passed: what is left of
// Options.InstallDelay, which counts from the request's arrival.
func (n *Node) installDownTime(received time.Time) time.Duration {
	if n.opts.InstallDelay <= 0 {
		return n.opts.BootDelay
	}

	return max(n.opts.InstallDelay-time.Since(received), 0)
}

// startEtcdLocked makes the node etcd's first member Options.EtcdStartDelay after an accepted
// Bootstrap (etcd starting from an empty data directory), unless the node goes down first.
func (n *Node) startEtcdLocked(hostname string) {
	n.log("bootstrap accepted; etcd starts in %s", n.opts.EtcdStartDelay)

	n.afterLocked(n.opts.EtcdStartDelay, func(current bool) {
		if !current {
			n.cluster.abortBootstrap()

			return
		}

		n.cluster.finishBootstrap(hostname, n.ip.String())
		n.publishStateLocked()
		n.log("bootstrapped etcd")
	})
}
