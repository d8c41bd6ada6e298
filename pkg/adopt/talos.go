package adopt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"time"

	"github.com/cosi-project/runtime/pkg/safe"
	factory "github.com/siderolabs/image-factory/pkg/schematic"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/resources/cluster"

	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/parallel"
	"github.com/talforge/talforge/pkg/profile"
)

// Defaults of TalosOptions.
const (
	DefaultTalosPort    = 50000
	DefaultTalosTimeout = 30 * time.Second
)

// TalosOptions say how to reach the hand-made cluster's nodes.
type TalosOptions struct {
	// Talosconfig is the cluster's talosconfig (a client certificate with os:admin).
	Talosconfig []byte
	// Endpoint is a control plane's IP to read the secrets from (default: the talosconfig
	// context's first endpoint).
	Endpoint string
	// Nodes are the IPs of the nodes to adopt (default: the context's nodes; else the
	// cluster's discovered members, else the etcd members and the endpoint).
	Nodes []string
	// Port is the Talos API port (default 50000).
	Port int
	// FromConfig is a control plane machine config to take the secrets from instead of the
	// endpoint's live config.
	FromConfig []byte
	// Timeout bounds each node's reads (default 30s).
	Timeout time.Duration
}

// TalosImport is a hand-made cluster's Talos side, described the way talforge describes its own.
type TalosImport struct {
	// Bundle is the cluster's secrets, from a control plane's config.
	Bundle *secrets.Bundle
	// Profile holds only what import derived (no defaults filled in) and the patch references.
	Profile *profile.Cluster
	// Files are the patch files by path relative to the project root (patches/<name>/...).
	Files map[string][]byte
	// Live is every node's live config, by node name.
	Live map[string][]byte
	// Warnings are things import could not derive or reproduce, for the user to read.
	Warnings []string

	// nodes are the live nodes' facts, for Repatch.
	nodes []*nodeFacts
	// schematic is the control plane's image's schematic, when known, for Repatch.
	schematic *factory.Schematic
}

// NodeDiff is the redacted difference between a node's rendered and live configs.
type NodeDiff struct {
	Node, Diff string
}

// liveNode is what one node told us.
type liveNode struct {
	ip      string
	version string
	cfg     config.Provider
	raw     []byte
	// schematic is the Image Factory schematic the node reports its image was built from
	// (ExtensionStatus "schematic"); nil when it reports none.
	schematic *reportedSchematic
}

// ReadTalos reads every node's live machine config and the cluster's secrets, and describes
// them as a profile named name with patch files that make talforge render each live config
// again. It changes nothing on any node.
func ReadTalos(ctx context.Context, name string, o TalosOptions) (*TalosImport, error) {
	if !profile.ValidClusterName(name) {
		return nil, fmt.Errorf("cluster name %q is not a DNS label (lowercase letters, digits and '-')", name)
	}

	tc, err := clientconfig.FromBytes(o.Talosconfig)
	if err != nil {
		return nil, fmt.Errorf("talosconfig: %w", err)
	}

	// NewIdentity refuses a current context that does not exist, so tctx below is set.
	id, err := bootstrap.NewIdentity(tc)
	if err != nil {
		return nil, fmt.Errorf("talosconfig: %w", err)
	}

	tctx := tc.Contexts[tc.Context]

	if o.Port == 0 {
		o.Port = DefaultTalosPort
	}

	if o.Timeout == 0 {
		o.Timeout = DefaultTalosTimeout
	}

	if o.Endpoint == "" {
		if len(tctx.Endpoints) == 0 {
			return nil, errors.New("no endpoint: the talosconfig's context lists none; give a control plane's IP (--endpoint)")
		}

		o.Endpoint = hostOnly(tctx.Endpoints[0])
	}

	r := &reader{id: id, port: o.Port, timeout: o.Timeout}

	ep, err := r.read(ctx, o.Endpoint)
	if err != nil {
		return nil, err
	}

	bundle, err := bundleFrom(ep, o.FromConfig)
	if err != nil {
		return nil, err
	}

	ips := o.Nodes
	if len(ips) == 0 {
		ips = tctx.Nodes
	}

	var warnings []string

	if len(ips) == 0 {
		ips, warnings = r.discover(ctx, o.Endpoint)
	}

	ips = slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(ips), o.Endpoint))))

	nodes := make([]*liveNode, len(ips))
	errs := make([]error, len(ips))

	if err := parallel.ForEach(ctx, len(ips), 4, func(i int) {
		if ips[i] == o.Endpoint {
			nodes[i] = ep

			return
		}

		nodes[i], errs[i] = r.read(ctx, ips[i])
	}); err != nil {
		return nil, err
	}

	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("import reads every node and writes nothing until all answer: %w", err)
	}

	imp, err := describe(ctx, name, bundle, nodes)
	if err != nil {
		return nil, err
	}

	imp.Warnings = append(warnings, imp.Warnings...)

	return imp, nil
}

// hostOnly strips a port from a talosconfig endpoint.
func hostOnly(ep string) string {
	if u, err := url.Parse(ep); err == nil && u.Host != "" {
		ep = u.Host
	}

	if h, _, err := net.SplitHostPort(ep); err == nil {
		return h
	}

	return ep
}

func bundleFrom(ep *liveNode, fromConfig []byte) (*secrets.Bundle, error) {
	cfg := ep.cfg
	what := "endpoint " + ep.ip

	if fromConfig != nil {
		c, err := configloader.NewFromBytes(fromConfig)
		if err != nil {
			return nil, fmt.Errorf("--from-config: %w", err)
		}

		cfg, what = c, "--from-config"
	}

	if cfg.Machine() == nil || !cfg.Machine().Type().IsControlPlane() {
		return nil, fmt.Errorf("%s runs as a worker: a worker's config holds no cluster CA keys; "+
			"point --endpoint at a control plane's IP (or give a control plane config with --from-config)", what)
	}

	// NewBundleFromConfig is what `talosctl gen secrets --from-controlplane-config` uses
	// (machinery config/generate/secrets/bundle.go).
	b, err := secrets.NewBundleFromConfig(secrets.NewFixedClock(time.Now()), cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: secrets bundle from its machine config: %w", what, err)
	}

	return b, nil
}

// reader reads nodes with the cluster's talosconfig.
type reader struct {
	id      *bootstrap.Identity
	port    int
	timeout time.Duration
}

func (r *reader) connect(ctx context.Context, ip string) (*client.Client, error) {
	return r.id.Client(ctx, bootstrap.Endpoint(ip, r.port))
}

// read fetches a node's live config and Talos version. Its errors name the node, what failed
// and what to do.
func (r *reader) read(ctx context.Context, ip string) (*liveNode, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()

	addr := bootstrap.Endpoint(ip, r.port)

	c, err := r.connect(ctx, ip)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", addr, err)
	}
	defer c.Close() //nolint:errcheck // read-only

	cfg, err := bootstrap.ReadLiveConfig(ctx, c)
	if err != nil {
		return nil, r.explain(ctx, addr, err)
	}

	raw, err := cfg.Bytes()
	if err != nil {
		return nil, fmt.Errorf("node %s: encode its config: %w", addr, err)
	}

	n := &liveNode{ip: ip, cfg: cfg, raw: raw}

	v, err := c.Version(ctx)
	if err != nil {
		return nil, fmt.Errorf("node %s: read its Talos version: %s", addr, bootstrap.ShortError(err))
	}

	if msgs := v.GetMessages(); len(msgs) > 0 {
		n.version = msgs[0].GetVersion().GetTag()
	}

	if n.schematic, err = readSchematic(ctx, c); err != nil {
		return nil, fmt.Errorf("node %s: read its system extensions: %s", addr, bootstrap.ShortError(err))
	}

	return n, nil
}

// explain turns a failed read into what a person can act on.
func (r *reader) explain(ctx context.Context, addr string, err error) error {
	if !bootstrap.IsHandshakeFailure(err) {
		return fmt.Errorf("node %s: %w: check that the node is up and the IP and port (--endpoint, --nodes) are right", addr, err)
	}

	// Is it a node in maintenance mode (no cluster yet), or a node of another cluster?
	c, ierr := client.New(ctx, client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true}), // maintenance mode has no verifiable identity
		client.WithEndpoints(addr))
	if ierr == nil {
		defer c.Close() //nolint:errcheck // one probe

		if _, ierr = c.Version(ctx); ierr == nil {
			return fmt.Errorf("node %s is in maintenance mode (it runs no config yet): there is nothing to import from it; leave it out of --nodes", addr)
		}
	}

	return fmt.Errorf("node %s answers TLS but does not accept this talosconfig (%s): the node's CA is not the one this "+
		"talosconfig trusts, or it does not trust its client certificate; use the talosconfig of the cluster you import", addr, bootstrap.ShortError(err))
}

// discover lists the cluster's node IPs from the endpoint: Talos' discovery members (every
// node, where discovery is on), else the etcd members (control planes only).
func (r *reader) discover(ctx context.Context, ep string) ([]string, []string) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()

	c, err := r.connect(ctx, ep)
	if err != nil {
		return nil, []string{"no nodes listed and none discovered (" + err.Error() + "): only the endpoint is imported; list the nodes with --nodes"}
	}
	defer c.Close() //nolint:errcheck // read-only

	var ips []string

	if members, err := safe.StateListAll[*cluster.Member](ctx, c.COSI); err == nil {
		for m := range members.All() {
			if addrs := m.TypedSpec().Addresses; len(addrs) > 0 {
				ips = append(ips, addrs[0].String())
			}
		}
	}

	if len(ips) > 0 {
		return ips, nil
	}

	resp, err := c.EtcdMemberList(ctx, &machine.EtcdMemberListRequest{})
	if err != nil {
		return nil, []string{"no nodes listed and none discovered: only the endpoint is imported; list the nodes with --nodes"}
	}

	for _, m := range resp.GetMessages() {
		for _, mem := range m.GetMembers() {
			for _, u := range mem.GetPeerUrls() {
				if pu, err := url.Parse(u); err == nil && pu.Hostname() != "" {
					ips = append(ips, pu.Hostname())

					break
				}
			}
		}
	}

	return ips, []string{"no nodes listed and discovery is off: found the control planes through etcd; workers are not in etcd, list them with --nodes"}
}
