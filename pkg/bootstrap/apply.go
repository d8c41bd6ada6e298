package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/cosi-project/runtime/pkg/state"
	"google.golang.org/grpc/codes"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configdiff"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/textdiff"

	"github.com/talforge/talforge/pkg/gitops"
	"github.com/talforge/talforge/pkg/redact"
)

// Action is what Apply did (or would do) to a node.
type Action string

// Apply actions.
const (
	// ActionInstalled: the node was in maintenance mode, took its config and came back configured.
	ActionInstalled Action = "installed"
	// ActionWouldInstall: dry run, the node is in maintenance mode.
	ActionWouldInstall Action = "would install"
	// ActionUnchanged: the live config equals the desired one.
	ActionUnchanged Action = "unchanged"
	// ActionApplied: the configured node got the changed config.
	ActionApplied Action = "applied"
	// ActionWouldApply: dry run, the live config differs.
	ActionWouldApply Action = "would apply"
	// ActionAwaitsControlPlane: dry run, a worker that does not answer while no control plane of the run
	// is configured. A worker's Talos API certificate is issued by trustd on a configured control plane
	// (Talos internal/app/machined/pkg/controllers/secrets/api.go, generateWorker), so an installed worker
	// stays silent until one runs its config: only applying the control planes' configs can tell more.
	ActionAwaitsControlPlane Action = "not observed until a control plane runs its config"
)

// NodeResult reports Apply's work on one node.
type NodeResult struct {
	Node   string `json:"node"`
	Action Action `json:"action"`
	// Diff is the redacted diff live → desired for a configured node that differs (no secret values).
	Diff string `json:"diff,omitempty"`
	// Details is the node's own account of the apply (e.g. "Applied configuration without a reboot").
	Details string `json:"details,omitempty"`

	// rebooting: the node reboots to take the config; Apply waits until it runs it.
	rebooting bool
}

// redacted replaces secret values in printed diffs and messages.
const redacted = redact.Marker

// Apply brings every node to its desired config, concurrently, and returns one result per node in profile
// order. A node's error does not stop the others; the returned error joins them in profile order.
//
// A dry run stops waiting for workers that do not answer once every control plane was observed and none
// is configured (ActionAwaitsControlPlane): they cannot answer before a control plane runs its config,
// which only a real run does. Waiting for them would fail the plan of a cluster interrupted after a
// worker installed but before its control planes did, and so every run after it.
func (r *Runner) Apply(ctx context.Context) ([]NodeResult, error) {
	nodes := r.cluster.Nodes
	results := make([]NodeResult, len(nodes))
	errs := make([]error, len(nodes))
	noConfiguredCP := make(chan struct{})

	var wg, cps sync.WaitGroup

	for i, n := range nodes {
		if n.Role.IsControlPlane() {
			cps.Go(func() { results[i], errs[i] = r.applyNode(ctx, n, nil) })
		} else {
			wg.Go(func() { results[i], errs[i] = r.applyNode(ctx, n, noConfiguredCP) })
		}
	}

	cps.Wait()

	if r.opts.DryRun && !anyConfigured(nodes, results, errs) { // New refused a cluster without control planes
		close(noConfiguredCP)
	}

	wg.Wait()

	return results, errors.Join(errs...)
}

// anyConfigured reports whether a control plane was found running a config.
func anyConfigured(nodes []Node, results []NodeResult, errs []error) bool {
	for i, n := range nodes {
		if n.Role.IsControlPlane() && errs[i] == nil && (results[i].Action == ActionUnchanged || results[i].Action == ActionWouldApply) {
			return true
		}
	}

	return false
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// applyNode observes the node until it is configured, applying its config once if it is found in maintenance
// mode. An apply whose answer was lost (the node rebooted mid-call) is resolved by observing again: a node
// back in maintenance mode gets the config again, a configured node is done. Once noConfiguredCP is closed,
// a node that does not answer is not waited for any more (see Apply).
func (r *Runner) applyNode(ctx context.Context, n Node, noConfiguredCP <-chan struct{}) (NodeResult, error) {
	var (
		accepted bool
		result   = NodeResult{Node: n.Name}
		streaks  = foreignStreaks{}
	)

	phase := PhaseWaitAPI

	r.progress.printf(n.Name, "waiting for the Talos API at %s", r.endpoint(n))

	err := r.wait(ctx, n.Name, "Talos API", r.opts.APITimeout, func(lastSeen string) *Error {
		e := &Error{Node: n.Name, Endpoint: r.endpoint(n), Phase: phase, LastSeen: lastSeen}
		if accepted {
			e.Hint = "the node accepted its config but did not come back with the cluster's CA: watch its console (Proxmox noVNC or serial) " +
				"for install errors; a node that boots into maintenance mode again failed to install (check the install disk and the installer image)"
		} else {
			e.Hint = fmt.Sprintf("check that the VM is running and booted the Talos image, that %s is its static IP (Proxmox cloud-init ipconfig0) "+
				"and that TCP %s is reachable from here", n.IP, portOf(r.endpoint(n)))
		}

		return e
	}, func(ctx context.Context) stepResult {
		obs := r.observe(ctx, n)
		foreign := streaks.confirm(n, obs.state == stateForeign)

		switch obs.state {
		case stateConfigured:
			if accepted {
				result.Action = ActionInstalled
				r.progress.printf(n.Name, "installed: %s", obs.seen)

				return stepResult{done: true}
			}

			if result.rebooting {
				return r.checkRebooted(ctx, n, &result)
			}

			var e *Error

			if result, e = r.reconcile(ctx, n); e != nil {
				return stepResult{err: e}
			}

			if result.rebooting {
				phase = PhaseWaitConfigured

				return stepResult{seen: "rebooting to take the config", reported: true}
			}

			return stepResult{done: true}
		case stateMaintenance:
			if accepted {
				// It answers in maintenance mode until it goes down to install; wait.
				return stepResult{seen: obs.seen + " (config accepted, waiting for the install)"}
			}

			if r.opts.DryRun {
				result.Action = ActionWouldInstall
				r.progress.printf(n.Name, "in maintenance mode: would apply its config (mode auto) and install")

				return stepResult{done: true}
			}

			phase = PhaseApply

			seen, err := r.applyInMaintenance(ctx, n)
			if err != nil {
				return stepResult{err: err}
			}

			if seen == "" {
				accepted = true
				phase = PhaseWaitConfigured
				seen = "config accepted, installing"

				r.progress.printf(n.Name, "config applied in maintenance mode (mode auto); the node installs and reboots")

				return stepResult{seen: seen, reported: true}
			}

			return stepResult{seen: seen}
		case stateForeign:
			if foreign {
				return stepResult{err: r.foreignError(n, phase, obs.seen)}
			}

			return stepResult{seen: obs.seen}
		default:
			if closed(noConfiguredCP) {
				result.Action = ActionAwaitsControlPlane
				r.progress.printf(n.Name, "%s: not waiting: a worker's Talos API answers once a control plane runs its config (trustd issues its certificate)", obs.seen)

				return stepResult{done: true}
			}

			return stepResult{seen: obs.seen, soon: obs.seen == refusedConnection}
		}
	})

	return result, err
}

// checkRebooted is done once the node runs the config it rebooted for.
func (r *Runner) checkRebooted(ctx context.Context, n Node, result *NodeResult) stepResult {
	ctx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
	defer cancel()

	var (
		live *liveConfig
		e    *Error
	)

	err := r.call(ctx, n, modeSecure, func(c *client.Client) error {
		if live, e = r.readLive(ctx, c, n); e != nil {
			return e
		}

		return nil
	})

	switch {
	case e != nil:
		return stepResult{seen: e.Err.Error()}
	case err != nil:
		return stepResult{seen: describe(err)}
	}

	if changed, _, _ := redactedDiff(live.active, r.desired[n.Name]); changed { // a failed diff counts as "not yet"
		return stepResult{seen: "configured, still running the previous config (reboot pending)"}
	}

	result.rebooting = false
	r.progress.printf(n.Name, "rebooted and runs the new config")

	return stepResult{done: true}
}

// foreignError reports a node that answers TLS with another identity: waiting cannot fix that.
func (r *Runner) foreignError(n Node, phase Phase, seen string) *Error {
	return &Error{
		Node: n.Name, Endpoint: r.endpoint(n), Phase: phase, LastSeen: seen,
		Err: errors.New("the node answers TLS, but neither in maintenance mode nor with this cluster's CA and client certificate"),
		Hint: "the node belongs to another cluster (or this talosconfig is not the cluster's): check the IP in the profile; " +
			"to adopt a running cluster without touching it, use `talforge import NAME --talosconfig <its talosconfig>`; " +
			"only a node you mean to wipe can be reset to maintenance mode instead (talosctl reset erases its data)",
	}
}

func portOf(endpoint string) string {
	i := strings.LastIndex(endpoint, ":")
	if i < 0 {
		return endpoint
	}

	return endpoint[i+1:]
}

// applyInMaintenance sends the config with mode AUTO. It returns "" when the node accepted it, a description
// when the answer was lost (the caller observes again), or an error the node will not recover from.
func (r *Runner) applyInMaintenance(ctx context.Context, n Node) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
	defer cancel()

	// The observation that found the node in maintenance mode left its connection open: the config
	// goes on it, without another handshake.
	err := r.call(ctx, n, modeMaintenance, func(c *client.Client) error {
		_, err := c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: n.Config, Mode: machine.ApplyConfigurationRequest_AUTO})

		return err
	})

	switch {
	case err == nil:
		return "", nil
	case codeOf(err) == codes.InvalidArgument:
		return "", &Error{
			Node: n.Name, Endpoint: r.endpoint(n), Phase: PhaseApply, Err: fmt.Errorf("the node rejected its config: %s", r.secrets.scrub(describe(err))),
			Hint: "the config does not validate on the node: check the profile's patches and the Talos version (talforge generate validates the same way)",
		}
	case codeOf(err) == codes.FailedPrecondition && strings.Contains(err.Error(), "already in progress"):
		// An earlier apply (whose answer we lost) is being installed.
		return "", nil
	default:
		return "apply answer lost (" + r.secrets.scrub(describe(err)) + "), checking the node again", nil
	}
}

// liveConfig is what a configured node runs and will run after its next reboot.
type liveConfig struct {
	role       string
	active     config.Provider
	persistent config.Provider
}

func (r *Runner) readLive(ctx context.Context, c *client.Client, n Node) (*liveConfig, *Error) {
	fail := func(what string, err error) *Error {
		e := &Error{Node: n.Name, Endpoint: r.endpoint(n), Phase: PhaseCompare, Err: fmt.Errorf("read %s: %s", what, describe(err))}
		if codeOf(err) == codes.PermissionDenied {
			e.Hint = "the talosconfig's client certificate lacks the os:admin role; use the talosconfig talforge generated"
		}

		return e
	}

	mt, err := safe.StateGetByID[*configres.MachineType](ctx, c.COSI, configres.MachineTypeID)
	if err != nil {
		return nil, fail("machine type", err)
	}

	active, err := safe.StateGetByID[*configres.MachineConfig](ctx, c.COSI, configres.ActiveID)
	if err != nil {
		return nil, fail("machine config", err)
	}

	live := &liveConfig{role: mt.MachineType().String(), active: active.Provider(), persistent: active.Provider()}

	persistent, err := safe.StateGetByID[*configres.MachineConfig](ctx, c.COSI, configres.PersistentID)

	switch {
	case err == nil:
		live.persistent = persistent.Provider()
	case !state.IsNotFoundError(err) && codeOf(err) != codes.NotFound:
		return nil, fail("persistent machine config", err)
	}

	if !sameRole(mt.MachineType(), n.Role) {
		return nil, &Error{
			Node: n.Name, Endpoint: r.endpoint(n), Phase: PhaseCompare, LastSeen: "live role " + live.role,
			Err: fmt.Errorf("refusing to send a %s config to a node that runs as %s", n.Role, live.role),
			Hint: "a node cannot change its role in place: fix the node's role in the profile, or wipe the node " +
				"(talosctl reset, then it boots into maintenance mode) and run again",
		}
	}

	return live, nil
}

// reconcile compares a configured node's live config with the desired one and applies it when it differs.
func (r *Runner) reconcile(ctx context.Context, n Node) (NodeResult, *Error) {
	callCtx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
	defer cancel()

	var (
		result = NodeResult{Node: n.Name}
		e      *Error
	)

	err := r.call(callCtx, n, modeSecure, func(c *client.Client) error {
		if result, e = r.reconcileOn(callCtx, c, n); e != nil {
			return e
		}

		return nil
	})
	if err != nil && e == nil {
		e = &Error{Node: n.Name, Endpoint: r.endpoint(n), Phase: PhaseCompare, Err: err}
	}

	return result, e
}

// reconcileOn is reconcile on the node's connection c.
func (r *Runner) reconcileOn(callCtx context.Context, c *client.Client, n Node) (NodeResult, *Error) {
	result := NodeResult{Node: n.Name}
	desired := r.desired[n.Name]

	live, e := r.readLive(callCtx, c, n)
	if e != nil {
		return result, e
	}

	changed, diff, err := redactedDiff(live.persistent, desired)
	if err != nil {
		return result, &Error{Node: n.Name, Phase: PhaseCompare, Err: err}
	}

	if !changed {
		result.Action = ActionUnchanged

		if stagedPending, _, _ := redactedDiff(live.active, live.persistent); stagedPending { // informational only
			result.Details = "the desired config is staged and takes effect at the next reboot"
		}

		r.progress.printf(n.Name, "configured, config up to date%s", suffix(result.Details))

		return result, nil
	}

	result.Diff = diff

	if r.opts.DryRun {
		result.Action = ActionWouldApply
		r.progress.printf(n.Name, "configured, config differs: would apply (mode %s)", r.opts.Mode)

		return result, nil
	}

	resp, err := c.ApplyConfiguration(callCtx, &machine.ApplyConfigurationRequest{Data: n.Config, Mode: r.opts.Mode.proto()})
	if err != nil {
		e := &Error{Node: n.Name, Endpoint: r.endpoint(n), Phase: PhaseApply, Err: fmt.Errorf("apply (mode %s): %s", r.opts.Mode, r.secrets.scrub(describe(err)))}

		switch codeOf(err) {
		case codes.InvalidArgument:
			e.Hint = "the node rejected the config: check the profile's patches; some changes need --mode auto (a reboot)"
		case codes.PermissionDenied:
			e.Hint = "the talosconfig's client certificate lacks the os:admin role"
		default:
			e.Hint = "run again: talforge compares the live config first, so a config that did arrive is not sent twice"
		}

		return result, e
	}

	result.Action = ActionApplied

	if msgs := resp.GetMessages(); len(msgs) > 0 {
		result.Details = msgs[0].GetModeDetails()
	}

	r.progress.printf(n.Name, "config applied (mode %s)%s", r.opts.Mode, suffix(result.Details))

	if msgs := resp.GetMessages(); len(msgs) > 0 {
		switch msgs[0].GetMode() {
		case machine.ApplyConfigurationRequest_NO_REBOOT, machine.ApplyConfigurationRequest_STAGED:
		default:
			result.rebooting = true
		}
	}

	return result, nil
}

func suffix(s string) string {
	if s == "" {
		return ""
	}

	return ": " + s
}

// redactedDiff reports whether two configs differ and a diff of their redacted encodings (package redact:
// only values on its allow-list of safe fields are shown). The decision is made on the full configs, so a
// change of a redacted value alone still counts (and says so). The diff is leak-checked before it is
// returned for printing: a secret that slipped through redaction fails the run instead of reaching a
// terminal or a CI log.
func redactedDiff(live, desired config.Provider) (bool, string, error) {
	live, err := inDocumentOrder(live)
	if err != nil {
		return false, "", err
	}

	if desired, err = inDocumentOrder(desired); err != nil {
		return false, "", err
	}

	full, err := configdiff.DiffConfigs(live, desired)
	if err != nil {
		return false, "", fmt.Errorf("diff configs: %w", err)
	}

	if full == "" {
		return false, "", nil
	}

	liveView, err := redact.Config(live)
	if err != nil {
		return false, "", fmt.Errorf("redact the live config: %w", err)
	}

	desiredView, err := redact.Config(desired)
	if err != nil {
		return false, "", fmt.Errorf("redact the desired config: %w", err)
	}

	// What configdiff.DiffConfigs does with the encoded configs (machinery config/configdiff).
	diff, err := textdiff.Diff(string(liveView), string(desiredView))
	if err != nil {
		return false, "", fmt.Errorf("diff redacted configs: %w", err)
	}

	switch {
	case diff == "":
		diff = "(only redacted values differ; they are not shown)\n"
	case changedLines(full) > changedLines(diff):
		diff += "(redacted values differ too; they are not shown)\n"
	}

	diff = strings.Replace(diff, "--- a\n+++ b\n", "--- live\n+++ desired\n", 1)

	if err := gitops.CheckPrintable("the config diff", []byte(diff)); err != nil {
		return false, "", err
	}

	return true, diff, nil
}

// changedLines counts the added and removed lines of a unified diff.
func changedLines(diff string) int {
	n := 0

	for line := range strings.Lines(diff) {
		if strings.HasPrefix(line, "+++ ") || strings.HasPrefix(line, "--- ") {
			continue
		}

		if strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-") {
			n++
		}
	}

	return n
}
