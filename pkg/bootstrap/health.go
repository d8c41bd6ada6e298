package bootstrap

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Kube is what the Kubernetes health phases need from the cluster's API server.
type Kube interface {
	// Server is the API server URL being probed (the kubeconfig's: the VIP when the profile has one).
	Server() string
	// ServerVersion asks the API server for its version.
	ServerVersion(ctx context.Context) (string, error)
	// NodeNames lists the registered Kubernetes nodes.
	NodeNames(ctx context.Context) ([]string, error)
}

// Health runs every phase in order: TalosHealth, then KubeHealth.
func (r *Runner) Health(ctx context.Context, kube Kube) error {
	if err := r.TalosHealth(ctx); err != nil {
		return err
	}

	return r.KubeHealth(ctx, kube)
}

// TalosHealth waits for apid on every node, then for etcd: running and healthy on every control plane, with
// exactly one member per control plane.
func (r *Runner) TalosHealth(ctx context.Context) error {
	if err := r.healthAPId(ctx); err != nil {
		return err
	}

	return r.healthEtcd(ctx)
}

// BootstrapHealthy is Bootstrap followed by TalosHealth, with apid checked on every node while
// etcd starts: the apid check waits on every node's API, Bootstrap on the control planes'
// etcd, and neither needs the other. etcd's health is checked once both are done. Bootstrap's
// error comes first (apid's wait is then cancelled), then apid's.
func (r *Runner) BootstrapHealthy(ctx context.Context) (*EtcdResult, error) {
	apidCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	apid := make(chan error, 1)

	go func() { apid <- r.healthAPId(apidCtx) }()

	res, err := r.Bootstrap(ctx)
	if err != nil {
		cancel()
		<-apid

		return nil, err
	}

	if err := <-apid; err != nil {
		return res, err
	}

	return res, r.healthEtcd(ctx)
}

// KubeHealth waits for kube-apiserver to answer, then for every node to be registered (Ready is not
// required: there may be no CNI yet).
func (r *Runner) KubeHealth(ctx context.Context, kube Kube) error {
	if err := r.healthAPIServer(ctx, kube); err != nil {
		return err
	}

	return r.healthNodes(ctx, kube)
}

// failing collects per-node problems of one phase, in profile order.
type failing struct {
	nodes   []Node
	reasons []string
}

func (f *failing) add(n Node, reason string) {
	f.nodes = append(f.nodes, n)
	f.reasons = append(f.reasons, n.Name+": "+reason)
}

func (f *failing) String() string { return strings.Join(f.reasons, "; ") }

// ips lists the failing nodes' IPs for talosctl -n, or the given nodes' when none failed.
func (f *failing) ips(fallback []Node) string {
	nodes := f.nodes
	if len(nodes) == 0 {
		nodes = fallback
	}

	ips := make([]string, 0, len(nodes))
	for _, n := range nodes {
		ips = append(ips, n.IP)
	}

	return strings.Join(ips, ",")
}

// blame names the node when exactly one is failing.
func (f *failing) blame(r *Runner, phase Phase, lastSeen, hint string) *Error {
	e := &Error{Phase: phase, LastSeen: lastSeen, Hint: hint}
	if len(f.nodes) == 1 {
		e.Node = f.nodes[0].Name
		e.Endpoint = r.endpoint(f.nodes[0])
	}

	return e
}

func (r *Runner) healthAPId(ctx context.Context) error {
	var last failing

	streaks := foreignStreaks{}

	r.progress.printf("", "health: waiting for apid on every node")

	return r.wait(ctx, "", "apid", r.opts.HealthTimeout, func(lastSeen string) *Error {
		return last.blame(r, PhaseHealthAPId, lastSeen,
			"apid answers with the cluster's CA once a node runs its config: run `talforge apply` and check the node's console")
	}, func(ctx context.Context) stepResult {
		last = failing{}

		for i, obs := range r.observeAll(ctx) {
			n := r.cluster.Nodes[i]
			if streaks.confirm(n, obs.state == stateForeign) {
				return stepResult{err: r.foreignError(n, PhaseHealthAPId, obs.seen)}
			}

			if obs.state != stateConfigured {
				last.add(n, obs.seen)
			}
		}

		if len(last.nodes) == 0 {
			r.progress.printf("", "health: apid answers on all %d nodes", len(r.cluster.Nodes))

			return stepResult{done: true}
		}

		return stepResult{seen: last.String()}
	})
}

func (r *Runner) healthEtcd(ctx context.Context) error {
	cps := r.controlPlanes()

	var want []string
	for _, n := range cps {
		want = append(want, n.Name)
	}

	slices.Sort(want)

	var last failing

	r.progress.printf("", "health: waiting for etcd (one member per control plane: %s)", strings.Join(want, ", "))

	return r.wait(ctx, "", "etcd", r.opts.HealthTimeout, func(lastSeen string) *Error {
		ips := last.ips(cps)

		return last.blame(r, PhaseHealthEtcd, lastSeen, fmt.Sprintf(
			"check etcd: talosctl -n %s service etcd; talosctl -n %s logs etcd; "+
				"an unexpected member is a removed node: talosctl -n %s etcd members, then etcd remove-member <id>; "+
				"if etcd was never bootstrapped run `talforge bootstrap`", ips, ips, cps[0].IP))
	}, func(ctx context.Context) stepResult {
		last = failing{}

		view := r.observeEtcd(ctx)

		for _, n := range cps {
			switch {
			case slices.ContainsFunc(view.unreachable, func(s string) bool { return strings.HasPrefix(s, n.Name+": ") }):
				last.add(n, "unreachable")
			case !slices.Contains(view.running, n.Name):
				last.add(n, "etcd not running")
			case !slices.Contains(view.members, n.Name):
				last.add(n, "not an etcd member yet")
			}
		}

		var extra []string

		for _, m := range view.members {
			if !slices.Contains(want, m) {
				extra = append(extra, m)
			}
		}

		if len(last.nodes) == 0 && len(extra) == 0 {
			r.progress.printf("", "health: etcd healthy, members %s", strings.Join(view.members, ", "))

			return stepResult{done: true}
		}

		seen := last.String()
		if len(extra) > 0 {
			seen = strings.TrimPrefix(seen+"; unexpected etcd members (not control planes of this profile): "+strings.Join(extra, ", "), "; ")
		}

		// Members that are starting or joining come up on their own, soon after the first one
		// runs; unreachable nodes and members of another profile do not.
		return stepResult{seen: seen, soon: len(extra) == 0 && len(view.unreachable) == 0}
	})
}

func (r *Runner) healthAPIServer(ctx context.Context, kube Kube) error {
	r.progress.printf("", "health: waiting for kube-apiserver at %s", kube.Server())

	return r.wait(ctx, "", "kube-apiserver", r.opts.HealthTimeout, func(lastSeen string) *Error {
		ips := (&failing{}).ips(r.controlPlanes())
		hint := fmt.Sprintf("kube-apiserver runs as a static pod on the control planes once etcd is healthy: "+
			"talosctl -n %s containers -k; talosctl -n %s logs kubelet", ips, ips)

		if r.cluster.VIP != "" {
			hint += fmt.Sprintf("; the endpoint is the VIP %s: check that a control plane holds it (talosctl -n %s get addresses)", r.cluster.VIP, ips)
		}

		return &Error{Phase: PhaseHealthAPI, LastSeen: lastSeen, Hint: hint}
	}, func(ctx context.Context) stepResult {
		ctx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
		defer cancel()

		v, err := kube.ServerVersion(ctx)
		if err != nil {
			return stepResult{seen: describe(err), soon: true}
		}

		r.progress.printf("", "health: kube-apiserver %s answers at %s", v, kube.Server())

		return stepResult{done: true}
	})
}

// observeAll observes every node at once (each observation is a TLS handshake or two), in
// profile order.
func (r *Runner) observeAll(ctx context.Context) []observation {
	out := make([]observation, len(r.cluster.Nodes))

	var wg sync.WaitGroup

	for i, n := range r.cluster.Nodes {
		wg.Go(func() { out[i] = r.observe(ctx, n) })
	}

	wg.Wait()

	return out
}

func (r *Runner) healthNodes(ctx context.Context, kube Kube) error {
	var last failing

	r.progress.printf("", "health: waiting for every node to register with Kubernetes")

	return r.wait(ctx, "", "node registration", r.opts.HealthTimeout, func(lastSeen string) *Error {
		ips := last.ips(r.cluster.Nodes)

		return last.blame(r, PhaseHealthNodes, lastSeen, fmt.Sprintf(
			"a node registers when its kubelet reaches the API server: talosctl -n %s service kubelet; talosctl -n %s logs kubelet", ips, ips))
	}, func(ctx context.Context) stepResult {
		ctx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
		defer cancel()

		names, err := kube.NodeNames(ctx)
		if err != nil {
			return stepResult{seen: "list nodes: " + describe(err)}
		}

		last = failing{}

		for _, n := range r.cluster.Nodes {
			if !slices.Contains(names, n.Name) {
				last.add(n, "not registered")
			}
		}

		if len(last.nodes) == 0 {
			r.progress.printf("", "health: all %d nodes registered", len(r.cluster.Nodes))

			return stepResult{done: true}
		}

		return stepResult{seen: last.String(), soon: true}
	})
}
