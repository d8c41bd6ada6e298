package bootstrap

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

// Observation is what a node's Talos API says, read-only.
type Observation struct {
	// Mode is configured, maintenance, foreign or unreachable.
	Mode string `json:"mode"`
	// Stage is the machine stage (running, booting, maintenance, ...).
	Stage string `json:"stage,omitempty"`
	// Ready is MachineStatus' readiness.
	Ready bool   `json:"ready"`
	Error string `json:"error,omitempty"`
}

// Endpoint is a node's Talos API address on port (0 means 50000).
func Endpoint(ip string, port int) string {
	if port == 0 {
		port = 50000
	}

	return net.JoinHostPort(ip, strconv.Itoa(port))
}

// Observe reads a node's MachineStatus, as the cluster first (mTLS with the talosconfig), then
// as a maintenance client. It never changes the node.
func Observe(ctx context.Context, endpoint string, id *Identity, timeout time.Duration) Observation {
	read := func(dial func(context.Context, string) (*client.Client, error)) (*runtime.MachineStatus, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()

		c, err := dial(ctx, endpoint)
		if err != nil {
			return nil, err
		}
		defer c.Close() // read-only probe

		return safe.StateGetByID[*runtime.MachineStatus](ctx, c.COSI, runtime.MachineStatusID)
	}

	ms, err := read(id.Client)
	if err == nil {
		return Observation{Mode: "configured", Stage: stageName(ms.TypedSpec().Stage), Ready: ms.TypedSpec().Status.Ready}
	}

	secureErr := err

	ms, err = read(maintenanceClient)
	if err == nil {
		return Observation{Mode: "maintenance", Stage: stageName(ms.TypedSpec().Stage)}
	}

	if isHandshakeFailure(secureErr) && isHandshakeFailure(err) {
		return Observation{Mode: "foreign", Error: "answers TLS, but neither in maintenance mode nor with this cluster's CA: it belongs to another cluster (`talforge import` adopts it)"}
	}

	return Observation{Mode: "unreachable", Error: ShortError(secureErr)}
}

func stageName(s runtime.MachineStage) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "MachineStage"))
}

// ShortError names a network failure in a few words (connection refused, timeout, a gRPC
// status) and returns any other error's message whole.
func ShortError(err error) string { return describe(err) }

// EtcdMembers asks a configured control plane for etcd's members (hostnames, sorted).
func EtcdMembers(ctx context.Context, endpoint string, id *Identity, timeout time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	c, err := id.Client(ctx, endpoint)
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

// Versions are what a configured node runs: its Talos version ("v1.14.1") and the
// Kubernetes version of the kubelet its machine config names (the image tag, "v1.37.0").
type Versions struct {
	Talos   string `json:"talos"`
	Kubelet string `json:"kubelet,omitempty"`
}

// NodeVersions asks a configured node which Talos version it runs and reads the kubelet image
// of the machine config it runs (that needs os:admin; Kubelet stays empty without it).
func NodeVersions(ctx context.Context, endpoint string, id *Identity, timeout time.Duration) (Versions, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	c, err := id.Client(ctx, endpoint)
	if err != nil {
		return Versions{}, err
	}
	defer c.Close() // read-only

	resp, err := c.Version(ctx)
	if err != nil {
		return Versions{}, err
	}

	var v Versions

	for _, m := range resp.GetMessages() {
		if tag := m.GetVersion().GetTag(); tag != "" {
			v.Talos = tag
		}
	}

	if v.Talos == "" {
		return v, errors.New("the node reports no version")
	}

	if cfg, err := ReadLiveConfig(ctx, c); err == nil && cfg.K8sKubeletConfig() != nil {
		v.Kubelet = ImageTag(cfg.K8sKubeletConfig().Image())
	}

	return v, nil
}

// ImageTag is an image reference's tag ("" for none or a digest only).
func ImageTag(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")

	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ""
	}

	return ref[i+1:]
}
