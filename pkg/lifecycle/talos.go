package lifecycle

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	machinetype "github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"

	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/machineconfig"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/schematic"
	"github.com/talforge/talforge/pkg/secrets"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// ErrNotGenerated means clusters/<name>/ has no secrets bundle yet.
var ErrNotGenerated = errors.New("the cluster's secrets bundle does not exist yet")

// talosCluster turns rendered configs into the bootstrap stage's input.
func talosCluster(c *profile.Cluster, configs []*machineconfig.Config, talosconfig []byte) bootstrap.Cluster {
	in := bootstrap.Cluster{Name: c.Metadata.Name, Talosconfig: talosconfig, VIP: c.Network.VIP}
	for _, cfg := range configs {
		role := machinetype.TypeWorker
		if cfg.Node.Role == profile.RoleControlPlane {
			role = machinetype.TypeControlPlane
		}
		in.Nodes = append(in.Nodes, bootstrap.Node{Name: cfg.Node.Name, IP: cfg.Node.IP, Role: role, Config: cfg.Bytes})
	}
	return in
}

// renderTalos renders every node's config from the profile and the stored secrets bundle,
// in memory (what `generate` writes), with the stored talosconfig: for commands that must
// not write.
func renderTalos(ctx context.Context, c *profile.Cluster) (bootstrap.Cluster, []*machineconfig.Config, error) {
	out := c.OutputDir()
	bundlePath := filepath.Join(out, secrets.FileName)
	ok, err := secrets.Exists(bundlePath)
	if err != nil {
		return bootstrap.Cluster{}, nil, err
	}
	if !ok {
		return bootstrap.Cluster{}, nil, fmt.Errorf("%w: %s (run `talforge up` or `talforge generate`)", ErrNotGenerated, bundlePath)
	}
	bundle, err := secrets.Load(bundlePath)
	if err != nil {
		return bootstrap.Cluster{}, nil, err
	}
	img, err := schematic.ForCluster(c)
	if err != nil {
		return bootstrap.Cluster{}, nil, err
	}
	gen, err := machineconfig.New(ctx, c, img, bundle)
	if err != nil {
		return bootstrap.Cluster{}, nil, err
	}
	configs, err := gen.All(ctx)
	if err != nil {
		return bootstrap.Cluster{}, nil, err
	}
	existing, err := sopsfile.DecryptFile(filepath.Join(out, generate.TalosconfigFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return bootstrap.Cluster{}, nil, err
	}
	talosconfig, err := gen.Talosconfig(existing)
	if err != nil {
		return bootstrap.Cluster{}, nil, err
	}
	return talosCluster(c, configs, talosconfig), configs, nil
}

// talosPort is the Talos API port the options select (default 50000).
func talosPort(o Options) int {
	if o.Talos.TalosPort != 0 {
		return o.Talos.TalosPort
	}
	return 50000
}

// TalosObservation is what a node's Talos API says.
type TalosObservation struct {
	// Mode is configured, maintenance or unreachable.
	Mode string `json:"mode"`
	// Stage is the machine stage (running, booting, maintenance, ...).
	Stage string `json:"stage,omitempty"`
	// Ready is MachineStatus' readiness.
	Ready bool   `json:"ready"`
	Error string `json:"error,omitempty"`
}

// observeTalos reads a node's MachineStatus, as the cluster first (mTLS with the
// talosconfig), then as a maintenance client.
func observeTalos(ctx context.Context, endpoint string, tc *clientconfig.Config, timeout time.Duration) TalosObservation {
	read := func(opts ...client.OptionFunc) (*runtime.MachineStatus, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		c, err := client.New(ctx, append(opts, client.WithEndpoints(endpoint))...)
		if err != nil {
			return nil, err
		}
		defer c.Close() // read-only probe
		return safe.StateGetByID[*runtime.MachineStatus](ctx, c.COSI, runtime.MachineStatusID)
	}
	ms, err := read(client.WithConfig(tc))
	if err == nil {
		return TalosObservation{Mode: "configured", Stage: stageName(ms.TypedSpec().Stage), Ready: ms.TypedSpec().Status.Ready}
	}
	secureErr := err
	ms, err = read(client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true})) // maintenance mode has no verifiable identity
	if err == nil {
		return TalosObservation{Mode: "maintenance", Stage: stageName(ms.TypedSpec().Stage)}
	}
	if handshake(secureErr) && handshake(err) {
		return TalosObservation{Mode: "foreign", Error: "answers TLS, but neither in maintenance mode nor with this cluster's CA"}
	}
	return TalosObservation{Mode: "unreachable", Error: shortError(secureErr)}
}

func stageName(s runtime.MachineStage) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "MachineStage"))
}

func handshake(err error) bool {
	msg := err.Error()
	for _, s := range []string{"authentication handshake failed", "tls:", "x509:", "certificate"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func shortError(err error) string {
	msg := err.Error()
	for _, known := range []string{"connection refused", "no route to host", "network is unreachable", "connection reset by peer", "i/o timeout"} {
		if strings.Contains(msg, known) {
			return known
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "DeadlineExceeded") {
		return "no answer (timeout)"
	}
	return msg
}

// etcdMembers asks a configured control plane for etcd's members (hostnames, sorted).
func etcdMembers(ctx context.Context, endpoint string, tc *clientconfig.Config, timeout time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := client.New(ctx, client.WithConfig(tc), client.WithEndpoints(endpoint))
	if err != nil {
		return nil, err
	}
	defer c.Close() // read-only
	resp, err := c.EtcdMemberList(ctx, &machine.EtcdMemberListRequest{})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, m := range resp.GetMessages() {
		for _, mem := range m.GetMembers() {
			names = append(names, mem.GetHostname())
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

func endpointOf(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }
