package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/lifecycle"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/proxmox"
	"github.com/talforge/talforge/pkg/restore"
)

// lifecycleOptions are the flags of the whole-cluster commands (up, plan, status, rebuild,
// dr-test): Proxmox connection, Talos timeouts, Longhorn's chart cache.
type lifecycleOptions struct {
	*rootOptions

	pve         pveOptions
	talos       talosOptions
	verbose     bool
	chartCache  string
	helmTimeout time.Duration
	// skipPreflight leaves out the backup-target check before Longhorn installs and upgrades.
	skipPreflight bool
}

func newLifecycleOptions(o *rootOptions) *lifecycleOptions {
	return &lifecycleOptions{rootOptions: o, pve: pveOptions{rootOptions: o}, talos: talosOptions{rootOptions: o}}
}

func (l *lifecycleOptions) addFlags(cmd *cobra.Command) {
	l.pve.addFlags(cmd)
	l.talos.addFlags(cmd)
	cmd.Flags().BoolVarP(&l.verbose, "verbose", "v", false, "also print every stage's own progress (Proxmox tasks, Talos observations, Helm) to stderr")
	cmd.Flags().StringVar(&l.chartCache, "chart-cache", "", "Longhorn chart cache directory (default: <user cache dir>/talforge/charts)")
	cmd.Flags().DurationVar(&l.helmTimeout, "helm-timeout", 15*time.Minute, "limit for each Helm action, hooks included")
	cmd.Flags().BoolVar(&l.skipPreflight, "skip-preflight", false, "do not check the S3 backup target (keys, bucket, region, write/read/delete) before Longhorn is installed or upgraded")
}

// options turns the flags into lifecycle options; progress lines go to w.
func (l *lifecycleOptions) options(w io.Writer) (lifecycle.Options, error) {
	path, err := l.profilePath()
	if err != nil {
		return lifecycle.Options{}, err
	}
	if l.pve.parallelism < 1 {
		return lifecycle.Options{}, &flagError{fmt.Errorf("--parallelism must be at least 1, got %d", l.pve.parallelism)}
	}
	var detail io.Writer
	if l.verbose {
		detail = l.errOut
	}
	topts := l.talos.runnerOptions()
	topts.Progress = nil
	var preflight func(context.Context, string, map[string]string) error
	if !l.skipPreflight {
		preflight = backupPreflight
	}
	return lifecycle.Options{
		Profile:    path,
		Renderers:  renderers(),
		Progress:   w,
		Live:       isTerminal(w),
		Detail:     detail,
		ConnectPVE: l.pve.connection().Connect,
		Proxmox:    proxmox.Options{Parallelism: l.pve.parallelism},
		Talos:      topts,
		Longhorn: longhorn.Options{ChartCacheDir: l.chartCache, HelmTimeout: l.helmTimeout,
			BackupTargetTimeout: min(l.talos.timeout, 5*time.Minute), HealthTimeout: l.talos.timeout, Poll: l.talos.pollInterval,
			Preflight: preflight},
		Restore: restore.Options{Poll: l.talos.pollInterval, BackupTimeout: max(l.talos.timeout, time.Hour), RestoreTimeout: max(l.talos.timeout, time.Hour),
			SyncTimeout: min(l.talos.timeout, 5*time.Minute)},
	}, nil
}

// lifecycleError maps lifecycle errors to exit codes: refused confirmations and Longhorn
// values talforge rejects are invalid input (2), everything else a failure (1).
func lifecycleError(err error) error {
	var ve *longhorn.ValuesError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, lifecycle.ErrNotConfirmed), errors.As(err, &ve):
		return invalid(err)
	}
	return err
}

type upOptions struct {
	*lifecycleOptions
	commit bool
	yes    bool
	output outputOptions
}

func newUpCmd(o *rootOptions) *cobra.Command {
	u := &upOptions{lifecycleOptions: newLifecycleOptions(o)}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Bring the cluster to what the profile says: generate, provision, apply, bootstrap, Longhorn",
		Long: `up runs every stage in order, each observing before it acts:

  validate   the profile (all problems at once)
  generate   clusters/<name>/: secrets bundle (created once), node configs, talosconfig, Longhorn files
  provision  the Proxmox VMs (static IPs via cloud-init), created or updated and started
  apply      each node's Talos config (maintenance mode: install; configured: only when it differs)
  bootstrap  etcd exactly once, health, the kubeconfig (stored encrypted)
  longhorn   the chart at longhorn.version with the S3 backup target (one minor at a time when it
             has to upgrade), RecurringJobs, StorageClasses, volume labels

It prints one line per phase and per node with the elapsed time. It is safe to interrupt (Ctrl-C)
at any point: nothing is lost and running it again resumes where it stopped. On a cluster that is
in place it changes nothing: no Proxmox change, no Talos apply, no Helm upgrade, no file written.

With --commit it commits what it wrote under clusters/<name>/ with a message saying what changed.`,
		Example: `  talforge up -p profiles/tazlab.yaml
  talforge up -p profiles/ha.yaml --commit --verbose`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := u.output.validate(); err != nil {
				return err
			}
			opts, err := u.options(u.output.progress(u.out, u.errOut))
			if err != nil {
				return err
			}
			opts.Commit = u.commit
			if !u.yes {
				opts.ConfirmAdopt = u.confirmAdopt
			}
			res, err := lifecycle.Up(cmd.Context(), opts)
			if err != nil {
				return lifecycleError(err)
			}
			return u.output.write(u.out, res, func(w io.Writer) {
				what := "changes applied"
				if !res.Changed() {
					what = "nothing to do: everything was in place"
				}
				fmt.Fprintf(w, "\ncluster %s is up (%s) in %s\n", res.Cluster.Metadata.Name, what, res.Took.Round(100*time.Millisecond))
				if res.CriticalPath != nil {
					fmt.Fprintln(w, res.CriticalPath)
				}
			})
		},
	}
	cmd.Flags().BoolVar(&u.commit, "commit", false, "commit what changed under clusters/<name>/ with git")
	cmd.Flags().BoolVar(&u.yes, "yes", false, "take over VMs made by hand (talforge import's adopted nodes) without asking")
	u.output.addFlag(cmd)
	u.addFlags(cmd)
	return cmd
}

// confirmAdopt asks, on a terminal, before up tags VMs made by hand as talforge's; elsewhere it
// refuses and names --yes.
func (u *upOptions) confirmAdopt(vms []string) error {
	what := fmt.Sprintf("the plan takes over %d VM(s) made by hand (%s): talforge adds its ownership tags and from then on manages their tags, CPU, memory and disk sizes",
		len(vms), strings.Join(vms, ", "))
	if terminal(u.in) == nil {
		return fmt.Errorf("%w: %s; run `talforge plan` to see it, then `talforge up --yes`", lifecycle.ErrNotConfirmed, what)
	}
	fmt.Fprintf(u.errOut, "%s.\nType yes to go on: ", what)
	line, _ := bufio.NewReader(u.in).ReadString('\n')
	if strings.TrimSpace(line) != "yes" {
		return fmt.Errorf("%w: nothing was changed", lifecycle.ErrNotConfirmed)
	}
	return nil
}
