package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/config/configloader"

	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/machineconfig"
	"github.com/talforge/talforge/pkg/rollout"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// UpgradeReport is what Upgrade planned and did.
type UpgradeReport struct {
	Cluster string         `json:"cluster"`
	Version string         `json:"version"`
	Image   string         `json:"image"`
	Steps   []rollout.Step `json:"steps"`
	// Upgraded lists the nodes upgraded, in order (empty with dry run).
	Upgraded []string `json:"upgraded"`
}

// Upgrade brings every node to the profile's Talos version, one node at a time, gated on
// etcd, Kubernetes and Longhorn health (package rollout); with dryRun it only lists the steps.
// The new configs come from the profile and the stored secrets bundle, rendered in memory.
func Upgrade(ctx context.Context, opts Options, dryRun bool) (*UpgradeReport, error) {
	ctx, r, unlock, err := talosRun(ctx, opts, dryRun)
	if err != nil {
		return nil, err
	}
	defer unlock()
	ro, rep, err := r.rollout(ctx)
	if err != nil {
		return rep, err
	}
	if rep.Steps, err = ro.Plan(ctx); err != nil || dryRun || len(rep.Steps) == 0 {
		return rep, err
	}
	res, err := ro.Run(ctx)
	if res != nil {
		rep.Upgraded = res.Upgraded
	}
	if err != nil && ctx.Err() != nil {
		return rep, fmt.Errorf("interrupted; run `talforge upgrade` again to continue where it stopped: %w", err)
	}
	return rep, err
}

// rollout builds the rolling upgrade of the run's cluster to the profile's Talos version.
func (r *run) rollout(ctx context.Context) (*rollout.Rollout, *UpgradeReport, error) {
	kubeconfig, written, err := r.ensureKubeconfig(ctx, false)
	if err != nil {
		return nil, &UpgradeReport{Cluster: r.cluster.Metadata.Name, Version: r.cluster.Talos.Version}, fmt.Errorf("kubeconfig: %w", err)
	}
	r.wrote(written...)
	return r.rolloutWith(kubeconfig)
}

// rolloutWith builds the rolling upgrade with a kubeconfig in hand.
func (r *run) rolloutWith(kubeconfig []byte) (*rollout.Rollout, *UpgradeReport, error) {
	rep := &UpgradeReport{Cluster: r.cluster.Metadata.Name, Version: r.cluster.Talos.Version}
	c := rollout.Cluster{Name: rep.Cluster, Version: rep.Version, Kubernetes: r.cluster.Talos.Kubernetes, Talosconfig: r.talos.Talosconfig, Kubeconfig: kubeconfig}
	for _, n := range r.talos.Nodes {
		c.Nodes = append(c.Nodes, rollout.Node{Name: n.Name, IP: n.IP, ControlPlane: n.Role.IsControlPlane(), Config: n.Config})
		if c.Image == "" {
			cfg, err := configloader.NewFromBytes(n.Config)
			if err != nil {
				return nil, rep, fmt.Errorf("node %s: rendered config: %w", n.Name, err)
			}
			c.Image = machineconfig.InstallImage(cfg)
		}
	}
	rep.Image = c.Image
	o := r.opts.Rollout
	o.TalosPort, o.Progress, o.Now = r.opts.Talos.TalosPort, prefixWriter{r.opts.Detail, "  "}, r.opts.Now
	if o.Poll == 0 {
		o.Poll = r.opts.Talos.PollInterval
	}
	ro, err := rollout.New(c, o)
	return ro, rep, err
}

// ErrUpgradeNeeded is up's refusal to change the Talos version of running nodes.
var ErrUpgradeNeeded = errors.New("talos upgrade needed")

// refuseUpgrade stops up before it touches a node when configured nodes run another Talos
// version than the profile's: that is `talforge upgrade`'s job, one node at a time with
// health gates, and a config rendered for the new version may not suit the old one.
func (r *run) refuseUpgrade(ctx context.Context) error {
	var differ []string
	for _, n := range r.plan.Nodes {
		if why := upgradePending(n.Versions, r.cluster); why != "" {
			differ = append(differ, n.Name+" "+why)
		}
	}
	if len(differ) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s; up never upgrades running nodes: run `talforge upgrade` (one node at a time, gated on etcd and Longhorn health), then up",
		ErrUpgradeNeeded, strings.Join(differ, "; "))
}

// planUpgrade lists the upgrade steps `talforge upgrade` would take, for plan, with the stored
// kubeconfig (plan writes nothing, so it fetches none).
func (r *run) planUpgrade(ctx context.Context, rep *PlanReport) {
	pending := false
	for _, n := range rep.Nodes {
		pending = pending || upgradePending(n.Versions, r.cluster) != ""
	}
	if !pending {
		return
	}
	kubeconfig, err := sopsfile.DecryptFile(filepath.Join(r.out, bootstrap.KubeconfigFile))
	if err == nil {
		var ro *rollout.Rollout
		if ro, _, err = r.rolloutWith(kubeconfig); err == nil {
			rep.Upgrade, err = ro.Plan(ctx)
		}
	}
	if err != nil {
		rep.UpgradeNote = err.Error()
	}
}
