package lifecycle

import (
	"context"
	"fmt"
	"strings"

	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/proxmox"
)

// The single-stage commands (provision, apply, bootstrap, health, kubeconfig) run the same stage
// code as up, on what is already generated: they render in memory from the stored secrets
// bundle (generate.RenderStored) and never write node configs.

// ProvisionReport is what Provision planned and did.
type ProvisionReport struct {
	Cluster string `json:"cluster"`
	// Plan is what Proxmox needs; it is set even when the plan cannot be applied (a foreign VM).
	Plan *proxmox.Plan `json:"-"`
	// Planned are the plan's steps.
	Planned []Step `json:"planned"`
	// Result is what was done (nil with PlanOnly or when nothing had to change).
	Result *proxmox.Result `json:"-"`
	// Steps are the changes made, in plan's vocabulary.
	Steps []Step `json:"steps"`
}

// Provision makes Proxmox match the profile, as up's provision phase does; with planOnly it
// observes and changes nothing.
func Provision(ctx context.Context, opts Options, planOnly bool) (*ProvisionReport, error) {
	r, err := loadRun(ctx, opts)
	if err != nil {
		return nil, err
	}
	if !planOnly { // one run at a time per cluster; a read-only look needs no lock
		var unlock func()
		if ctx, unlock, err = r.lock(ctx); err != nil {
			return nil, err
		}
		defer unlock()
	}
	if r.cluster.Proxmox == nil {
		return nil, &InputError{fmt.Errorf("%s: proxmox: the profile has no proxmox section", r.cluster.File())}
	}
	rep := &ProvisionReport{Cluster: r.cluster.Metadata.Name}
	plan := &PlanReport{}
	err = r.planProxmox(ctx, plan)
	rep.Plan, rep.Planned = plan.Proxmox, plan.Steps
	if err != nil {
		return rep, err
	}
	if planOnly || !rep.Plan.HasChanges() {
		return rep, rep.Plan.Err()
	}
	api, err := r.connect(ctx)
	if err != nil {
		return rep, err
	}
	res, err := proxmox.NewExecutor(api, r.opts.Proxmox).Apply(ctx, rep.Plan)
	rep.Result = res
	if res != nil {
		rep.Steps = proxmoxSteps(rep.Plan, res)
	}
	if err != nil && ctx.Err() != nil {
		return rep, fmt.Errorf("interrupted; tasks already started keep running in Proxmox, run provision again to converge: %w", err)
	}
	return rep, err
}

// TalosReport is what ApplyConfigs or Bootstrap did.
type TalosReport struct {
	Cluster string                 `json:"cluster"`
	Mode    bootstrap.Mode         `json:"mode,omitempty"`
	Nodes   []bootstrap.NodeResult `json:"nodes"`
	// Etcd is set by Bootstrap once the control planes run their configs.
	Etcd *bootstrap.EtcdResult `json:"etcd,omitempty"`
	// Written lists the files stored in clusters/<name>/ (kubeconfig, talosconfig).
	Written []string `json:"written"`
	// Healthy is true when every health check passed.
	Healthy bool `json:"healthy"`
}

// talosRun loads the profile, renders the stored configs and builds the Talos runner for a
// single Talos stage (a dry run when readOnly), noting when clusters/<name>/ (what Git holds)
// is not what is applied. Unless readOnly, it holds the cluster's run lock; release it (and
// the runner's connections) with the returned function.
func talosRun(ctx context.Context, opts Options, readOnly bool) (context.Context, *run, func(), error) {
	r, err := loadRun(ctx, opts)
	if err != nil {
		return ctx, nil, nil, err
	}
	unlock := func() {}
	if !readOnly {
		if ctx, unlock, err = r.lock(ctx); err != nil {
			return ctx, nil, nil, err
		}
	}
	if r.talos, r.rendered, err = renderTalos(ctx, r.cluster); err != nil {
		unlock()
		return ctx, nil, nil, err
	}
	stale, err := generate.Stale(r.out, r.rendered)
	switch {
	case err != nil:
		r.rep.note("warning: %v", err)
	case len(stale) > 0:
		r.rep.note("warning: the profile changed since %s was generated (nodes %s): run `talforge generate` and commit, so Git holds what is applied",
			r.out, strings.Join(stale, ", "))
	}
	if err := r.newRunner(nil, readOnly); err != nil {
		unlock()
		return ctx, nil, nil, err
	}
	return ctx, r, func() { r.closeRunner(); unlock() }, nil
}

// ApplyConfigs brings every node to its rendered config (up's apply phase), with mode for
// configured nodes; dryRun observes and reports redacted diffs only.
func ApplyConfigs(ctx context.Context, opts Options, mode bootstrap.Mode, dryRun bool) (*TalosReport, error) {
	opts.Talos.Mode = mode
	ctx, r, unlock, err := talosRun(ctx, opts, dryRun)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rep := &TalosReport{Cluster: r.cluster.Metadata.Name, Mode: mode}
	rep.Nodes, err = r.runner.Apply(ctx)
	return rep, err
}

// Bootstrap runs up's apply and bootstrap phases: configs (mode auto), etcd exactly once,
// health, the stored kubeconfig. dryRun reports what would be applied and whether etcd would be
// bootstrapped.
func Bootstrap(ctx context.Context, opts Options, dryRun bool) (*TalosReport, error) {
	opts.Talos.Mode = bootstrap.ModeAuto
	ctx, r, unlock, err := talosRun(ctx, opts, dryRun)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rep := &TalosReport{Cluster: r.cluster.Metadata.Name, Mode: bootstrap.ModeAuto}
	if rep.Nodes, err = r.runner.Apply(ctx); err != nil {
		return rep, err
	}
	if dryRun {
		for _, n := range rep.Nodes {
			if n.Action == bootstrap.ActionWouldInstall {
				return rep, nil // etcd is bootstrapped once the control planes run their configs
			}
		}
		rep.Etcd, err = r.runner.Bootstrap(ctx)
		return rep, err
	}
	if rep.Etcd, err = r.runner.BootstrapHealthy(ctx); err != nil {
		return rep, err
	}
	if rep.Written, err = r.kubeHealthy(ctx, false); err != nil {
		return rep, err
	}
	rep.Healthy = true
	return rep, nil
}

// Health checks apid, etcd, the kube-apiserver and node registration, waiting for each up to
// the Talos timeouts. It fetches and stores a kubeconfig when there is none.
func Health(ctx context.Context, opts Options) (*TalosReport, error) {
	ctx, r, unlock, err := talosRun(ctx, opts, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rep := &TalosReport{Cluster: r.cluster.Metadata.Name}
	if rep.Written, err = r.healthy(ctx, false); err != nil {
		return rep, err
	}
	rep.Healthy = true
	return rep, nil
}

// Kubeconfig returns the cluster's admin kubeconfig: the stored one when it reaches the API
// server, else (or with refresh) a new one fetched from a control plane and stored, encrypted.
func Kubeconfig(ctx context.Context, opts Options, refresh bool) ([]byte, []string, error) {
	ctx, r, unlock, err := talosRun(ctx, opts, false)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	kc, written, err := r.ensureKubeconfig(ctx, refresh)
	return kc, relAll(r.out, written), err
}

// healthy waits for Talos health, makes sure of the kubeconfig and waits for Kubernetes
// health; it returns the files it stored.
func (r *run) healthy(ctx context.Context, refresh bool) ([]string, error) {
	if err := r.runner.TalosHealth(ctx); err != nil {
		return nil, err
	}
	return r.kubeHealthy(ctx, refresh)
}

// kubeHealthy is healthy once Talos is healthy: the kubeconfig (ensureKubeconfig), then
// Kubernetes health. Encrypting and writing the kubeconfig and talosconfig takes a while: it
// runs while the API server and the nodes are waited for, and its error comes first.
func (r *run) kubeHealthy(ctx context.Context, refresh bool) ([]string, error) {
	kc, fetched, err := r.usableKubeconfig(ctx, refresh)
	if err != nil {
		return nil, err
	}
	r.kubeconfig = kc
	type stored struct {
		written []string
		err     error
	}
	done := make(chan stored, 1)
	go func() {
		written, err := r.store(fetched)
		done <- stored{written, err}
	}()
	kube, err := bootstrap.NewKubeClient(kc)
	if err == nil {
		err = r.runner.KubeHealth(ctx, kube)
	}
	s := <-done
	if s.err != nil {
		return nil, s.err
	}
	if err != nil {
		return nil, err
	}
	r.kubeServer = kube.Server()
	return relAll(r.out, s.written), nil
}

// InputError marks an error as the user's input to fix (a profile section, a token, a file),
// not a failure of the systems talforge talks to.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// DestroyOptions select what Destroy removes.
type DestroyOptions struct {
	proxmox.DestroyOptions
	// DryRun plans and changes nothing.
	DryRun bool
	// Confirm shows the plan's prompt and returns what the user typed; nil means confirmed
	// (--yes). The plan has been returned to Show before Confirm is called.
	Confirm func(prompt string) (string, error)
	// Show receives the plan before anything is destroyed (nil: not shown).
	Show func(*proxmox.DestroyPlan)
}

// Destroy stops and deletes the VMs that carry the cluster's ownership tag (see
// proxmox.PlanDestroy), after the typed confirmation. It returns the plan it carried out.
func Destroy(ctx context.Context, opts Options, do DestroyOptions) (*proxmox.DestroyPlan, error) {
	r, err := loadRun(ctx, opts)
	if err != nil {
		return nil, err
	}
	if !do.DryRun { // one run at a time per cluster; a read-only look needs no lock
		var unlock func()
		if ctx, unlock, err = r.lock(ctx); err != nil {
			return nil, err
		}
		defer unlock()
	}
	api, err := r.connect(ctx)
	if err != nil {
		return nil, err
	}
	name := r.cluster.Metadata.Name
	do.Adopted = proxmox.AdoptedVMs(r.cluster) // the profile says which VMs are adopted
	if r.cluster.Proxmox != nil {
		do.Pool = r.cluster.Proxmox.Pool
	}
	plan, err := proxmox.PlanDestroy(ctx, api, name, do.DestroyOptions)
	if err != nil {
		return nil, err
	}
	if do.Show != nil {
		do.Show(plan)
	}
	if plan.Empty() || do.DryRun {
		return plan, nil
	}
	if do.Confirm != nil {
		typed, err := do.Confirm(fmt.Sprintf("Type the cluster name (%s) to destroy these VMs: ", name))
		if err != nil {
			return plan, fmt.Errorf("confirmation: %w", err)
		}
		if strings.TrimSpace(typed) != name {
			return plan, fmt.Errorf("%w: confirmation %q does not match the cluster name %q; nothing was destroyed", ErrNotConfirmed, strings.TrimSpace(typed), name)
		}
	}
	if err := proxmox.NewExecutor(api, r.opts.Proxmox).Destroy(ctx, plan); err != nil {
		if ctx.Err() != nil {
			return plan, fmt.Errorf("interrupted; run destroy again to finish: %w", err)
		}
		return plan, err
	}
	return plan, nil
}
