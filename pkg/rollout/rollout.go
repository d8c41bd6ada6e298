package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/Masterminds/semver/v3"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/talforge/talforge/pkg/bootstrap"
)

// Node is one machine of the cluster, as the profile declares it.
type Node struct {
	// Name is the node's hostname (its Kubernetes node name).
	Name string
	// IP is the node's Talos API address.
	IP string
	// ControlPlane marks an etcd member.
	ControlPlane bool
	// Config is the node's machine config rendered for the target version: applied without a
	// reboot once the node runs that version.
	Config []byte
}

// Cluster is what to upgrade and how to reach it.
type Cluster struct {
	Name  string
	Nodes []Node
	// Version is the target Talos version ("v1.14.1").
	Version string
	// Image is the installer image of the target version (with the profile's schematic, so
	// system extensions stay).
	Image string
	// Kubernetes is the target Kubernetes version ("v1.37.0"): the nodes' configs name its
	// images, so applying them upgrades the control plane and the kubelets.
	Kubernetes  string
	Talosconfig []byte
	Kubeconfig  []byte
}

// Options tune a rollout. The zero value gives production defaults.
type Options struct {
	// TalosPort is the Talos API port (default 50000).
	TalosPort int
	// Poll is the pause between observations (default 2s).
	Poll time.Duration
	// CallTimeout bounds one Talos API call (default 30s).
	CallTimeout time.Duration
	// NodeTimeout bounds a node's way back: reboot, new version, Ready, etcd (default 15m).
	NodeTimeout time.Duration
	// GateTimeout bounds each wait for the storage gate (default 30m: a replica rebuild
	// of a large volume takes a while).
	GateTimeout time.Duration
	// DrainTimeout bounds a node's drain (default 10m).
	DrainTimeout time.Duration
	// Progress receives one line per event ("cp-1: ...").
	Progress io.Writer
	// Now is the clock for elapsed times (default time.Now).
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Poll, 2*time.Second)
	def(&o.CallTimeout, 30*time.Second)
	def(&o.NodeTimeout, 15*time.Minute)
	def(&o.GateTimeout, 30*time.Minute)
	def(&o.DrainTimeout, 10*time.Minute)
	if o.TalosPort == 0 {
		o.TalosPort = 50000
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Step is one node's upgrade, as planned.
type Step struct {
	Node string
	// Kind is KindTalos (the OS, and with its new config Kubernetes too) or KindKubernetes
	// (the config only: control plane pods and kubelet restart, no reboot).
	Kind string
	// From is the version the node reports, To the target.
	From, To string
	// API is the upgrade call the node gets: "LifecycleService.Upgrade" or the deprecated
	// "MachineService.Upgrade".
	API string
	// Resume marks a node an interrupted run already upgraded or cordoned.
	Resume bool
}

// Step kinds.
const (
	KindTalos      = "talos"
	KindKubernetes = "kubernetes"
)

func (s Step) String() string {
	if s.Kind == KindKubernetes {
		return fmt.Sprintf("%s: Kubernetes %s -> %s (its config applied: the kubelet and control plane pods restart, no reboot)", s.Node, s.From, s.To)
	}
	if s.Resume {
		return fmt.Sprintf("%s: finish the interrupted upgrade to %s", s.Node, s.To)
	}
	return fmt.Sprintf("%s: %s -> %s (%s)", s.Node, s.From, s.To, s.API)
}

// Result is what a rollout did.
type Result struct {
	Steps    []Step
	Upgraded []string
	Took     map[string]time.Duration
}

// Upgrade APIs, by the version a node reports.
const (
	APILifecycle = "LifecycleService.Upgrade"
	APILegacy    = "MachineService.Upgrade"
)

// lifecycleAPI is talosctl's range for the new upgrade API (cmd/talosctl/cmd/talos/upgrade.go,
// talosUpgradeAPIVersionRange): older nodes only have the deprecated MachineService.Upgrade.
// Parsed on first use, not at package initialisation, so that start-up stays cheap (issue 16).
var lifecycleAPI = sync.OnceValue(func() *semver.Constraints {
	return mustConstraint(">1.13.0-alpha.2 <2.0.0")
})

func mustConstraint(s string) *semver.Constraints {
	c, err := semver.NewConstraint(s)
	if err != nil {
		panic(err)
	}
	return c
}

// apiFor picks the upgrade call for a node reporting version.
func apiFor(version string) (string, error) {
	v, err := semver.NewVersion(version)
	if err != nil {
		return "", fmt.Errorf("node reports Talos version %q: %w", version, err)
	}
	if lifecycleAPI().Check(v) {
		return APILifecycle, nil
	}
	return APILegacy, nil
}

// checkPath refuses what Talos does not support: a downgrade, or a jump over a minor version
// (Talos upgrades and their config migrations are made and tested one minor at a time).
func checkPath(from, to string) error {
	return oneMinorAtATime("Talos", "talos.version", "it runs", from, to)
}

// oneMinorAtATime refuses a downgrade from a node's version (what runs it: "it runs") to the
// profile's field, or a jump over a minor version, saying which version to set first.
func oneMinorAtATime(product, field, runs, from, to string) error {
	f, err := semver.NewVersion(from)
	if err != nil {
		return fmt.Errorf("node reports %s version %q: %w", product, from, err)
	}
	t, err := semver.NewVersion(to)
	if err != nil {
		return err
	}
	switch {
	case t.LessThan(f):
		return fmt.Errorf("%s %s %s, newer than the profile's %s: talforge does not downgrade; set %s to %s", runs, product, from, to, field, from)
	case t.Major() != f.Major() || t.Minor() > f.Minor()+1:
		return fmt.Errorf("%s %s %s: %s upgrades go one minor version at a time; set %s to the latest v%d.%d.x first, upgrade, then %s",
			runs, product, from, product, field, f.Major(), f.Minor()+1, to)
	}
	return nil
}

// Rollout upgrades one cluster. Build it with New.
type Rollout struct {
	c    Cluster
	opts Options
	id   *bootstrap.Identity
	cs   kubernetes.Interface
	dyn  dynamic.Interface
	out  io.Writer
}

// New checks the inputs; it makes no request.
func New(c Cluster, opts Options) (*Rollout, error) {
	opts = opts.withDefaults()
	if _, err := semver.NewVersion(c.Version); err != nil {
		return nil, fmt.Errorf("target Talos version %q: %w", c.Version, err)
	}
	if !strings.HasSuffix(c.Image, ":"+c.Version) {
		return nil, fmt.Errorf("installer image %q is not of Talos %s", c.Image, c.Version)
	}
	id, err := bootstrap.ParseIdentity(c.Talosconfig)
	if err != nil {
		return nil, fmt.Errorf("talosconfig: %w", err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.WarningHandler = rest.NoWarnings{}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Rollout{c: c, opts: opts, id: id, cs: cs, dyn: dyn, out: opts.Progress}, nil
}

func (r *Rollout) logf(node, format string, args ...any) {
	fmt.Fprintf(r.out, "%s: %s\n", node, fmt.Sprintf(format, args...))
}

// ordered lists control planes first, then workers, each in profile order.
func (r *Rollout) ordered() []Node {
	var cps, workers []Node
	for _, n := range r.c.Nodes {
		if n.ControlPlane {
			cps = append(cps, n)
		} else {
			workers = append(workers, n)
		}
	}
	return append(cps, workers...)
}

// Plan observes every node and lists the upgrades Run would make, in order. A node that
// does not answer fails the plan: an upgrade starts only on a cluster whose every node is
// up.
func (r *Rollout) Plan(ctx context.Context) ([]Step, error) {
	var steps []Step
	var errs []error
	for _, n := range r.ordered() {
		resume, err := r.marked(ctx, n)
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
			continue
		}
		v, err := r.version(ctx, n)
		if err != nil {
			if resume {
				// Taken down by an interrupted run: it is rebooting into the new version.
				steps = append(steps, Step{Node: n.Name, Kind: KindTalos, From: "unknown (down)", To: r.c.Version, Resume: true})
				continue
			}
			errs = append(errs, fmt.Errorf("node %s does not answer: %s", n.Name, shortError(err)))
			continue
		}
		kubelet, err := r.kubeletVersion(ctx, n.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
			continue
		}
		if r.c.Kubernetes != "" && kubelet != "" {
			if err := checkKubernetesPath(kubelet, r.c.Kubernetes); err != nil {
				errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
				continue
			}
		}
		if v == r.c.Version && !resume {
			if r.c.Kubernetes != "" && kubelet != "" && kubelet != r.c.Kubernetes {
				steps = append(steps, Step{Node: n.Name, Kind: KindKubernetes, From: kubelet, To: r.c.Kubernetes})
			}
			continue
		}
		if err := checkPath(v, r.c.Version); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
			continue
		}
		api, err := apiFor(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
			continue
		}
		steps = append(steps, Step{Node: n.Name, Kind: KindTalos, From: v, To: r.c.Version, API: api, Resume: resume && v == r.c.Version})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cannot plan the upgrade: %w", err)
	}
	if r.c.Kubernetes != "" && len(steps) > 0 {
		if err := r.removedAPIsInUse(ctx); err != nil {
			return nil, err
		}
	}
	return steps, nil
}

// checkKubernetesPath refuses a Kubernetes downgrade or a jump over a minor version (the
// version skew policy; talosctl upgrade-k8s refuses the same, upgrade.Path.IsSupported).
func checkKubernetesPath(from, to string) error {
	return oneMinorAtATime("Kubernetes", "talos.kubernetes", "its kubelet runs", from, to)
}

// Run upgrades every node Plan lists, one at a time. It stops at the first node that fails
// a gate or does not come back, naming it, with every other node still serving.
func (r *Rollout) Run(ctx context.Context) (*Result, error) {
	steps, err := r.Plan(ctx)
	if err != nil {
		return nil, err
	}
	res := &Result{Steps: steps, Took: map[string]time.Duration{}}
	if len(steps) == 0 {
		return res, nil
	}
	byName := map[string]Node{}
	for _, n := range r.c.Nodes {
		byName[n.Name] = n
	}
	for i, s := range steps {
		start := r.opts.Now()
		r.logf(s.Node, "upgrade %d of %d: %s", i+1, len(steps), s)
		if !s.Resume {
			// Never two nodes down at once: the one before must be fully back.
			if err := r.clusterHealthy(ctx); err != nil {
				return res, fmt.Errorf("the cluster is not healthy, so %s is not taken down: %w", s.Node, err)
			}
		}
		if err := r.upgradeNode(ctx, byName[s.Node], s); err != nil {
			return res, fmt.Errorf("node %s: %w", s.Node, err)
		}
		res.Upgraded = append(res.Upgraded, s.Node)
		res.Took[s.Node] = r.opts.Now().Sub(start)
		r.logf(s.Node, "upgraded to %s in %s", s.To, res.Took[s.Node].Round(100*time.Millisecond))
	}
	return res, nil
}

// upgradeNode takes one node through the upgrade; each part observes first, so a resumed
// node skips what is done.
func (r *Rollout) upgradeNode(ctx context.Context, n Node, s Step) error {
	if s.Kind == KindKubernetes {
		return r.upgradeKubernetes(ctx, n)
	}
	if !s.Resume {
		if err := r.waitStorage(ctx, n.Name, true); err != nil {
			return err
		}
		if err := r.cordon(ctx, n.Name); err != nil {
			return err
		}
		if err := r.drain(ctx, n.Name); err != nil {
			return err
		}
		if err := r.upgradeTalos(ctx, n, s.API); err != nil {
			return err
		}
	}
	if err := r.waitBack(ctx, n); err != nil {
		return err
	}
	if err := r.applyConfig(ctx, n); err != nil {
		return err
	}
	if err := r.uncordon(ctx, n.Name); err != nil {
		return err
	}
	return r.waitStorage(ctx, n.Name, false)
}

// wait polls check every Poll until it is done, fails, timeout passes or ctx ends; it
// reports what it waits for when that changes.
func (r *Rollout) wait(ctx context.Context, node string, timeout time.Duration, what string, check func(context.Context) (bool, string, error)) error {
	deadline := r.opts.Now().Add(timeout)
	last := ""
	for {
		ok, status, err := check(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if status != last {
			r.logf(node, "waiting for %s: %s", what, status)
			last = status
		}
		if r.opts.Now().After(deadline) {
			return &TimeoutError{Node: node, What: what, Status: status, After: timeout}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.opts.Poll):
		}
	}
}

// TimeoutError is a wait that did not end: what for, on which node, and the last status.
type TimeoutError struct {
	Node, What, Status string
	After              time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s not done after %s: %s", e.What, e.After, e.Status)
}
