// Upgrades and reboots: the LifecycleService.Upgrade stream of Talos > 1.13.0-alpha.2, the
// legacy MachineService.Upgrade every version has, and MachineService.Reboot.

package talosnode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/blang/semver/v4"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	talosruntime "github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

// lifecycleAPIRange is the range of node versions talosctl sends LifecycleService.Upgrade to
// (cmd/talosctl/cmd/talos/upgrade.go talosUpgradeAPIVersionRange); older nodes only have the
// legacy MachineService.Upgrade, and talosctl falls back on it.
var lifecycleAPIRange = semver.MustParseRange(">1.13.0-alpha.2 <2.0.0")

// systemDisk is the disk the emulator reports installing to. Emulator choice: Talos upgrades
// the disk its system volume is on (blockres.GetSystemDisk); emulated nodes have no disks, so
// it is always the one the generated test configs install to.
const systemDisk = "/dev/sda"

// hasLifecycleAPI reports whether a node of the given version serves LifecycleService.
// Emulator choice: a version that does not parse is taken for the API shape the emulator
// models (v1.14), which has it.
func hasLifecycleAPI(version string) bool {
	v, err := semver.ParseTolerant(version)
	if err != nil {
		return true
	}

	return lifecycleAPIRange(v)
}

// imageVersion is the Talos version an installer image installs: its tag when that is a
// vX.Y.Z[-pre] version. A digest ("@sha256:…") is ignored.
func imageVersion(image string) (string, bool) {
	ref, _, _ := strings.Cut(image, "@")

	i := strings.LastIndex(ref, ":")
	if i < 0 {
		return "", false
	}

	tag := ref[i+1:]

	rest, ok := strings.CutPrefix(tag, "v")
	if !ok {
		return "", false
	}

	if _, err := semver.Parse(rest); err != nil {
		return "", false
	}

	return tag, true
}

// newActorID identifies an action the way Talos does (a random UUID, uuid.New in
// v1alpha1_server.go), without adding a dependency.
func newActorID() string {
	var b [16]byte

	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails

	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant

	h := hex.EncodeToString(b[:])

	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// lifecycleService implements machine.LifecycleService's Upgrade; Install answers
// Unimplemented (emulated nodes install through ApplyConfiguration in maintenance mode).
type lifecycleService struct {
	machine.UnimplementedLifecycleServiceServer

	n *Node
}

// Upgrade runs the installer of the requested image against the system disk and streams its
// output, then its exit code, as Talos' lifecycle service does (internal/app/lifecycle/lifecycle.go).
// It does not reboot: the new version boots on the next reboot, which the client asks for with
// MachineService.Reboot (as talosctl upgrade does).
func (s *lifecycleService) Upgrade(req *machine.LifecycleServiceUpgradeRequest, stream grpc.ServerStreamingServer[machine.LifecycleServiceUpgradeResponse]) error {
	n := s.n

	n.mu.Lock()

	if n.upgrading {
		n.mu.Unlock()

		return status.Error(codes.FailedPrecondition, "another installation/upgrade is already in progress")
	}

	// Unreachable through the authorizer (maintenance clients are os:reader, Upgrade needs
	// os:admin), kept so the handler refuses what Talos refuses.
	if n.active == nil {
		n.mu.Unlock()

		return status.Error(codes.FailedPrecondition, "machine is not installed")
	}

	image := req.GetSource().GetImageName()
	if image == "" {
		n.mu.Unlock()

		return status.Error(codes.InvalidArgument, "installer image name is required")
	}

	if !n.pulled[pulledKey(req.GetContainerd(), image)] {
		n.mu.Unlock()

		return status.Errorf(codes.Internal, "upgrade failed: installer image %q not found in containerd store: image not found", image)
	}

	n.upgrading = true
	n.mu.Unlock()

	defer func() {
		n.mu.Lock()
		n.upgrading = false
		n.mu.Unlock()
	}()

	n.log("upgrade via LifecycleService from %s", image)

	send := func(msg string) error {
		return stream.Send(&machine.LifecycleServiceUpgradeResponse{Progress: &machine.LifecycleServiceInstallProgress{
			Response: &machine.LifecycleServiceInstallProgress_Message{Message: msg},
		}})
	}

	sendExitCode := func(code int32) error {
		return stream.Send(&machine.LifecycleServiceUpgradeResponse{Progress: &machine.LifecycleServiceInstallProgress{
			Response: &machine.LifecycleServiceInstallProgress_ExitCode{ExitCode: code},
		}})
	}

	if err := send(fmt.Sprintf("running installer %s against %s", image, systemDisk)); err != nil {
		return err
	}

	version, ok := imageVersion(image)
	if !ok {
		// Emulator choice: the emulator must know which version the image installs, so an image
		// whose tag is not one fails like an installer that exits non-zero.
		if err := send(fmt.Sprintf("installer image %s has no Talos version tag (vX.Y.Z)", image)); err != nil {
			return err
		}

		n.log("upgrade failed: %s has no version tag", image)

		return sendExitCode(1)
	}

	for _, msg := range []string{
		fmt.Sprintf("installing Talos %s to %s", version, systemDisk),
		fmt.Sprintf("upgrade to %s staged, it boots on the next reboot", version),
	} {
		if err := send(msg); err != nil {
			return err
		}
	}

	n.mu.Lock()
	n.stagedVersion = version
	n.mu.Unlock()

	n.log("installed %s, active after the next reboot", version)

	return sendExitCode(0)
}

// Reboot acknowledges with an actor ID and reboots once the answer went out, like machined's
// Reboot, which runs the reboot sequence in the background (v1alpha1_server.go Reboot).
func (s *machineService) Reboot(ctx context.Context, _ *machine.RebootRequest) (*machine.RebootResponse, error) {
	n := s.n
	actorID := newActorID()

	n.log("reboot via API, actor id %s", actorID)

	runAfterResponse(ctx, func() { n.reboot(talosruntime.MachineStageRebooting, n.opts.BootDelay) })

	return &machine.RebootResponse{Messages: []*machine.Reboot{{ActorId: actorID}}}, nil
}

// Upgrade is the legacy MachineService.Upgrade (deprecated, the only upgrade API of Talos ≤
// 1.13.0-alpha.2): it validates, acknowledges, then installs the image and reboots into it on
// its own (v1alpha1_server.go Upgrade).
func (s *machineService) Upgrade(ctx context.Context, req *machine.UpgradeRequest) (*machine.UpgradeResponse, error) {
	n := s.n

	n.mu.Lock()
	defer n.mu.Unlock()

	// As in LifecycleService.Upgrade, the authorizer refuses maintenance clients first.
	if n.active == nil {
		return nil, status.Error(codes.FailedPrecondition, "Talos is not installed")
	}

	// Talos pulls and validates the image first (install.PullAndValidateInstallerImage) and returns
	// a plain error, which clients see as codes.Unknown.
	image := req.GetImage()

	if image == "" {
		return nil, fmt.Errorf("error validating installer image %q: image reference is empty", image)
	}

	version, ok := imageVersion(image)
	if !ok {
		// Emulator choice: Talos would accept any installer image; the emulator must know the version.
		return nil, fmt.Errorf("error validating installer image %q: tag is not a Talos version (vX.Y.Z)", image)
	}

	// The etcd pre-upgrade check runs on control planes unless forced or preserving data; its error
	// is a plain one too (codes.Unknown), not a gRPC status.
	if n.machineTypeLocked().IsControlPlane() && !req.GetForce() && !req.GetPreserve() {
		if err := n.cluster.validateForUpgrade(); err != nil {
			return nil, fmt.Errorf("error validating etcd for upgrade: %w", err)
		}
	}

	if req.GetStage() {
		return nil, status.Error(codes.Unimplemented, "staged upgrades are not emulated")
	}

	actorID := newActorID()

	n.stagedVersion = version
	n.log("upgrade via MachineService.Upgrade to %s, actor id %s", version, actorID)

	runAfterResponse(ctx, func() { n.reboot(talosruntime.MachineStageUpgrading, n.opts.BootDelay) })

	return &machine.UpgradeResponse{Messages: []*machine.Upgrade{{Ack: "Upgrade request received", ActorId: actorID}}}, nil
}
