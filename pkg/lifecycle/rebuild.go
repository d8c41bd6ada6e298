package lifecycle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/talforge/talforge/pkg/backuptarget"
	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/proxmox"
	"github.com/talforge/talforge/pkg/restore"
	"github.com/talforge/talforge/pkg/secrets"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// Rebuild phases (besides Up's).
const (
	PhasePlan    = "plan"
	PhaseBackup  = "backup"
	PhaseDestroy = "destroy"
	PhaseRestore = "restore"
)

// RebuildOptions tune Rebuild.
type RebuildOptions struct {
	// Yes skips the confirmation.
	Yes bool
	// Confirm asks a person to type the cluster name and returns what they typed. Without it
	// (and without Yes) Rebuild refuses.
	Confirm func(prompt string) (string, error)
	// BackupFirst backs up every Longhorn volume of the running cluster, and waits for the
	// backups, before anything is destroyed.
	BackupFirst bool
	// KeepDataDisks keeps each VM's Longhorn data disk for the re-created VM.
	KeepDataDisks bool
	// Resume continues an interrupted rebuild whose VMs are already destroyed: no backup, no
	// destroy.
	Resume bool
	// AcceptDataLoss destroys the VMs even when a declared claim has no backup in S3 that
	// talforge could verify and the data disks are not kept: that claim's data is gone.
	AcceptDataLoss bool
}

// RestorePlan is one declared claim and its latest backup.
type RestorePlan struct {
	Claim restore.Declared `json:"claim"`
	// Latest is the claim's newest backup, read straight from the backup target (or, when the
	// bucket cannot be read from here, as the old cluster lists it). nil when it could not be
	// looked up or there is none yet (BackupFirst makes one).
	Latest *backuptarget.Backup `json:"latest,omitempty"`
	// Proven reports that Latest was read from the bucket itself and its backup config and
	// every block it references are there (backuptarget.Verify).
	Proven bool `json:"proven"`
}

// RebuildPlan is what Rebuild will do.
type RebuildPlan struct {
	Cluster string
	Destroy *proxmox.DestroyPlan
	// Bundle is the sha256 of clusters/<name>/secrets.sops.yaml, which the rebuild reuses.
	Bundle string
	// LiveLonghorn is the Longhorn version the old cluster runs ("" when unknown).
	LiveLonghorn string
	// BackupFirst lists the volumes backed up before the destroy.
	BackupFirst []string
	Restore     []RestorePlan
	// Notes are things the person should know before confirming.
	Notes []string
}

// RebuildResult reports a rebuild.
type RebuildResult struct {
	Plan     *RebuildPlan
	Backups  []restore.Backup
	Up       *UpResult
	Restored []restore.Result
	Took     time.Duration
}

// ErrNotConfirmed is returned when the typed confirmation does not match the cluster name.
var ErrNotConfirmed = errors.New("not confirmed")

// Rebuild re-creates the cluster from nothing but what Git holds. See the package
// documentation for the steps.
func Rebuild(ctx context.Context, opts Options, ro RebuildOptions) (*RebuildResult, error) {
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
	res := &RebuildResult{Up: r.res}
	r.opts.OnPhase(PhasePlan)
	p := r.rep.phase(PhasePlan)
	plan, err := r.planRebuild(ctx, ro)
	if err != nil {
		return nil, phaseError(ctx, PhasePlan, err)
	}
	res.Plan = plan
	r.printRebuildPlan(plan, ro)
	r.record(p, false, "secrets bundle %s, %d VM(s) to destroy, %d volume(s) to restore", plan.Bundle[:12], destroyCount(plan), len(plan.Restore))

	if !ro.Yes {
		if ro.Confirm == nil {
			return res, fmt.Errorf("%w: rebuild destroys the cluster's VMs; confirm by typing the cluster name, or pass --yes", ErrNotConfirmed)
		}
		typed, err := ro.Confirm(fmt.Sprintf("Type the cluster name (%s) to destroy and rebuild it: ", plan.Cluster))
		if err != nil {
			return res, fmt.Errorf("confirmation: %w", err)
		}
		if strings.TrimSpace(typed) != plan.Cluster {
			return res, fmt.Errorf("%w: %q is not the cluster name %q; nothing was changed", ErrNotConfirmed, strings.TrimSpace(typed), plan.Cluster)
		}
	}

	if !ro.Resume {
		if ro.BackupFirst {
			if res.Backups, err = r.backupFirst(ctx, plan); err != nil {
				return res, err
			}
		}
		// Checked again right before anything is destroyed: the backups taken first, and
		// what the bucket holds now.
		if err := r.requireProvenBackups(ctx, plan, ro); err != nil {
			return res, phaseError(ctx, PhasePlan, err)
		}
		if err := r.destroy(ctx, plan); err != nil {
			return res, err
		}
	}
	resume := func(err error) error {
		var ie *InterruptedError
		if errors.As(err, &ie) {
			ie.Hint = "the old VMs are gone; run `talforge rebuild --resume` to continue without destroying anything"
		}
		return err
	}
	if err := r.up(ctx); err != nil {
		return res, resume(err)
	}
	if res.Restored, err = r.restore(ctx); err != nil {
		return res, resume(err)
	}
	if sum, err := fileDigest(filepath.Join(r.out, secrets.FileName)); err != nil || sum != plan.Bundle {
		return res, fmt.Errorf("the secrets bundle changed during the rebuild (was %s, now %s, %v): this is a bug; restore it from Git", plan.Bundle, sum, err)
	}
	if err := r.commit(ctx, "rebuild"); err != nil {
		return res, err
	}
	res.Took = r.opts.Now().Sub(r.start)
	return res, nil
}

func destroyCount(p *RebuildPlan) int {
	if p.Destroy == nil {
		return 0
	}
	return len(p.Destroy.Items)
}

func fileDigest(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// planRebuild looks at what exists before anything is touched, and refuses rebuilds that
// would lose data or could not restore it.
func (r *run) planRebuild(ctx context.Context, ro RebuildOptions) (*RebuildPlan, error) {
	c := r.cluster
	for _, n := range c.Nodes {
		if n.IsAdopted() {
			return nil, &InputError{fmt.Errorf("%s: nodes[%s].adopted: a rebuild destroys the VMs and creates them again, and talforge never creates or "+
				"destroys a VM it adopted; once you mean to let talforge own %s's VM, remove adopted (and vmid) from the node", c.File(), n.Name, n.Name)}
		}
	}
	plan := &RebuildPlan{Cluster: c.Metadata.Name}
	bundlePath := filepath.Join(r.out, secrets.FileName)
	sum, err := fileDigest(bundlePath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: a rebuild re-creates a cluster from what Git holds; for a new cluster run `talforge up`", bundlePath)
	}
	if err != nil {
		return nil, err
	}
	plan.Bundle = sum
	if c.Proxmox != nil && !ro.Resume {
		api, err := r.connect(ctx)
		if err != nil {
			return nil, err
		}
		if plan.Destroy, err = proxmox.PlanDestroy(ctx, api, c.Metadata.Name, proxmox.DestroyOptions{KeepDataDisks: ro.KeepDataDisks, Pool: c.Proxmox.Pool}); err != nil {
			return nil, err
		}
	}
	if c.Proxmox == nil && !ro.Resume {
		return nil, errors.New("the profile has no proxmox section: talforge cannot destroy and re-create hand-provisioned machines; reset them to maintenance mode and run `talforge up`, then `talforge rebuild --resume`")
	}
	decl, err := restore.Declarations(c)
	if err != nil {
		return nil, err
	}
	for _, d := range decl {
		plan.Restore = append(plan.Restore, RestorePlan{Claim: d})
	}
	if ro.Resume || c.Longhorn == nil {
		return plan, nil
	}
	r.latestFromTarget(ctx, plan)
	if err := r.lookAtOldCluster(ctx, ro, plan); err != nil {
		return plan, err
	}
	if !ro.BackupFirst {
		// Refuse before asking for a confirmation; with BackupFirst the backups are made
		// after it, and checked before the destroy.
		if err := r.requireProvenBackups(ctx, plan, ro); err != nil {
			return plan, err
		}
	}
	return plan, nil
}

// lookAtOldCluster checks, while the old cluster still answers, that Longhorn runs the
// profile's version with the profile's backup target, backs up what BackupFirst asks for and
// that every declared volume will have a backup to restore.
func (r *run) lookAtOldCluster(ctx context.Context, ro RebuildOptions, plan *RebuildPlan) error {
	c := r.cluster
	l := c.Longhorn
	kc, err := sopsfile.DecryptFile(filepath.Join(r.out, bootstrap.KubeconfigFile))
	unreachable := func(why string) error {
		if ro.BackupFirst {
			return fmt.Errorf("--backup-first needs the running cluster, but %s", why)
		}
		plan.Notes = append(plan.Notes, fmt.Sprintf("the old cluster cannot be checked (%s): the restore uses the newest backups in %s", why, backupTarget(l)))
		return nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return unreachable("there is no " + bootstrap.KubeconfigFile)
	}
	if err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	lo := r.opts.Longhorn
	lo.Kubeconfig, lo.Log = kc, io.Discard
	cl, err := longhorn.New(c, lo)
	if err != nil {
		return err
	}
	st, err := cl.Status(lctx)
	if err != nil {
		return unreachable(bootstrap.ShortError(err))
	}
	if !st.Installed {
		return unreachable("Longhorn is not installed")
	}
	plan.LiveLonghorn = st.ChartVersion
	if st.ChartVersion != l.Version {
		return fmt.Errorf("the cluster runs Longhorn %s but the profile says %s: a rebuild installs the profile's version and restores need the same one; set longhorn.version: %s (or upgrade first with `talforge up`)",
			st.ChartVersion, l.Version, st.ChartVersion)
	}
	if l.Backup != nil && st.BackupTarget.URL != "" && st.BackupTarget.URL != l.Backup.Target {
		return fmt.Errorf("the cluster backs up to %s but the profile says %s: the rebuilt cluster would look for backups in the wrong place; fix longhorn.backup.target",
			st.BackupTarget.URL, l.Backup.Target)
	}
	ro2 := r.opts.Restore
	ro2.Log = io.Discard
	rc, err := restore.New(kc, ro2)
	if err != nil {
		return err
	}
	vols, err := rc.Volumes(lctx)
	if err != nil {
		return unreachable(bootstrap.ShortError(err))
	}
	for _, v := range vols {
		if ro.BackupFirst {
			plan.BackupFirst = append(plan.BackupFirst, v.Name)
		}
	}
	var lost []string
	for i := range plan.Restore {
		rp := &plan.Restore[i]
		if rp.Latest == nil {
			b, err := rc.LatestForClaim(lctx, rp.Claim.Namespace, rp.Claim.Claim, rp.Claim.Name)
			if err != nil {
				return unreachable(bootstrap.ShortError(err))
			}
			rp.Latest = fromCluster(b)
		}
		if rp.Latest != nil {
			continue
		}
		if !(ro.BackupFirst && r.claimHasVolume(lctx, rc, rp.Claim)) {
			lost = append(lost, rp.Claim.String())
		}
	}
	if len(lost) > 0 {
		return fmt.Errorf("declared claim(s) %s have no backup in %s: a rebuild would lose them; back them up first (--backup-first backs up every volume before destroying)",
			strings.Join(lost, ", "), backupTarget(l))
	}
	return nil
}

// claimHasVolume reports whether the claim is bound to a Longhorn volume on the old cluster
// (so --backup-first will back it up).
func (r *run) claimHasVolume(ctx context.Context, rc *restore.Client, d restore.Declared) bool {
	v, err := rc.ClaimVolume(ctx, d)
	return err == nil && v != ""
}

func backupTarget(l *profile.Longhorn) string {
	if l == nil || l.Backup == nil {
		return "(no backup target)"
	}
	return l.Backup.Target
}

func (r *run) printRebuildPlan(plan *RebuildPlan, ro RebuildOptions) {
	w := r.opts.Progress
	fmt.Fprintf(w, "\nRebuild plan for cluster %s (tabula rasa)\n\n", plan.Cluster)
	fmt.Fprintf(w, "  = secrets bundle %s (sha256 %s) is reused as it is: same cluster CA, same tokens\n", r.shown(filepath.Join(r.out, secrets.FileName)), plan.Bundle[:16])
	if plan.LiveLonghorn != "" {
		fmt.Fprintf(w, "  = Longhorn %s, backup target %s\n", plan.LiveLonghorn, backupTarget(r.cluster.Longhorn))
	}
	for _, v := range plan.BackupFirst {
		fmt.Fprintf(w, "  + back up volume %s now, and wait for it\n", v)
	}
	if plan.Destroy != nil {
		for _, it := range plan.Destroy.Items {
			line := fmt.Sprintf("  - destroy VM %s (VMID %d on %s)", it.VM.Name, it.VM.VMID, it.VM.Node)
			switch {
			case it.DataDisk != "" && it.Keep:
				line += ", keeping its data disk " + it.DataDisk
			case it.DataDisk != "":
				line += ", deleting its data disk " + it.DataDisk + " (use --keep-data-disks to keep it)"
			}
			fmt.Fprintln(w, line)
		}
	}
	if ro.Resume {
		fmt.Fprintln(w, "  # --resume: nothing is backed up or destroyed")
	}
	for _, n := range r.cluster.Nodes {
		fmt.Fprintf(w, "  + re-create %s (%s) with IP %s and MAC %s\n", n.Name, n.Role, n.IP, n.MAC)
	}
	fmt.Fprintln(w, "  + bootstrap etcd, install Longhorn with its backup target")
	for _, rp := range plan.Restore {
		from := "its latest backup"
		if rp.Latest != nil {
			from = fmt.Sprintf("its latest backup (now %s of volume %s, %s, %s old, %s)", rp.Latest.Name, rp.Latest.Volume,
				rp.Latest.Created.UTC().Format(time.RFC3339), formatAge(r.opts.Now().Sub(rp.Latest.Created)), formatBytes(rp.Latest.VolumeSize))
		}
		fmt.Fprintf(w, "  + restore claim %s from %s, bound before any workload starts\n", rp.Claim, from)
	}
	for _, n := range plan.Notes {
		fmt.Fprintf(w, "  # %s\n", n)
	}
	fmt.Fprintln(w)
}

func (r *run) destroy(ctx context.Context, plan *RebuildPlan) error {
	r.opts.OnPhase(PhaseDestroy)
	p := r.rep.phase(PhaseDestroy)
	if plan.Destroy == nil || plan.Destroy.Empty() {
		r.record(p, false, "no VM carries the tag %s", proxmox.OwnerTag(r.cluster.Metadata.Name))
		return nil
	}
	api, err := r.connect(ctx)
	if err != nil {
		return phaseError(ctx, PhaseDestroy, err)
	}
	var mu sync.Mutex
	o := r.opts.Proxmox
	o.Events = func(e proxmox.Event) {
		p.seen(e.VM)
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(r.opts.Detail, "  %s\n", e)
	}
	if err := proxmox.NewExecutor(api, o).Destroy(ctx, plan.Destroy); err != nil {
		return phaseError(ctx, PhaseDestroy, err)
	}
	kept := 0
	for _, it := range plan.Destroy.Items {
		what := "destroyed"
		if it.Keep && it.DataDisk != "" {
			what += ", data disk kept in " + proxmox.ParkedName(it.VM.Name)
			kept++
		}
		p.node(it.VM.Name, "%s (was VMID %d)", what, it.VM.VMID)
	}
	r.record(p, true, "%d VM(s) destroyed, %d data disk(s) kept", len(plan.Destroy.Items), kept)
	return nil
}

func (r *run) restore(ctx context.Context) ([]restore.Result, error) {
	r.opts.OnPhase(PhaseRestore)
	p := r.rep.phase(PhaseRestore)
	decl, err := restore.Declarations(r.cluster)
	if err != nil {
		return nil, phaseError(ctx, PhaseRestore, err)
	}
	if len(decl) == 0 {
		r.record(p, false, "no declared volumes (longhorn.volumes)")
		return nil, nil
	}
	rc, err := r.restoreClient(r.kubeconfig)
	if err != nil {
		return nil, phaseError(ctx, PhaseRestore, err)
	}
	results, err := rc.RestoreAll(ctx, decl, func(res restore.Result) {
		name := res.Claim.String()
		p.seen(name)
		switch res.Action {
		case restore.ActionExists:
			p.node(name, "exists, bound to volume %s, left as it is", res.Volume)
		default:
			b := res.Backup
			p.node(name, "%s from backup %s (%s old, %s) in %s into volume %s; PV %s, PVC %s", res.Action, b.Name,
				formatAge(r.opts.Now().Sub(b.Created)), formatBytes(b.VolumeSize), formatDuration(res.Took), res.Volume, res.PV, res.PVC)
		}
	})
	if err != nil {
		return results, phaseError(ctx, PhaseRestore, err)
	}
	restored := 0
	for _, res := range results {
		if res.Action == restore.ActionRestored || res.PV == "created" || res.PVC == "created" {
			restored++
		}
	}
	r.record(p, restored > 0, "%d claim(s) restored and bound", len(results))
	return results, nil
}
