package bootstrap

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	machinetype "github.com/siderolabs/talos/pkg/machinery/config/machine"

	"github.com/talforge/talforge/pkg/poll"
)

// Node is one machine to bring up.
type Node struct {
	// Name is the node's name in the profile (its hostname).
	Name string
	// IP is the node's static IP: its Talos API address.
	IP string
	// Role is the node's machine type (control plane or worker).
	Role machinetype.Type
	// Config is the node's machine config, as generated.
	Config []byte
	// Endpoint overrides the Talos API address (host:port). Empty means IP on Options.TalosPort.
	Endpoint string
}

// Cluster is what the package works on: the nodes in profile order (the first control plane bootstraps
// etcd) and the talosconfig whose CA and client certificate reach them once configured.
type Cluster struct {
	// Name is the cluster name (for messages).
	Name string
	// Nodes in profile order.
	Nodes []Node
	// Talosconfig is the cluster's talosconfig (YAML).
	Talosconfig []byte
	// VIP is the control planes' shared IP, if any. It is never used as a Talos API endpoint; it is only
	// checked not to be a node's address.
	VIP string
}

// Mode is how a changed config is applied to a configured node.
type Mode string

// Apply modes for configured nodes (maintenance nodes always get AUTO: they install and boot the config).
const (
	ModeAuto     Mode = "auto"
	ModeNoReboot Mode = "no-reboot"
	ModeStaged   Mode = "staged"
)

// ParseMode parses a --mode flag value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeNoReboot, ModeStaged:
		return m, nil
	default:
		return "", fmt.Errorf("invalid apply mode %q: expected one of auto, no-reboot, staged", s)
	}
}

func (m Mode) proto() machine.ApplyConfigurationRequest_Mode {
	switch m {
	case ModeNoReboot:
		return machine.ApplyConfigurationRequest_NO_REBOOT
	case ModeStaged:
		return machine.ApplyConfigurationRequest_STAGED
	default:
		return machine.ApplyConfigurationRequest_AUTO
	}
}

// Options tune a Runner. The zero value gives production defaults.
type Options struct {
	// Mode applies changed configs to configured nodes (default auto).
	Mode Mode
	// DryRun observes and reports (diffs included) but changes nothing.
	DryRun bool
	// TalosPort is the Talos API port (default 50000).
	TalosPort int
	// Progress receives one line per event ("cp-1: ..."); nil discards them.
	Progress io.Writer
	// APITimeout bounds waiting for a node's Talos API, including an install and reboot (default 15m).
	APITimeout time.Duration
	// BootstrapTimeout bounds the etcd bootstrap phase (default 10m).
	BootstrapTimeout time.Duration
	// HealthTimeout bounds each health phase (default 10m).
	HealthTimeout time.Duration
	// PollInterval is the pause between observations (default 2s).
	PollInterval time.Duration
	// CallTimeout bounds one Talos API call (default 15s).
	CallTimeout time.Duration
	// ProgressEvery repeats a "still waiting" line this often while nothing changes (default 15s).
	ProgressEvery time.Duration
	// Waits, when set, also receives every wait's reports, with the node it concerns ("" for
	// the cluster), for progress displays.
	Waits func(subject string, p poll.Progress)
}

func (o Options) withDefaults() Options {
	if o.Mode == "" {
		o.Mode = ModeAuto
	}

	if o.TalosPort == 0 {
		o.TalosPort = 50000
	}

	if o.Progress == nil {
		o.Progress = io.Discard
	}

	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}

	def(&o.APITimeout, 15*time.Minute)
	def(&o.BootstrapTimeout, 10*time.Minute)
	def(&o.HealthTimeout, 10*time.Minute)
	def(&o.PollInterval, 2*time.Second)
	def(&o.CallTimeout, 15*time.Second)
	def(&o.ProgressEvery, 15*time.Second)

	return o
}

func (n Node) endpoint(port int) string {
	if n.Endpoint != "" {
		return n.Endpoint
	}

	return net.JoinHostPort(n.IP, strconv.Itoa(port))
}

// Phase names a step in errors and progress.
type Phase string

// Phases.
const (
	PhaseWaitAPI        Phase = "wait for Talos API"
	PhaseApply          Phase = "apply config"
	PhaseWaitConfigured Phase = "wait for configured mode"
	PhaseCompare        Phase = "compare live config"
	PhaseBootstrap      Phase = "bootstrap etcd"
	PhaseHealthAPId     Phase = "health: apid"
	PhaseHealthEtcd     Phase = "health: etcd"
	PhaseHealthAPI      Phase = "health: kube-apiserver"
	PhaseHealthNodes    Phase = "health: nodes registered"
	PhaseKubeconfig     Phase = "kubeconfig"
)

// ErrTimeout is wrapped by *Error when a phase ran out of time.
var ErrTimeout = errors.New("timed out")

// Error says which node, which phase, what was last seen and what to check next.
type Error struct {
	// Node is the node's name; empty for cluster-wide phases.
	Node string
	// Endpoint is the Talos API address the node was reached at.
	Endpoint string
	Phase    Phase
	// LastSeen is the last observation, e.g. "connection refused" or "stage maintenance".
	LastSeen string
	// Hint says what to check next.
	Hint string
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder

	if e.Node != "" {
		fmt.Fprintf(&b, "node %s", e.Node)

		if e.Endpoint != "" {
			fmt.Fprintf(&b, " (%s)", e.Endpoint)
		}

		b.WriteString(": ")
	}

	fmt.Fprintf(&b, "%s: %v", e.Phase, e.Err)

	if e.LastSeen != "" {
		fmt.Fprintf(&b, "; last seen: %s", e.LastSeen)
	}

	if e.Hint != "" {
		fmt.Fprintf(&b, "\n  next: %s", e.Hint)
	}

	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }
