package bootstrap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/cosi-project/runtime/pkg/safe"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	machinetype "github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"

	"github.com/talforge/talforge/pkg/parallel"
)

// Runner brings one cluster up. It holds no state between calls besides its inputs and its connections
// to the nodes (see conns): every method observes the nodes first, so any method can be re-run after an
// interruption. Close closes the connections.
type Runner struct {
	cluster  Cluster
	opts     Options
	identity *Identity
	desired  map[string]config.Provider
	progress *progress
	// secrets scrubs the desired configs' secret values from messages nodes send back.
	secrets scrubber
	conns   conns
}

// New checks the inputs and returns a Runner. It refuses inconsistent input before touching any node: a
// config whose role differs from the node's, no control plane, a VIP that is also a node address, or a
// talosconfig without a CA and client certificate.
func New(c Cluster, opts Options) (*Runner, error) {
	opts = opts.withDefaults()

	if _, err := ParseMode(string(opts.Mode)); err != nil {
		return nil, err
	}

	if len(c.Nodes) == 0 {
		return nil, errors.New("cluster has no nodes")
	}

	r := &Runner{cluster: c, opts: opts, desired: map[string]config.Provider{}, progress: &progress{out: opts.Progress}}

	seen := map[string]bool{}

	for _, n := range c.Nodes {
		if n.Name == "" || n.IP == "" {
			return nil, fmt.Errorf("node %q: name and IP are required", n.Name)
		}

		if seen[n.Name] {
			return nil, fmt.Errorf("node %s: listed twice", n.Name)
		}

		seen[n.Name] = true

		if c.VIP != "" && (n.IP == c.VIP || hostOf(n.Endpoint) == c.VIP) {
			return nil, fmt.Errorf("node %s: its address %s is the VIP; the VIP moves between control planes and must never be a Talos API endpoint", n.Name, c.VIP)
		}
	}

	// Decoding a config and finding its secret values encodes and parses it a few times: the
	// nodes are done on every core, as they hold up the first apply.
	cfgs := make([]config.Provider, len(c.Nodes))
	values := make([][]string, len(c.Nodes))
	errs := make([]error, len(c.Nodes))

	_ = parallel.ForEach(context.Background(), len(c.Nodes), 0, func(i int) {
		cfgs[i], values[i], errs[i] = decodeDesired(c.Nodes[i])
	})

	var controlPlanes int

	for i, n := range c.Nodes {
		if errs[i] != nil {
			return nil, errs[i]
		}

		r.secrets.add(values[i])

		if !sameRole(cfgs[i].Machine().Type(), n.Role) {
			return nil, fmt.Errorf("node %s: machine config is for a %s but the node is a %s; regenerate the configs (talforge generate)",
				n.Name, cfgs[i].Machine().Type(), n.Role)
		}

		if n.Role.IsControlPlane() {
			controlPlanes++
		}

		r.desired[n.Name] = cfgs[i]
	}

	if controlPlanes == 0 {
		return nil, errors.New("cluster has no control plane node")
	}

	tc, err := clientconfig.FromBytes(c.Talosconfig)
	if err != nil {
		return nil, fmt.Errorf("talosconfig: %w", err)
	}

	ctx, ok := tc.Contexts[tc.Context]
	if !ok || ctx.CA == "" || ctx.Crt == "" || ctx.Key == "" {
		return nil, fmt.Errorf("talosconfig: context %q needs a CA, a client certificate and a key", tc.Context)
	}

	if r.identity, err = NewIdentity(tc); err != nil {
		return nil, fmt.Errorf("talosconfig: %w", err)
	}

	return r, nil
}

// decodeDesired decodes a node's config and lists its secret values.
func decodeDesired(n Node) (config.Provider, []string, error) {
	cfg, err := configloader.NewFromBytes(n.Config)
	if err != nil {
		// The loader quotes the offending YAML, secrets included: keep only its first line.
		first, _, _ := strings.Cut(err.Error(), "\n")

		return nil, nil, fmt.Errorf("node %s: machine config does not parse: %s (details not shown: they may contain secret values)", n.Name, first)
	}

	values, err := secretStrings(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("node %s: machine config: %w", n.Name, err)
	}

	return cfg, values, nil
}

func hostOf(endpoint string) string {
	host, _, err := net.SplitHostPort(endpoint)
	if err != nil {
		return endpoint
	}

	return host
}

// sameRole treats the legacy "init" type as a control plane.
func sameRole(a, b machinetype.Type) bool {
	return a == b || (a.IsControlPlane() && b.IsControlPlane())
}

func (r *Runner) controlPlanes() []Node {
	var out []Node

	for _, n := range r.cluster.Nodes {
		if n.Role.IsControlPlane() {
			out = append(out, n)
		}
	}

	return out
}

func (r *Runner) endpoint(n Node) string { return n.endpoint(r.opts.TalosPort) }

// secureClient talks to one node with the talosconfig's CA and client certificate. Calls get it through
// Runner.call, which reuses it while it works and dials afresh after a failure (see conns).
func (r *Runner) secureClient(ctx context.Context, n Node) (*client.Client, error) {
	return r.identity.Client(ctx, r.endpoint(n))
}

// insecureClient talks to a node in maintenance mode, which serves a self-signed certificate.
func (r *Runner) insecureClient(ctx context.Context, n Node) (*client.Client, error) {
	return maintenanceClient(ctx, r.endpoint(n))
}

// maintenanceClient dials a node in maintenance mode, which serves a self-signed certificate.
func maintenanceClient(ctx context.Context, endpoint string) (*client.Client, error) {
	return client.New(ctx,
		client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true}), // maintenance mode has no verifiable identity
		client.WithEndpoints(endpoint))
}

type nodeState int

const (
	stateDown nodeState = iota
	stateMaintenance
	stateConfigured
	// stateForeign: the node answers TLS, but neither in maintenance mode nor with this cluster's CA.
	stateForeign
)

// foreignConfirmations is how many consecutive observations must find a node foreign before talforge gives
// up on it: a node caught rebooting between maintenance and configured mode fails both TLS probes of one
// observation (the first sees the old mode, the second the new one), another cluster's node fails every time.
const foreignConfirmations = 3

// foreignStreaks counts consecutive foreign observations per node.
type foreignStreaks map[string]int

// confirm records an observation and reports whether the node is confirmed foreign.
func (s foreignStreaks) confirm(n Node, foreign bool) bool {
	if !foreign {
		delete(s, n.Name)

		return false
	}

	s[n.Name]++

	return s[n.Name] >= foreignConfirmations
}

type observation struct {
	state nodeState
	stage runtime.MachineStage
	seen  string
}

// observe reads the node's stage: first as the cluster (mTLS with the talosconfig), then as a maintenance
// client. Which of the two TLS handshakes succeeds tells the node's mode.
func (r *Runner) observe(ctx context.Context, n Node) observation {
	ctx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
	defer cancel()

	stage, err := r.readStage(ctx, n, modeSecure)
	if err == nil {
		return observation{state: stateConfigured, stage: stage, seen: "configured mode, stage " + stage.String()}
	}

	if !isHandshakeFailure(err) {
		return observation{state: stateDown, seen: describe(err)}
	}

	secureErr := err

	stage, err = r.readStage(ctx, n, modeMaintenance)
	if err == nil {
		return observation{state: stateMaintenance, stage: stage, seen: "maintenance mode, stage " + stage.String()}
	}

	if isHandshakeFailure(err) {
		return observation{state: stateForeign, seen: "TLS: " + describe(secureErr)}
	}

	return observation{state: stateDown, seen: describe(err)}
}

func (r *Runner) readStage(ctx context.Context, n Node, mode connMode) (runtime.MachineStage, error) {
	stage := runtime.MachineStageUnknown

	err := r.call(ctx, n, mode, func(c *client.Client) error {
		ms, err := safe.StateGetByID[*runtime.MachineStatus](ctx, c.COSI, runtime.MachineStatusID)
		if err == nil {
			stage = ms.TypedSpec().Stage
		}

		return err
	})

	return stage, err
}

// isHandshakeFailure reports a TLS failure: something answered, but the identities did not match.
func isHandshakeFailure(err error) bool {
	msg := err.Error()

	for _, s := range []string{"authentication handshake failed", "tls:", "x509:", "certificate"} {
		if strings.Contains(msg, s) {
			return true
		}
	}

	return false
}

// refusedConnection is how describe names a node whose API port is closed (down, booting).
const refusedConnection = "connection refused"

// describe shortens gRPC transport errors to what a person needs to see.
func describe(err error) string {
	msg := err.Error()

	for _, known := range []string{refusedConnection, "no route to host", "network is unreachable", "connection reset by peer", "i/o timeout"} {
		if strings.Contains(msg, known) {
			return known
		}
	}

	if errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded {
		return "no answer (timeout)"
	}

	if st, ok := status.FromError(unwrapStatus(err)); ok {
		return fmt.Sprintf("%s: %s", st.Code(), st.Message())
	}

	return msg
}

// unwrapStatus finds the gRPC status inside machinery's NodeError/multierror wrapping.
func unwrapStatus(err error) error {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus().Err()
	}

	return err
}

func codeOf(err error) codes.Code { return status.Code(unwrapStatus(err)) }
