// The phases of up after generate and plan: provision, apply (Talos configs), bootstrap (etcd,
// health, kubeconfig) and Longhorn, each applying its part of the plan.

package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/machineconfig"
	"github.com/talforge/talforge/pkg/proxmox"
	"github.com/talforge/talforge/pkg/sopsfile"
)

func (r *run) connect(ctx context.Context) (proxmox.API, error) {
	if r.pve != nil {
		return r.pve, nil
	}
	if r.opts.ConnectPVE == nil {
		return nil, errors.New("no way to connect to Proxmox VE (Options.ConnectPVE)")
	}
	api, err := r.opts.ConnectPVE(ctx, r.cluster)
	if err != nil {
		return nil, err
	}
	r.pve = api
	return api, nil
}

// events returns a proxmox.Options with events going to the detail stream and the phase.
func (r *run) proxmoxOptions(p *phase) proxmox.Options {
	o := r.opts.Proxmox
	o.Progress = r.waits("cluster")
	var mu sync.Mutex
	o.Events = func(e proxmox.Event) {
		p.seen(e.VM)
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(r.opts.Detail, "  %s\n", e)
	}
	return o
}

func (r *run) provision(ctx context.Context, p *phase) error {
	if r.cluster.Proxmox == nil {
		r.record(p, false, "skipped: the profile has no proxmox section (the machines are provisioned by hand)")
		return nil
	}
	plan := r.plan.Proxmox
	if !plan.HasChanges() {
		for _, v := range plan.VMs {
			if err := plan.Blocked(v.Spec.Name); err != nil {
				p.node(v.Spec.Name, "left alone: %v", err)
				continue
			}
			p.node(v.Spec.Name, "unchanged (VMID %d, running)", v.VMID)
		}
		if err := plan.Err(); err != nil {
			return err
		}
		r.record(p, false, "%d VM(s) in place", len(plan.VMs))
		return nil
	}
	api, err := r.connect(ctx)
	if err != nil {
		return err
	}
	plan.Print(r.opts.Detail)
	res, applyErr := proxmox.NewExecutor(api, r.proxmoxOptions(p)).Apply(ctx, plan)
	counts := map[string]int{}
	if res != nil {
		r.did(proxmoxSteps(plan, res)...)
		for _, v := range res.VMs {
			counts[string(v.Action)]++
			if v.Started {
				counts["started"]++
			}
			p.node(v.Name, "%s (VMID %d)", DescribeVM(v, true), v.VMID)
		}
	}
	if applyErr != nil {
		return applyErr
	}
	r.record(p, true, "%d created, %d updated, %d started", counts[string(proxmox.ActionCreate)], counts[string(proxmox.ActionUpdate)], counts["started"])
	return nil
}

// DescribeVM says what provisioning did to a VM: "created, started"; a failure with its error
// when withErr.
func DescribeVM(v proxmox.VMResult, withErr bool) string {
	var what []string
	switch {
	case v.Err != nil && withErr:
		what = append(what, "FAILED: "+v.Err.Error())
	case v.Err != nil:
		what = append(what, "FAILED")
	case v.Action == proxmox.ActionCreate:
		what = append(what, "created")
	case v.Action == proxmox.ActionUpdate:
		what = append(what, "updated")
	default:
		what = append(what, "unchanged")
	}
	if v.Started {
		what = append(what, "started")
	}
	if len(v.Pending) > 0 {
		what = append(what, "restart it to apply: "+strings.Join(v.Pending, ", "))
	}
	return strings.Join(what, ", ")
}

// newRunner builds the Talos runner once. Its progress lines go to Options.Talos.Progress when
// the caller set it (the single-stage commands), else to the detail stream, attributed to the
// current phase p.
func (r *run) newRunner(p *phase, dryRun bool) error {
	if r.runner != nil {
		if r.talosOut != nil {
			r.talosOut.setPhase(p)
		}
		return nil
	}
	o := r.opts.Talos
	switch {
	case o.Progress != nil:
	case p == nil:
		o.Progress = prefixWriter{r.opts.Detail, "  "}
	default:
		r.talosOut = &subjectWriter{p: p, detail: r.opts.Detail}
		o.Progress, o.Waits = r.talosOut, r.talosWaits
	}
	o.DryRun = dryRun
	if o.Mode == "" {
		o.Mode = bootstrap.ModeAuto
	}
	runner, err := bootstrap.New(r.talos, o)
	if err != nil {
		return err
	}
	r.runner = runner
	return nil
}

// closeRunner closes the Talos runner's connections to the nodes, if it was built.
func (r *run) closeRunner() {
	if r.runner != nil {
		_ = r.runner.Close() // closing probe connections: nothing to report
	}
}

func (r *run) apply(ctx context.Context, p *phase) error {
	if err := r.newRunner(p, false); err != nil {
		return err
	}
	results, err := r.runner.Apply(ctx)
	changed := 0
	for _, res := range results {
		if res.Action == "" {
			p.node(res.Node, "FAILED")
			continue
		}
		line := string(res.Action)
		if res.Details != "" {
			line += ": " + res.Details
		}
		if res.Action != bootstrap.ActionUnchanged {
			changed++
		}
		if step, ok := talosStep(res); ok {
			r.did(step)
		}
		p.node(res.Node, "%s", line)
	}
	if err != nil {
		return err
	}
	r.record(p, changed > 0, "%d node(s) configured, %d changed", len(results), changed)
	return nil
}

func (r *run) bootstrap(ctx context.Context, p *phase) error {
	if err := r.newRunner(p, false); err != nil {
		return err
	}
	etcd, err := r.runner.BootstrapHealthy(ctx)
	if etcd == nil {
		return err
	}
	changed := etcd.Action == bootstrap.EtcdBootstrapped
	if changed {
		r.did(Step{PhaseBootstrap, SubjectEtcd, StepBootstrap})
	}
	p.node(etcd.Node, "etcd %s", etcd.Action)
	if err != nil {
		return err
	}
	written, err := r.kubeHealthy(ctx, false)
	if err != nil {
		return err
	}
	r.wrote(written...)
	for _, n := range r.talos.Nodes {
		if n.Role.IsControlPlane() {
			p.node(n.Name, "etcd member, registered with Kubernetes")
		} else {
			p.node(n.Name, "registered with Kubernetes")
		}
	}
	summary := fmt.Sprintf("etcd %s; kube-apiserver answers at %s; %d node(s) registered", etcd.Action, r.kubeServer, len(r.talos.Nodes))
	if len(written) > 0 {
		summary += "; stored " + strings.Join(written, ", ")
	}
	r.record(p, changed || len(written) > 0, "%s", summary)
	return nil
}

// ensureKubeconfig uses the stored kubeconfig when it reaches the API server (it is signed
// by the cluster's CA, which the secrets bundle keeps), and otherwise (or with refresh) fetches a
// new one from a control plane and stores it: Talos mints a new client certificate on every
// fetch, so fetching every time would rewrite the file every time.
func (r *run) ensureKubeconfig(ctx context.Context, refresh bool) ([]byte, []string, error) {
	kc, fetched, err := r.usableKubeconfig(ctx, refresh)
	if err != nil {
		return nil, nil, err
	}
	written, err := r.store(fetched)
	return kc, written, err
}

// usableKubeconfig is ensureKubeconfig's choice without the store: the kubeconfig to use, and
// the one to store (nil when the stored one is used).
func (r *run) usableKubeconfig(ctx context.Context, refresh bool) (kubeconfig, fetched []byte, err error) {
	path := filepath.Join(r.out, bootstrap.KubeconfigFile)
	stored, err := sopsfile.DecryptFile(path)
	// A kubeconfig without a client certificate (a token) has no expiry to renew before.
	expires, expErr := bootstrap.KubeconfigExpiry(stored)
	switch {
	case refresh:
	case err == nil && expErr == nil && machineconfig.RenewalDue(expires, r.opts.Now()):
		// Talos mints an admin certificate valid for a year on each fetch: take a new one
		// before this one runs out, not after kubectl starts failing.
		fmt.Fprintf(r.opts.Detail, "%s: its client certificate expires on %s: fetching a new kubeconfig from a control plane\n",
			r.shown(path), expires.UTC().Format(time.DateOnly))
	case err == nil:
		if kube, kerr := bootstrap.NewKubeClient(stored); kerr == nil {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, verr := kube.ServerVersion(cctx)
			cancel()
			if verr == nil {
				return stored, nil, nil
			}
			fmt.Fprintf(r.opts.Detail, "%s does not reach %s (%v): fetching a new kubeconfig from a control plane\n", r.shown(path), kube.Server(), verr)
		}
	case errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(r.opts.Detail, "%s does not exist yet: fetching the kubeconfig from a control plane\n", r.shown(path))
	default:
		return nil, nil, err
	}
	kc, err := r.runner.Kubeconfig(ctx)
	if err != nil {
		return nil, nil, err
	}
	return kc, kc, nil
}

// store writes the kubeconfig (unless nil) and the talosconfig, encrypted; it returns the
// files it wrote.
func (r *run) store(kubeconfig []byte) ([]string, error) {
	sops, err := sopsfile.ProjectConfig(r.cluster.Root())
	if err != nil {
		return nil, err
	}
	return bootstrap.Store(sops, r.out, kubeconfig, r.talos.Talosconfig)
}

func relAll(base string, paths []string) []string {
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		if rel, err := filepath.Rel(base, p); err == nil {
			p = rel
		}
		out = append(out, filepath.ToSlash(p))
	}
	return out
}

func (r *run) longhornClient() (*longhorn.Client, error) {
	o := r.opts.Longhorn
	o.Kubeconfig = r.kubeconfig
	o.Log = prefixWriter{r.opts.Detail, "  longhorn: "}
	o.Progress = r.waits("cluster")
	return longhorn.New(r.cluster, o)
}

// longhorn applies the plan's Longhorn step. A step decided without looking (there was no
// cluster to look at) is decided now, the way plan would have.
func (r *run) longhorn(ctx context.Context, p *phase) error {
	l := r.cluster.Longhorn
	if l == nil {
		r.record(p, false, "skipped: the profile has no longhorn section")
		return nil
	}
	cl, err := r.longhornClient()
	if err != nil {
		return err
	}
	planned := r.plan.Longhorn
	if planned.Note != "" {
		up, err := cl.Plan(ctx, l.Version)
		switch {
		case errors.Is(err, longhorn.ErrNotInstalled):
		case err != nil:
			return err
		case len(up.Steps) > 0:
			planned = &LonghornPlan{Action: "upgrade", Installed: up.From, Steps: up.Steps, Target: l.Version}
		}
	}
	var summary string
	changed := true
	if planned.Action == "upgrade" {
		if _, err := cl.Upgrade(ctx, l.Version); err != nil {
			return err
		}
		r.did(Step{PhaseLonghorn, SubjectLonghorn, StepUpgrade})
		summary = fmt.Sprintf("upgraded %s -> %s", planned.Installed, strings.Join(planned.Steps, " -> "))
	} else {
		res, err := cl.Install(ctx)
		if err != nil {
			return err
		}
		if err := r.didLonghorn(ctx, cl, planned, res); err != nil {
			return err
		}
		changed = res.Action != "unchanged"
		summary = fmt.Sprintf("%s %s (Helm revision %d)", res.Version, res.Action, res.Revision)
	}
	if l.Backup != nil {
		summary += fmt.Sprintf("; BackupTarget default available: %s", l.Backup.Target)
	}
	r.record(p, changed, "%s", summary)
	return nil
}

// didLonghorn records what Install did: a first install, or a convergence, which is proven by
// the drift it leaves (none) rather than assumed from the plan.
func (r *run) didLonghorn(ctx context.Context, cl *longhorn.Client, planned *LonghornPlan, res *longhorn.InstallResult) error {
	switch {
	case res.Action == "install":
		r.did(Step{PhaseLonghorn, SubjectLonghorn, StepInstall})
	case res.Action == "upgrade":
		r.did(Step{PhaseLonghorn, SubjectLonghorn, StepConverge})
	case planned.Action == "converge" || planned.Action == "adopt":
		diffs, err := cl.Drift(ctx)
		if err != nil {
			return fmt.Errorf("reading Longhorn's drift after converging: %w", err)
		}
		if len(diffs) > 0 {
			return fmt.Errorf("after converging, Longhorn still differs from the profile: %s", diffs[0])
		}
		if planned.Action == "adopt" {
			r.did(Step{PhaseLonghorn, SubjectLonghorn, StepAdopt})
		} else {
			r.did(Step{PhaseLonghorn, SubjectLonghorn, StepConverge})
		}
	}
	return nil
}
