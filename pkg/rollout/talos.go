package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func (r *Rollout) endpoint(n Node) string {
	return net.JoinHostPort(n.IP, strconv.Itoa(r.opts.TalosPort))
}

// talos calls fn with a client of one node (a fresh one per call keeps gRPC's reconnect
// backoff out of the waits).
func (r *Rollout) talos(ctx context.Context, n Node, fn func(context.Context, *client.Client) error) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
	defer cancel()
	c, err := r.id.Client(ctx, r.endpoint(n))
	if err != nil {
		return err
	}
	defer c.Close() //nolint:errcheck // nothing to do about a failed close
	return fn(ctx, c)
}

// version is the Talos version the node reports.
func (r *Rollout) version(ctx context.Context, n Node) (string, error) {
	var tag string
	err := r.talos(ctx, n, func(ctx context.Context, c *client.Client) error {
		resp, err := c.Version(ctx)
		if err != nil {
			return err
		}
		for _, m := range resp.GetMessages() {
			tag = m.GetVersion().GetTag()
		}
		if tag == "" {
			return errors.New("the node reports no version")
		}
		return nil
	})
	return tag, err
}

// upgradeTalos starts the node's upgrade with the call its version has.
func (r *Rollout) upgradeTalos(ctx context.Context, n Node, api string) error {
	if api == APILifecycle {
		err := r.upgradeLifecycle(ctx, n)
		if status.Code(err) != codes.Unimplemented { // status.Code sees through wrapping
			return err
		}
		// As talosctl: a node without the new APIs gets the old one.
		r.logf(n.Name, "the node does not implement ImageService/LifecycleService: using MachineService.Upgrade")
	}
	return r.upgradeLegacy(ctx, n)
}

// systemContainerd is where the installer image goes: talosctl upgrade's default namespace
// "system" (cmd/talosctl/cmd/talos/image.go containerdInstance).
var systemContainerd = &common.ContainerdInstance{Driver: common.ContainerDriver_CRI, Namespace: common.ContainerdNamespace_NS_SYSTEM}

// pullImage pulls the installer image into the node's containerd store: LifecycleService.Upgrade
// runs it from there only (as talosctl's imagePullInternal before the upgrade).
func (r *Rollout) pullImage(ctx context.Context, n Node) error {
	err := r.talos(ctx, n, func(ctx context.Context, c *client.Client) error {
		stream, err := c.ImageClient.Pull(ctx, &machine.ImageServicePullRequest{Containerd: systemContainerd, ImageRef: r.c.Image})
		if err != nil {
			return err
		}
		for {
			if _, err := stream.Recv(); errors.Is(err, io.EOF) {
				return nil
			} else if err != nil {
				return err
			}
		}
	})
	if err != nil {
		return fmt.Errorf("pull %s: %w", r.c.Image, err)
	}
	r.logf(n.Name, "pulled %s", r.c.Image)
	return nil
}

// upgradeLifecycle installs the new image with LifecycleService.Upgrade (streamed progress,
// an exit code) and reboots into it, as talosctl upgrade does (upgradeViaLifecycleService).
func (r *Rollout) upgradeLifecycle(ctx context.Context, n Node) error {
	if err := r.pullImage(ctx, n); err != nil {
		return err
	}
	r.logf(n.Name, "LifecycleService.Upgrade with %s", r.c.Image)
	err := r.talos(ctx, n, func(ctx context.Context, c *client.Client) error {
		stream, err := c.LifecycleClient.Upgrade(ctx, &machine.LifecycleServiceUpgradeRequest{
			Containerd: systemContainerd,
			Source:     &machine.InstallArtifactsSource{ImageName: r.c.Image},
		})
		if err != nil {
			return err
		}
		exit := int32(-1)
		var last string
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			switch p := resp.GetProgress().GetResponse().(type) {
			case *machine.LifecycleServiceInstallProgress_Message:
				last = p.Message
				r.logf(n.Name, "  %s", p.Message)
			case *machine.LifecycleServiceInstallProgress_ExitCode:
				exit = p.ExitCode
			}
		}
		switch exit {
		case 0:
			return nil
		case -1:
			return errors.New("the upgrade stream ended without an exit code")
		default:
			return fmt.Errorf("the installer exited with code %d: %s", exit, last)
		}
	})
	if err != nil {
		return fmt.Errorf("LifecycleService.Upgrade: %w", err)
	}
	r.logf(n.Name, "installed %s; rebooting", r.c.Version)
	if err := r.talos(ctx, n, func(ctx context.Context, c *client.Client) error { return c.Reboot(ctx) }); err != nil {
		return fmt.Errorf("reboot after the upgrade: %w", err)
	}
	return nil
}

// upgradeLegacy uses the deprecated MachineService.Upgrade, the only upgrade call of Talos up
// to 1.13.0-alpha.2; the node installs and reboots by itself.
func (r *Rollout) upgradeLegacy(ctx context.Context, n Node) error {
	r.logf(n.Name, "MachineService.Upgrade with %s (the node's Talos has no LifecycleService.Upgrade)", r.c.Image)
	err := r.talos(ctx, n, func(ctx context.Context, c *client.Client) error {
		//lint:ignore SA1019 the only upgrade call older nodes have (removal annotated for Talos 1.18)
		_, err := c.MachineClient.Upgrade(ctx, &machine.UpgradeRequest{Image: r.c.Image})
		return err
	})
	if err != nil {
		return fmt.Errorf("MachineService.Upgrade: %w", err)
	}
	return nil
}

// waitBack waits for the node to answer on the target version, then for etcd (a control
// plane is a member again, every member present) and its Kubernetes node to be Ready.
func (r *Rollout) waitBack(ctx context.Context, n Node) error {
	err := r.wait(ctx, n.Name, r.opts.NodeTimeout, "Talos "+r.c.Version, func(ctx context.Context) (bool, string, error) {
		v, err := r.version(ctx, n)
		switch {
		case err != nil:
			return false, "down (" + shortError(err) + ")", nil
		case v != r.c.Version:
			return false, "still runs " + v, nil
		}
		return true, "", nil
	})
	if err != nil {
		return fmt.Errorf("%w: it does not come back; every other node still serves; look at its console in Proxmox (Talos boots the previous version when the new one fails)", err)
	}
	if n.ControlPlane {
		if err := r.wait(ctx, n.Name, r.opts.NodeTimeout, "etcd", func(ctx context.Context) (bool, string, error) {
			ok, why := r.etcdComplete(ctx, n)
			return ok, why, nil
		}); err != nil {
			return err
		}
	}
	return r.wait(ctx, n.Name, r.opts.NodeTimeout, "Kubernetes node Ready", func(ctx context.Context) (bool, string, error) {
		return r.nodeReady(ctx, n.Name, true)
	})
}

// etcdComplete reports whether n's etcd lists every control plane of the profile.
func (r *Rollout) etcdComplete(ctx context.Context, n Node) (bool, string) {
	var members []string
	err := r.talos(ctx, n, func(ctx context.Context, c *client.Client) error {
		resp, err := c.EtcdMemberList(ctx, &machine.EtcdMemberListRequest{})
		if err != nil {
			return err
		}
		for _, m := range resp.GetMessages() {
			for _, mem := range m.GetMembers() {
				members = append(members, mem.GetHostname())
			}
		}
		return nil
	})
	if err != nil {
		return false, "etcd member list: " + shortError(err)
	}
	var missing []string
	for _, cp := range r.c.Nodes {
		if cp.ControlPlane && !slices.Contains(members, cp.Name) {
			missing = append(missing, cp.Name)
		}
	}
	if len(missing) > 0 {
		return false, "not members yet: " + strings.Join(missing, ", ")
	}
	return true, ""
}

// applyConfig applies the node's config rendered for the target version, without a reboot.
func (r *Rollout) applyConfig(ctx context.Context, n Node) error {
	if len(n.Config) == 0 {
		return nil
	}
	var details string
	err := r.talos(ctx, n, func(ctx context.Context, c *client.Client) error {
		resp, err := c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: n.Config, Mode: machine.ApplyConfigurationRequest_NO_REBOOT})
		if err != nil {
			return err
		}
		for _, m := range resp.GetMessages() {
			details = m.GetModeDetails()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("apply the config rendered for %s (no reboot): %w; run `talforge apply --mode staged` to apply it with the next reboot", r.c.Version, err)
	}
	r.logf(n.Name, "config for %s applied: %s", r.c.Version, firstLine(details))
	return nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// shortError names a gRPC failure by its status message, others whole.
func shortError(err error) string {
	if s, ok := status.FromError(err); ok {
		msg := s.Message()
		if i := strings.LastIndex(msg, "connect: "); i >= 0 {
			msg = msg[i+len("connect: "):]
		}
		return msg
	}
	return err.Error()
}

// clusterHealthy is the precondition of the first step: every node answers, etcd has every
// control plane, every Kubernetes node is Ready.
func (r *Rollout) clusterHealthy(ctx context.Context) error {
	var problems []string
	for _, n := range r.c.Nodes {
		if _, err := r.version(ctx, n); err != nil {
			problems = append(problems, fmt.Sprintf("%s does not answer (%s)", n.Name, shortError(err)))
			continue
		}
		if ready, why, err := r.nodeReady(ctx, n.Name, false); err != nil {
			return err
		} else if !ready {
			problems = append(problems, fmt.Sprintf("%s: %s", n.Name, why))
		}
	}
	for _, n := range r.c.Nodes {
		if n.ControlPlane {
			if ok, why := r.etcdComplete(ctx, n); !ok {
				problems = append(problems, "etcd: "+why)
			}
			break
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; ") + " (fix that first: `talforge status` shows the cluster)")
	}
	return nil
}
