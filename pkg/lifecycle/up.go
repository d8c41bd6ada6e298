package lifecycle

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/gitops"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/proxmox"
)

// Phase names, in the order Up runs them.
const (
	PhaseValidate  = "validate"
	PhaseGenerate  = "generate"
	PhaseProvision = "provision"
	PhaseApply     = "apply"
	PhaseBootstrap = "bootstrap"
	PhaseLonghorn  = "longhorn"
)

// PhaseResult reports one phase.
type PhaseResult struct {
	Name string        `json:"name"`
	Took time.Duration `json:"tookNs"`
	// Changed is true when the phase changed something (a file, a VM, a node, etcd, Helm).
	Changed bool `json:"changed"`
	// Summary says what it did.
	Summary string `json:"summary"`
	// Node is the node that finished last in a phase that works on the nodes at once
	// (provision, apply; bootstrap: the node etcd was bootstrapped on): the phase's critical chain.
	Node string `json:"criticalNode,omitempty"`
}

// UpResult reports a run of Up.
type UpResult struct {
	Cluster *profile.Cluster `json:"-"`
	Phases  []PhaseResult    `json:"phases"`
	// Written lists the files written (or removed) under clusters/<name>/, relative to it.
	Written   []string      `json:"written"`
	Committed bool          `json:"committed"`
	Took      time.Duration `json:"tookNs"`
	// Plan is the plan up computed after generate and then applied.
	Plan *PlanReport `json:"plan"`
	// Steps are the changes up made, in the plan's vocabulary (see StepsDiffer).
	Steps []Step `json:"steps"`
	// CriticalPath says which phase (and within it which node) the run waited for.
	CriticalPath *CriticalPath `json:"criticalPath"`
}

// Changed reports whether any phase changed anything.
func (r *UpResult) Changed() bool {
	for _, p := range r.Phases {
		if p.Changed {
			return true
		}
	}
	return false
}

// run is the state one operation carries from phase to phase.
type run struct {
	opts    Options
	rep     *reporter
	cluster *profile.Cluster
	out     string
	start   time.Time
	res     *UpResult

	gen        *generate.Result
	rendered   *generate.Rendered
	plan       *PlanReport
	talos      bootstrap.Cluster
	runner     *bootstrap.Runner
	talosOut   *subjectWriter
	kubeconfig []byte
	kubeServer string
	pve        proxmox.API
	// early is the reading of Proxmox up started during generate, until the plan takes it.
	early *proxmoxReading
}

// loadRun loads and validates the profile (validation problems come back as they are: they
// are the user's to fix).
func loadRun(ctx context.Context, opts Options) (*run, error) {
	opts = opts.withDefaults()
	r := &run{opts: opts, start: opts.Now()}
	c, err := profile.LoadContext(ctx, opts.Profile)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(c.Nodes))
	for _, n := range c.Nodes {
		names = append(names, n.Name)
	}
	names = append(names, vols(c)...)
	r.cluster, r.out = c, c.OutputDir()
	r.rep = newReporter(opts.Progress, opts.Now, names)
	r.rep.live = opts.Live
	r.res = &UpResult{Cluster: c}
	return r, nil
}

// newRun loads and validates the profile and reports it as the validate phase, with its
// warnings.
func newRun(ctx context.Context, opts Options) (*run, error) {
	r, err := loadRun(ctx, opts)
	if err != nil {
		return nil, err
	}
	c := r.cluster
	p := r.rep.phase(PhaseValidate)
	for _, w := range c.Warnings {
		r.rep.note("warning: %s", w)
	}
	if opts.Commit {
		if err := gitops.CheckRepository(ctx, r.out); err != nil {
			return nil, err
		}
	}
	r.record(p, false, "%s: cluster %s, %d node(s)", r.opts.Profile, c.Metadata.Name, len(c.Nodes))
	return r, nil
}

func vols(c *profile.Cluster) []string {
	if c.Longhorn == nil {
		return nil
	}
	var out []string
	for _, v := range c.Longhorn.Volumes {
		claim := v.Claim
		if claim == "" {
			claim = v.Name
		}
		out = append(out, v.Namespace+"/"+claim)
	}
	return out
}

// record prints a phase's summary line and keeps its result.
func (r *run) record(p *phase, changed bool, format string, args ...any) {
	summary := fmt.Sprintf(format, args...)
	took := p.done("%s", summary)
	r.res.Phases = append(r.res.Phases, PhaseResult{Name: p.name, Took: took, Changed: changed, Summary: summary, Node: p.lastNode(r.nodeNames())})
}

// nodeNames are the profile's node names.
func (r *run) nodeNames() []string {
	names := make([]string, 0, len(r.cluster.Nodes))
	for _, n := range r.cluster.Nodes {
		names = append(names, n.Name)
	}
	return names
}

// shown is a path relative to the project root when it lies inside it.
func (r *run) shown(path string) string {
	if rel, err := filepath.Rel(r.cluster.Root(), path); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return path
}

func (r *run) wrote(paths ...string) {
	for _, p := range paths {
		if rel, err := filepath.Rel(r.out, p); err == nil && filepath.IsAbs(p) {
			p = rel
		}
		if !slices.Contains(r.res.Written, p) {
			r.res.Written = append(r.res.Written, filepath.ToSlash(p))
		}
	}
}

// Up brings the cluster to what the profile says: validate → generate → provision → apply →
// bootstrap → Longhorn. See the package documentation.
func Up(ctx context.Context, opts Options) (*UpResult, error) {
	r, err := newRun(ctx, opts)
	if err != nil {
		return nil, err
	}
	ctx, unlock, err := r.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	defer r.closeRunner()
	if err := r.up(ctx); err != nil {
		return r.res, err
	}
	if err := r.commit(ctx, "up"); err != nil {
		return r.res, err
	}
	r.res.Took = r.opts.Now().Sub(r.start)
	r.res.CriticalPath = criticalPath(r.res.Phases)
	return r.res, nil
}

// up runs every phase after validate.
func (r *run) up(ctx context.Context) error {
	defer r.stopEarly()
	steps := []stage{{name: PhaseGenerate, apply: r.generate}, {name: PhasePlan, apply: r.planPhase}}
	for _, step := range append(steps, r.stages()...) {
		r.opts.OnPhase(step.name)
		p := r.rep.phase(step.name)
		if err := step.apply(ctx, p); err != nil {
			err = phaseError(ctx, step.name, err)
			p.r.line(step.name, "cluster", p.elapsed(), "FAILED")
			return err
		}
	}
	return nil
}

// generate is up's generate phase. Proxmox is read meanwhile (observeEarly), from the phase's
// start: the reading belongs to it, as a progress UI or test that follows OnPhase sees.
func (r *run) generate(ctx context.Context, p *phase) error {
	r.observeEarly(ctx)
	res, err := generate.Run(ctx, generate.Options{Profile: r.opts.Profile, Renderers: r.opts.Renderers, Log: r.opts.Detail, Render: true})
	if err != nil {
		return err
	}
	r.gen, r.rendered = res, res.Rendered
	for _, f := range append(slices.Clone(res.Files.Written), res.Files.Removed...) {
		r.wrote(f)
	}
	r.talos = talosCluster(res.Rendered)
	summary := fmt.Sprintf("%s: %d written, %d unchanged", r.shown(r.out), len(res.Files.Written), len(res.Files.Unchanged))
	if len(res.Files.Removed) > 0 {
		summary += fmt.Sprintf(", %d removed", len(res.Files.Removed))
	}
	if res.BundleCreated {
		summary += " (new secrets bundle)"
	}
	r.record(p, res.Files.Changed(), "%s", summary)
	return nil
}

// planPhase computes the plan up then applies, with the same function `plan` uses.
func (r *run) planPhase(ctx context.Context, p *phase) error {
	plan, err := r.computePlan(ctx)
	if err != nil {
		return err
	}
	r.plan, r.res.Plan = plan, plan
	if err := r.refuseUpgrade(ctx); err != nil {
		return err
	}
	var adopt []string
	for _, s := range plan.Steps {
		if s.Action == StepAdopt {
			adopt = append(adopt, s.Subject)
		}
	}
	if len(adopt) > 0 && r.opts.ConfirmAdopt != nil {
		if err := r.opts.ConfirmAdopt(adopt); err != nil {
			return err
		}
	}
	if plan.Proxmox != nil {
		for _, f := range plan.Proxmox.Findings {
			if f.Severity == proxmox.SeverityWarning {
				r.rep.note("warning: %s", f)
			}
		}
	}
	for _, s := range plan.Steps {
		fmt.Fprintf(r.opts.Detail, "  plan: %s\n", s)
	}
	r.record(p, false, "%d step(s) to take", len(plan.Steps))
	return nil
}

// did records steps up took.
func (r *run) did(steps ...Step) { r.res.Steps = append(r.res.Steps, steps...) }

// prefixWriter prefixes each write (a whole line from the Longhorn stage) for the detail stream.
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := fmt.Fprintf(p.w, "%s%s", p.prefix, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// commit commits what the run wrote, with a message that says what changed.
func (r *run) commit(ctx context.Context, command string) error {
	if !r.opts.Commit || len(r.res.Written) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "talforge %s %s: %s\n\n", command, r.cluster.Metadata.Name, commitSubject(r.res))
	for _, ph := range r.res.Phases {
		if ph.Changed {
			fmt.Fprintf(&b, "%s: %s\n", ph.Name, ph.Summary)
		}
	}
	b.WriteString("\n")
	files := slices.Clone(r.res.Written)
	slices.Sort(files)
	for _, f := range files {
		fmt.Fprintf(&b, "update %s\n", f)
	}
	ok, err := gitops.Commit(ctx, r.out, b.String(), files)
	if err != nil {
		return fmt.Errorf("commit %s: %w", r.out, err)
	}
	r.res.Committed = ok
	if ok {
		r.rep.note("committed %s (%d file(s))", r.out, len(files))
	}
	return nil
}

func commitSubject(res *UpResult) string {
	var changed []string
	for _, p := range res.Phases {
		if p.Changed {
			changed = append(changed, p.Name)
		}
	}
	if len(changed) == 0 {
		return fmt.Sprintf("%d file(s) updated", len(res.Written))
	}
	return strings.Join(changed, ", ")
}
