package bootstrap

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
)

// EtcdAction is what Bootstrap did.
type EtcdAction string

// Bootstrap outcomes.
const (
	EtcdBootstrapped        EtcdAction = "bootstrapped"
	EtcdAlreadyBootstrapped EtcdAction = "already bootstrapped"
	EtcdWouldBootstrap      EtcdAction = "would bootstrap"
)

// EtcdResult reports Bootstrap's outcome.
type EtcdResult struct {
	Action EtcdAction `json:"action"`
	// Node is the control plane Bootstrap was (or would be) sent to: always the first one.
	Node string `json:"node"`
	// Members are the etcd member hostnames seen, sorted (empty right after a fresh bootstrap).
	Members []string `json:"members"`
}

// etcdView is what the control planes report about etcd.
type etcdView struct {
	members     []string
	running     []string // control planes whose etcd service runs
	unreachable []string // "cp-2: connection refused"
	// foreign are control planes that answer TLS but not with this cluster's CA: waiting does not help.
	foreign []Node
}

func (v etcdView) bootstrapped() bool { return len(v.members) > 0 || len(v.running) > 0 }

func (v etcdView) String() string {
	var parts []string

	if len(v.members) > 0 {
		parts = append(parts, "members "+strings.Join(v.members, ", "))
	}

	if len(v.running) > 0 {
		parts = append(parts, "etcd running on "+strings.Join(v.running, ", "))
	}

	if len(v.unreachable) > 0 {
		parts = append(parts, "unreachable: "+strings.Join(v.unreachable, "; "))
	}

	if len(parts) == 0 {
		return "no etcd members, etcd not running on any control plane"
	}

	return strings.Join(parts, "; ")
}

// cpEtcd is what one control plane says about etcd.
type cpEtcd struct {
	running bool
	members []string
	// unreachable says why the node did not answer ("" when it did); foreign: it answers TLS
	// with another identity.
	unreachable string
	foreign     bool
}

// observeEtcd asks every control plane, each on its own IP, for etcd members and the etcd service state.
// The control planes are asked at once: each answer costs a TLS handshake and two calls, and the
// bootstrap and health waits ask again every PollInterval.
func (r *Runner) observeEtcd(ctx context.Context) etcdView {
	cps := r.controlPlanes()
	seen := make([]cpEtcd, len(cps))

	var wg sync.WaitGroup

	for i, n := range cps {
		wg.Go(func() { seen[i] = r.observeEtcdOn(ctx, n) })
	}

	wg.Wait()

	var view etcdView

	members := map[string]bool{}

	for i, n := range cps {
		s := seen[i]

		switch {
		case s.foreign:
			view.foreign = append(view.foreign, n)
			fallthrough
		case s.unreachable != "":
			view.unreachable = append(view.unreachable, n.Name+": "+s.unreachable)

			continue
		case s.running:
			view.running = append(view.running, n.Name)
		}

		for _, m := range s.members {
			members[m] = true
		}
	}

	for m := range members {
		view.members = append(view.members, m)
	}

	slices.Sort(view.members)

	return view
}

// observeEtcdOn asks one control plane for its etcd service and etcd's members.
func (r *Runner) observeEtcdOn(ctx context.Context, n Node) cpEtcd {
	var seen cpEtcd

	err := func() error {
		ctx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
		defer cancel()

		var members *machine.EtcdMemberListResponse

		err := r.call(ctx, n, modeSecure, func(c *client.Client) error {
			svc, err := c.ServiceInfo(ctx, "etcd")
			if err != nil {
				return err
			}

			for _, s := range svc {
				if s.Service.GetState() == "Running" {
					seen.running = true
				}
			}

			// Before etcd has a member, Talos cannot list members (there is no etcd to ask): that is the
			// expected answer of an unbootstrapped cluster, not an unreachable node (nor a reason to
			// drop the connection).
			members, _ = c.EtcdMemberList(ctx, &machine.EtcdMemberListRequest{}) //nolint:errcheck // see above

			return nil
		})

		for _, msg := range members.GetMessages() {
			for _, m := range msg.GetMembers() {
				seen.members = append(seen.members, m.GetHostname())
			}
		}

		return err
	}()
	if err == nil {
		return seen
	}

	seen.unreachable = describe(err)

	if isHandshakeFailure(err) {
		// Not (yet) running this cluster's config: tell maintenance mode from another cluster.
		switch obs := r.observe(ctx, n); obs.state {
		case stateForeign:
			seen.foreign = true
			seen.unreachable = obs.seen
		case stateMaintenance:
			seen.unreachable = "in maintenance mode (run `talforge apply`)"
		default:
			seen.unreachable = obs.seen
		}
	}

	return seen
}

// Bootstrap bootstraps etcd exactly once. It observes every control plane first and never calls Bootstrap
// when any of them reports etcd members or a running etcd; it refuses to decide while a control plane is
// unreachable (it could hold the only evidence of an existing etcd); it sends Bootstrap only to the first
// control plane, on its own IP (never the VIP), and treats AlreadyExists as done.
func (r *Runner) Bootstrap(ctx context.Context) (*EtcdResult, error) {
	first := r.controlPlanes()[0]
	res := &EtcdResult{Node: first.Name}
	streaks := foreignStreaks{}

	err := r.wait(ctx, first.Name, "etcd bootstrap", r.opts.BootstrapTimeout, func(lastSeen string) *Error {
		return &Error{
			Node: first.Name, Endpoint: r.endpoint(first), Phase: PhaseBootstrap, LastSeen: lastSeen,
			Hint: fmt.Sprintf("every control plane must answer before talforge decides that etcd is empty; check the unreachable ones, "+
				"and etcd on %s: talosctl -n %s service etcd; talosctl -n %s logs etcd", first.Name, first.IP, first.IP),
		}
	}, func(ctx context.Context) stepResult {
		view := r.observeEtcd(ctx)
		if view.bootstrapped() {
			if res.Action == "" {
				res.Action = EtcdAlreadyBootstrapped
			}

			res.Members = view.members
			r.progress.printf(first.Name, "etcd %s (%s)", res.Action, view)

			return stepResult{done: true}
		}

		for _, n := range r.controlPlanes() {
			if streaks.confirm(n, slices.ContainsFunc(view.foreign, func(f Node) bool { return f.Name == n.Name })) {
				return stepResult{err: r.foreignError(n, PhaseBootstrap, view.String())}
			}
		}

		if len(view.unreachable) > 0 {
			return stepResult{seen: view.String()}
		}

		if res.Action == EtcdBootstrapped {
			// Bootstrap was accepted; etcd is starting.
			return stepResult{seen: "bootstrap accepted, waiting for etcd to start", soon: true}
		}

		if r.opts.DryRun {
			res.Action = EtcdWouldBootstrap
			r.progress.printf(first.Name, "etcd has no members: would bootstrap it on %s (%s)", first.Name, r.endpoint(first))

			return stepResult{done: true}
		}

		seen, done := r.callBootstrap(ctx, first)
		switch done {
		case bootstrapAccepted:
			res.Action = EtcdBootstrapped
			r.progress.printf(first.Name, "Bootstrap accepted by %s; waiting for etcd to start", r.endpoint(first))

			return stepResult{seen: seen, reported: true, soon: true}
		case bootstrapAlreadyDone:
			res.Action = EtcdAlreadyBootstrapped
			r.progress.printf(first.Name, "etcd already bootstrapped (%s)", seen)

			return stepResult{done: true}
		case bootstrapRetry:
		}

		return stepResult{seen: seen}
	})
	if err != nil {
		return nil, err
	}

	return res, nil
}

type bootstrapOutcome int

const (
	bootstrapRetry bootstrapOutcome = iota
	bootstrapAccepted
	bootstrapAlreadyDone
)

func (r *Runner) callBootstrap(ctx context.Context, n Node) (string, bootstrapOutcome) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
	defer cancel()

	err := r.call(ctx, n, modeSecure, func(c *client.Client) error {
		return c.Bootstrap(ctx, &machine.BootstrapRequest{})
	})

	switch {
	case err == nil:
		return "bootstrap accepted, waiting for etcd to start", bootstrapAccepted
	case codeOf(err) == codes.AlreadyExists:
		return describe(err), bootstrapAlreadyDone
	default:
		// FailedPrecondition ("bootstrap is not available yet", "time is not in sync yet") clears by itself;
		// a lost answer is resolved by observing again (a repeated call on the same node answers
		// AlreadyExists if the first one took).
		return "bootstrap not accepted yet: " + describe(err), bootstrapRetry
	}
}
