package lifecycle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/proxmox"
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
}

// LonghornPlan is what Up would do to Longhorn.
type LonghornPlan struct {
	// Action is "install", "upgrade", "converge" (drift) or "none".
	Action    string   `json:"action"`
	Installed string   `json:"installed,omitempty"`
	Target    string   `json:"target"`
	Steps     []string `json:"steps,omitempty"`
	Drift     []string `json:"drift,omitempty"`
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
	Changes   bool          `json:"changes"`
	etcdDone  bool
}

// Plan reports what Up would change, changing nothing: the Proxmox plan, a redacted config
// diff per node against the live node, the etcd bootstrap state and the Longhorn steps.
// Talos nodes whose VM does not run are not waited for; a node that runs but does not answer
// within Options.Talos.APITimeout (default 30s here) is an error.
func Plan(ctx context.Context, opts Options) (*PlanReport, error) {
	opts = opts.withDefaults()
	c, err := profile.LoadContext(ctx, opts.Profile)
	if err != nil {
		return nil, err
	}
	rep := &PlanReport{Cluster: c.Metadata.Name}
	if rep.Generated, err = secrets.Exists(filepath.Join(c.OutputDir(), secrets.FileName)); err != nil {
		return nil, err
	}

	running := map[string]bool{}
	stopped := map[string]bool{}
	if c.Proxmox != nil {
		img, err := schematic.ForCluster(c)
		if err != nil {
			return nil, err
		}
		specs, boot, err := proxmox.Desired(c, img)
		if err != nil {
			return nil, err
		}
		api, err := opts.ConnectPVE(ctx, c)
		if err != nil {
			return nil, err
		}
		if rep.Proxmox, err = proxmox.Observe(ctx, api, c.Metadata.Name, specs, boot); err != nil {
			return nil, err
		}
		rep.Proxmox.Findings = proxmox.LintSpecs(specs, img)
		if err := rep.Proxmox.Err(); err != nil {
			return nil, err
		}
		rep.Changes = rep.Proxmox.HasChanges()
		for _, v := range rep.Proxmox.VMs {
			running[v.Spec.Name] = v.Action != proxmox.ActionCreate && v.Running
			stopped[v.Spec.Name] = v.Action != proxmox.ActionCreate && !v.Running
		}
	} else {
		for _, n := range c.Nodes {
			running[n.Name] = true
		}
	}

	if err := rep.planTalos(ctx, opts, c, running, stopped); err != nil {
		return nil, err
	}
	if err := rep.planLonghorn(ctx, opts, c); err != nil {
		return nil, err
	}
	return rep, nil
}

func (rep *PlanReport) planTalos(ctx context.Context, opts Options, c *profile.Cluster, running, stopped map[string]bool) error {
	first := c.ControlPlanes()[0].Name
	if !rep.Generated {
		for _, n := range c.Nodes {
			rep.Nodes = append(rep.Nodes, NodePlan{Name: n.Name, Action: "would install (configs not generated yet)"})
		}
		rep.Etcd, rep.Changes = "would bootstrap on "+first, true
		return nil
	}
	in, _, err := renderTalos(ctx, c)
	if err != nil {
		return err
	}
	subset := in
	subset.Nodes = nil
	hasCP := false
	for _, n := range in.Nodes {
		if running[n.Name] {
			subset.Nodes = append(subset.Nodes, n)
			hasCP = hasCP || n.Role.IsControlPlane()
		}
	}
	results := map[string]bootstrap.NodeResult{}
	var runner *bootstrap.Runner
	if hasCP {
		o := opts.Talos
		o.DryRun, o.Progress, o.Mode = true, prefixWriter{opts.Detail, "  "}, bootstrap.ModeAuto
		if o.APITimeout <= 0 {
			o.APITimeout = 30 * time.Second
		}
		if o.BootstrapTimeout <= 0 {
			o.BootstrapTimeout = o.APITimeout
		}
		if runner, err = bootstrap.New(subset, o); err != nil {
			return err
		}
		res, err := runner.Apply(ctx)
		if err != nil {
			return fmt.Errorf("reading the live node configs: %w", err)
		}
		for _, r := range res {
			results[r.Node] = r
		}
	}
	configured := true
	for _, n := range in.Nodes {
		np := NodePlan{Name: n.Name}
		r, ok := results[n.Name]
		switch {
		case !ok && running[n.Name]:
			np.Action = "would install (not observed: no control plane VM runs)"
		case !ok && stopped[n.Name]:
			np.Action = "not observed: its VM is stopped (up starts it, then applies what differs)"
		case !ok:
			np.Action = "would install once provisioned"
		default:
			np.Action, np.Diff = string(r.Action), r.Diff
			if r.Action == bootstrap.ActionWouldApply {
				np.Action += " (mode auto)"
			}
		}
		if np.Action != string(bootstrap.ActionUnchanged) {
			rep.Changes = true
		}
		if n.Role.IsControlPlane() && (!ok || r.Action == bootstrap.ActionWouldInstall) {
			configured = false
		}
		rep.Nodes = append(rep.Nodes, np)
	}
	if !configured || runner == nil {
		rep.Etcd, rep.Changes = fmt.Sprintf("would bootstrap on %s once the control planes run their configs", first), true
		return nil
	}
	etcd, err := runner.Bootstrap(ctx)
	if err != nil {
		return fmt.Errorf("reading etcd: %w", err)
	}
	switch etcd.Action {
	case bootstrap.EtcdWouldBootstrap:
		rep.Etcd, rep.Changes = "would bootstrap on "+etcd.Node, true
	default:
		rep.Etcd, rep.etcdDone = fmt.Sprintf("bootstrapped (members %s)", strings.Join(etcd.Members, ", ")), true
	}
	return nil
}

func (rep *PlanReport) planLonghorn(ctx context.Context, opts Options, c *profile.Cluster) error {
	l := c.Longhorn
	if l == nil {
		return nil
	}
	lp := &LonghornPlan{Target: l.Version}
	rep.Longhorn = lp
	path := filepath.Join(c.OutputDir(), bootstrap.KubeconfigFile)
	kc, err := sopsfile.DecryptFile(path)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !rep.etcdDone) {
		lp.Action, lp.Note, rep.Changes = "install", "after bootstrap", true
		return nil
	}
	if err != nil {
		return err
	}
	lo := opts.Longhorn
	lo.Kubeconfig, lo.Log = kc, prefixWriter{opts.Detail, "  longhorn: "}
	cl, err := longhorn.New(c, lo)
	if err != nil {
		return err
	}
	up, err := cl.Plan(ctx, l.Version)
	switch {
	case errors.Is(err, longhorn.ErrNotInstalled):
		lp.Action, rep.Changes = "install", true
		return nil
	case err != nil:
		return fmt.Errorf("reading Longhorn: %w", err)
	}
	lp.Installed = up.From
	if len(up.Steps) > 0 {
		lp.Action, lp.Steps, rep.Changes = "upgrade", up.Steps, true
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
	if len(diffs) > 0 {
		lp.Action, rep.Changes = "converge", true
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
		case "converge":
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
