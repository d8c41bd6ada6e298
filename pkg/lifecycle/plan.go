package lifecycle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/proxmox"
	"github.com/talforge/talforge/pkg/rollout"
	"github.com/talforge/talforge/pkg/schematic"
	"github.com/talforge/talforge/pkg/secrets"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// NodePlan is what Up would do to one node's Talos config.
type NodePlan struct {
	Name string `json:"name"`
	// Action is "unchanged", "would apply (mode auto)", "would install ..." or "not observed ...".
	Action string `json:"action"`
	// Diff is the redacted diff live → desired for a configured node whose config differs.
	Diff string `json:"diff,omitempty"`
	// Versions are the Talos and kubelet versions a configured node runs.
	Versions bootstrap.Versions `json:"versions"`
}

// LonghornPlan is what Up would do to Longhorn.
type LonghornPlan struct {
	// Action is "install", "upgrade", "converge" (drift) or "none".
	Action    string   `json:"action"`
	Installed string   `json:"installed,omitempty"`
	Target    string   `json:"target"`
	Steps     []string `json:"steps,omitempty"`
	// Values are the Helm values the upgrade changes ("path: live -> planned").
	Values []string `json:"values,omitempty"`
	Drift  []string `json:"drift,omitempty"`
	// Note explains an action decided without looking (no cluster to look at yet).
	Note string `json:"note,omitempty"`
}

// PlanReport is what Up would change.
type PlanReport struct {
	Cluster string `json:"cluster"`
	// Generated is false when clusters/<name>/ has no secrets bundle yet.
	Generated bool          `json:"generated"`
	Proxmox   *proxmox.Plan `json:"-"`
	Nodes     []NodePlan    `json:"nodes"`
	Etcd      string        `json:"etcd"`
	Longhorn  *LonghornPlan `json:"longhorn,omitempty"`
	// Steps are the changes up would make, stage by stage, in the order it makes them.
	Steps []Step `json:"steps"`
	// Upgrade are the steps `talforge upgrade` would take first (up refuses to); UpgradeNote
	// says why they could not be listed.
	Upgrade     []rollout.Step `json:"upgrade,omitempty"`
	UpgradeNote string         `json:"upgradeNote,omitempty"`
	// Stopped says why the plan ends after a stage (VMs in conflict: up stops there too).
	Stopped  string `json:"stopped,omitempty"`
	Changes  bool   `json:"changes"`
	etcdDone bool
	// running and stopped: the nodes whose VM runs, and is stopped, per the Proxmox plan.
	running, stopped map[string]bool
}

// Plan reports what Up would change, changing nothing: the Proxmox plan, a redacted config
// diff per node against the live node, the etcd bootstrap state and the Longhorn steps. With
// VMs in conflict the plan ends after provisioning, as up does, and is returned with the
// conflicts as the error (proxmox.ErrConflict).
// Talos nodes whose VM does not run are not waited for; a node that runs but does not answer
// within Options.Talos.APITimeout (default 30s here) is an error. Up computes the same plan,
// with the same function, and applies it.
func Plan(ctx context.Context, opts Options) (*PlanReport, error) {
	r, err := loadRun(ctx, opts)
	if err != nil {
		return nil, err
	}
	generated, err := secrets.Exists(filepath.Join(r.out, secrets.FileName))
	if err != nil {
		return nil, err
	}
	if generated {
		if r.talos, r.rendered, err = renderTalos(ctx, r.cluster); err != nil {
			return nil, err
		}
	}
	rep, err := r.computePlan(ctx)
	if err != nil {
		return nil, err
	}
	if rep.Stopped != "" {
		return rep, rep.Proxmox.Err()
	}
	r.planUpgrade(ctx, rep)
	return rep, nil
}

// plan computes every stage's plan; r.rendered (and r.talos) are set when clusters/<name>/ is
// generated.
func (r *run) computePlan(ctx context.Context) (*PlanReport, error) {
	rep := &PlanReport{Cluster: r.cluster.Metadata.Name, Generated: r.rendered != nil}
	for _, s := range r.stages() {
		if s.plan == nil {
			continue
		}
		if err := s.plan(ctx, rep); err != nil {
			return nil, err
		}
		if rep.Proxmox != nil && rep.Proxmox.Err() != nil {
			// up provisions the other VMs and stops there: nothing after it would happen.
			rep.Stopped = "nothing after provisioning is planned: up converges the VMs not in conflict, then stops until the conflicts are resolved"
			break
		}
	}
	rep.Changes = rep.Changes || len(rep.Steps) > 0
	return rep, nil
}

// stage is one stage of up as a value: plan adds what the stage would do to the plan, changing
// nothing; apply does what the plan says (up computes the whole plan first, then applies it).
type stage struct {
	name string
	// plan is nil for a stage planned together with the one before it (etcd's state is read
	// by the Talos stage's runner).
	plan  func(ctx context.Context, rep *PlanReport) error
	apply func(ctx context.Context, p *phase) error
}

// stages are up's stages after generate, in order.
func (r *run) stages() []stage {
	return []stage{
		{PhaseProvision, r.planProvision, r.provision},
		{PhaseApply, r.planTalos, r.apply},
		{PhaseBootstrap, nil, r.bootstrap},
		{PhaseLonghorn, r.planLonghorn, r.longhorn},
	}
}

// planProvision plans the Proxmox VMs and records which nodes run, for the Talos stage: without
// a proxmox section every node is taken to run (it is provisioned by hand).
func (r *run) planProvision(ctx context.Context, rep *PlanReport) error {
	rep.running, rep.stopped = map[string]bool{}, map[string]bool{}
	if r.cluster.Proxmox == nil {
		for _, n := range r.cluster.Nodes {
			rep.running[n.Name] = true
		}
		return nil
	}
	if err := r.planProxmox(ctx, rep); err != nil {
		return err
	}
	for _, v := range rep.Proxmox.VMs {
		rep.running[v.Spec.Name] = v.Action != proxmox.ActionCreate && v.Running
		rep.stopped[v.Spec.Name] = v.Action != proxmox.ActionCreate && !v.Running
	}
	return nil
}

func (r *run) planProxmox(ctx context.Context, rep *PlanReport) error {
	img, err := r.image()
	if err != nil {
		return err
	}
	specs, boot, err := proxmox.Desired(r.cluster, img)
	if err != nil {
		return err
	}
	if read := r.takeEarly(); read != nil && sameImage(read.image, img) {
		if read.err != nil {
			return read.err
		}
		rep.Proxmox = read.plan
	} else {
		api, err := r.connect(ctx)
		if err != nil {
			return err
		}
		if rep.Proxmox, err = proxmox.Observe(ctx, api, r.cluster.Metadata.Name, specs, boot); err != nil {
			return err
		}
	}
	rep.Proxmox.Findings = proxmox.LintSpecs(specs, img)
	// A node in conflict is left alone and the others go on (Plan.Blocked); the conflicts
	// make the plan fail once every stage is planned.
	rep.Steps = append(rep.Steps, proxmoxSteps(rep.Proxmox, nil)...)
	return nil
}

// proxmoxReading is a reading of Proxmox that up starts while generate runs (observeEarly): the
// plan needs what Proxmox holds and the image the nodes boot, which the profile decides, not
// generate's output. Reading changes nothing, so a generate that fails has still changed
// nothing on Proxmox. The read (a login and a listing, ~10 ms on a LAN) is then off the
// critical path of up (issue 16).
type proxmoxReading struct {
	image  *schematic.Image
	cancel context.CancelFunc
	done   chan struct{}
	taken  bool
	// Set once done is closed.
	api  proxmox.API
	plan *proxmox.Plan
	err  error
}

// observeEarly starts the reading; planProxmox takes it (takeEarly), and up stops it as it ends
// (stopEarly).
func (r *run) observeEarly(ctx context.Context) {
	if r.cluster.Proxmox == nil || r.opts.ConnectPVE == nil {
		return
	}
	img, err := schematic.ForCluster(r.cluster)
	if err != nil {
		return // planProxmox reports it
	}
	specs, boot, err := proxmox.Desired(r.cluster, img)
	if err != nil {
		return // planProxmox reports it
	}
	ctx, cancel := context.WithCancel(ctx)
	read := &proxmoxReading{image: img, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(read.done)
		if read.api, read.err = r.opts.ConnectPVE(ctx, r.cluster); read.err == nil {
			read.plan, read.err = proxmox.Observe(ctx, read.api, r.cluster.Metadata.Name, specs, boot)
		}
	}()
	r.early = read
}

// takeEarly waits for the early reading and hands it over, once (nil when there is none). Its
// connection becomes the run's.
func (r *run) takeEarly() *proxmoxReading {
	read := r.early
	if read == nil || read.taken {
		return nil
	}
	read.taken = true
	<-read.done
	if r.pve == nil && read.api != nil {
		r.pve = read.api
	}
	return read
}

// stopEarly ends the reading at the end of up: one nobody took (generate failed) is cancelled,
// so the run does not wait for Proxmox.
func (r *run) stopEarly() {
	if r.early != nil {
		r.early.cancel()
		<-r.early.done
	}
}

func sameImage(a, b *schematic.Image) bool {
	return a != nil && b != nil && a.ID == b.ID && a.Factory == b.Factory && a.TalosVersion == b.TalosVersion && a.Platform == b.Platform
}

// image is the rendered image, or the profile's when nothing is rendered yet.
func (r *run) image() (*schematic.Image, error) {
	if r.rendered != nil {
		return r.rendered.Image, nil
	}
	return schematic.ForCluster(r.cluster)
}

func (r *run) planTalos(ctx context.Context, rep *PlanReport) error {
	running, stopped := rep.running, rep.stopped
	c := r.cluster
	first := c.ControlPlanes()[0].Name
	etcdLater := func(format string) {
		rep.Etcd = fmt.Sprintf(format, first)
		rep.Steps = append(rep.Steps, Step{PhaseBootstrap, SubjectEtcd, StepBootstrap})
	}
	if !rep.Generated {
		for _, n := range c.Nodes {
			rep.Nodes = append(rep.Nodes, NodePlan{Name: n.Name, Action: "would install (configs not generated yet)"})
			rep.Steps = append(rep.Steps, Step{PhaseApply, n.Name, StepInstall})
		}
		etcdLater("would bootstrap on %s")
		return nil
	}
	subset := r.talos
	subset.Nodes = nil
	hasCP := false
	for _, n := range r.talos.Nodes {
		if running[n.Name] {
			subset.Nodes = append(subset.Nodes, n)
			hasCP = hasCP || n.Role.IsControlPlane()
		}
	}
	results := map[string]bootstrap.NodeResult{}
	var runner *bootstrap.Runner
	if hasCP {
		o := r.opts.Talos
		o.DryRun, o.Progress, o.Mode = true, prefixWriter{r.opts.Detail, "  "}, bootstrap.ModeAuto
		if o.APITimeout <= 0 {
			o.APITimeout = 30 * time.Second
		}
		if o.BootstrapTimeout <= 0 {
			o.BootstrapTimeout = o.APITimeout
		}
		var err error
		if runner, err = bootstrap.New(subset, o); err != nil {
			return err
		}
		defer runner.Close() //nolint:errcheck // closing probe connections: nothing to report
		res, err := runner.Apply(ctx)
		if err != nil {
			return fmt.Errorf("reading the live node configs: %w", err)
		}
		for _, res := range res {
			results[res.Node] = res
		}
	}
	configured := true
	versions := r.versionReader()
	for _, n := range r.talos.Nodes {
		np := NodePlan{Name: n.Name}
		res, ok := results[n.Name]
		step := Step{PhaseApply, n.Name, StepInstall}
		switch {
		case !ok && running[n.Name]:
			np.Action = "would install (not observed: no control plane VM runs)"
		case !ok && stopped[n.Name]:
			np.Action = "not observed: its VM is stopped (up starts it, then applies what differs)"
			step.Action = StepApplyIfChanged
		case !ok:
			np.Action = "would install once provisioned"
		case res.Action == bootstrap.ActionAwaitsControlPlane:
			np.Action = "not observed: a worker answers once a control plane runs its config (up applies what differs then)"
			step.Action = StepApplyIfChanged
		default:
			np.Action, np.Diff = string(res.Action), res.Diff
			if res.Action == bootstrap.ActionWouldApply {
				np.Action += " (mode auto)"
			}
			step, _ = talosStep(res)
			if res.Action != bootstrap.ActionWouldInstall {
				np.Versions = versions(ctx, n)
			}
			if why := upgradePending(np.Versions, c); why != "" {
				// up refuses this: `talforge upgrade` takes the node there, one node at a time.
				np.Action, np.Diff, step = "upgrade pending: "+why+" (`talforge upgrade`)", "", Step{}
			}
		}
		if step.Action != "" {
			rep.Steps = append(rep.Steps, step)
		}
		if np.Action != string(bootstrap.ActionUnchanged) {
			rep.Changes = true
		}
		if n.Role.IsControlPlane() && (!ok || res.Action == bootstrap.ActionWouldInstall) {
			configured = false
		}
		rep.Nodes = append(rep.Nodes, np)
	}
	if !configured || runner == nil {
		etcdLater("would bootstrap on %s once the control planes run their configs")
		return nil
	}
	etcd, err := runner.Bootstrap(ctx)
	if err != nil {
		return fmt.Errorf("reading etcd: %w", err)
	}
	switch etcd.Action {
	case bootstrap.EtcdWouldBootstrap:
		rep.Etcd = "would bootstrap on " + etcd.Node
		rep.Steps = append(rep.Steps, Step{PhaseBootstrap, SubjectEtcd, StepBootstrap})
	default:
		rep.Etcd, rep.etcdDone = fmt.Sprintf("bootstrapped (members %s)", strings.Join(etcd.Members, ", ")), true
	}
	return nil
}

// versionReader reads the versions a configured node runs (zero when it does not answer),
// with the talosconfig parsed once for every node.
func (r *run) versionReader() func(context.Context, bootstrap.Node) bootstrap.Versions {
	id, err := bootstrap.ParseIdentity(r.talos.Talosconfig)
	if err != nil {
		return func(context.Context, bootstrap.Node) bootstrap.Versions { return bootstrap.Versions{} }
	}
	timeout := r.opts.Talos.CallTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	return func(ctx context.Context, n bootstrap.Node) bootstrap.Versions {
		v, err := bootstrap.NodeVersions(ctx, bootstrap.Endpoint(n.IP, r.opts.Talos.TalosPort), id, timeout)
		if err != nil {
			return bootstrap.Versions{}
		}
		return v
	}
}

// upgradePending says how a node's versions differ from the profile's ("" when they do not,
// or are unknown).
func upgradePending(v bootstrap.Versions, c *profile.Cluster) string {
	var why []string
	if v.Talos != "" && v.Talos != c.Talos.Version {
		why = append(why, fmt.Sprintf("runs Talos %s, the profile says %s", v.Talos, c.Talos.Version))
	}
	if v.Kubelet != "" && c.Talos.Kubernetes != "" && v.Kubelet != c.Talos.Kubernetes {
		why = append(why, fmt.Sprintf("runs Kubernetes %s, the profile says %s", v.Kubelet, c.Talos.Kubernetes))
	}
	return strings.Join(why, "; ")
}

func (r *run) planLonghorn(ctx context.Context, rep *PlanReport) error {
	l := r.cluster.Longhorn
	if l == nil {
		return nil
	}
	lp := &LonghornPlan{Target: l.Version}
	rep.Longhorn = lp
	step := func(action string) { rep.Steps = append(rep.Steps, Step{PhaseLonghorn, SubjectLonghorn, action}) }
	path := filepath.Join(r.out, bootstrap.KubeconfigFile)
	kc, err := sopsfile.DecryptFile(path)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !rep.etcdDone) {
		lp.Action, lp.Note = "install", "after bootstrap"
		step(StepInstall)
		return nil
	}
	if err != nil {
		return err
	}
	lo := r.opts.Longhorn
	lo.Kubeconfig, lo.Log = kc, prefixWriter{r.opts.Detail, "  longhorn: "}
	cl, err := longhorn.New(r.cluster, lo)
	if err != nil {
		return err
	}
	up, err := cl.Plan(ctx, l.Version)
	switch {
	case errors.Is(err, longhorn.ErrNotInstalled):
		lp.Action = "install"
		step(StepInstall)
		return nil
	case err != nil:
		return fmt.Errorf("reading Longhorn: %w", err)
	}
	lp.Installed = up.From
	if len(up.Steps) > 0 {
		lp.Action, lp.Steps = "upgrade", up.Steps
		for _, c := range up.Values {
			lp.Values = append(lp.Values, c.String())
		}
		step(StepUpgrade)
		return nil
	}
	diffs, err := cl.Drift(ctx)
	if err != nil {
		return fmt.Errorf("reading Longhorn's drift: %w", err)
	}
	for _, d := range diffs {
		lp.Drift = append(lp.Drift, d.String())
	}
	lp.Action = "none"
	switch {
	case len(diffs) == 0:
	case !slices.ContainsFunc(diffs, func(d longhorn.Difference) bool { return !d.Ownership() }):
		// Only objects made by hand that the profile adopted, to be labelled talforge's.
		lp.Action = "adopt"
		step(StepAdopt)
	default:
		lp.Action = "converge"
		step(StepConverge)
	}
	return nil
}

// Print writes the plan for people.
func (rep *PlanReport) Print(w io.Writer) {
	if rep.Proxmox != nil {
		var b bytes.Buffer
		rep.Proxmox.Print(&b)
		w.Write(b.Bytes()) // best effort, like fmt.Fprint
		fmt.Fprintln(w)
	}
	if rep.Stopped != "" {
		fmt.Fprintf(w, "The plan stops here: %s.\n", rep.Stopped)
		return
	}
	fmt.Fprintf(w, "Talos configs for cluster %s", rep.Cluster)
	if !rep.Generated {
		fmt.Fprint(w, " (clusters/ has no secrets bundle yet: up generates it)")
	}
	fmt.Fprint(w, "\n\n")
	width := 0
	for _, n := range rep.Nodes {
		width = max(width, len(n.Name))
	}
	for _, n := range rep.Nodes {
		mark := "~"
		switch {
		case n.Action == string(bootstrap.ActionUnchanged):
			mark = "="
		case strings.HasPrefix(n.Action, "would install"):
			mark = "+"
		case strings.HasPrefix(n.Action, "not observed"):
			mark = "?"
		}
		fmt.Fprintf(w, "  %s %-*s  %s\n", mark, width, n.Name, n.Action)
		for line := range strings.Lines(n.Diff) {
			fmt.Fprintf(w, "      %s", line)
		}
	}
	fmt.Fprintf(w, "\netcd: %s\n", rep.Etcd)
	if len(rep.Upgrade) > 0 || rep.UpgradeNote != "" {
		fmt.Fprintln(w, "\nUpgrade first, with `talforge upgrade` (one node at a time; up does not upgrade):")
		for i, s := range rep.Upgrade {
			fmt.Fprintf(w, "  %d. %s\n", i+1, s)
		}
		if rep.UpgradeNote != "" {
			fmt.Fprintf(w, "  (steps not listed: %s)\n", rep.UpgradeNote)
		}
	}
	if lp := rep.Longhorn; lp != nil {
		fmt.Fprint(w, "\nLonghorn: ")
		switch lp.Action {
		case "install":
			fmt.Fprintf(w, "+ install %s", lp.Target)
			if lp.Note != "" {
				fmt.Fprintf(w, " (%s)", lp.Note)
			}
			fmt.Fprintln(w)
		case "upgrade":
			fmt.Fprintf(w, "~ upgrade %s -> %s, one minor at a time\n", lp.Installed, strings.Join(lp.Steps, " -> "))
			if len(lp.Values) > 0 {
				fmt.Fprintf(w, "    Helm values that change (installed -> passed):\n")
			}
			for _, v := range lp.Values {
				fmt.Fprintf(w, "      %s\n", v)
			}
		case "converge", "adopt":
			fmt.Fprintf(w, "~ %s installed, %d difference(s) from the profile:\n", lp.Installed, len(lp.Drift))
			for _, d := range lp.Drift {
				fmt.Fprintf(w, "      %s\n", d)
			}
		default:
			fmt.Fprintf(w, "= %s installed, matches the profile\n", lp.Installed)
		}
	}
	if rep.Changes {
		fmt.Fprintln(w, "\nChanges pending: `talforge up` would apply them.")
	} else {
		fmt.Fprintln(w, "\nNo changes: the cluster matches the profile.")
	}
}
