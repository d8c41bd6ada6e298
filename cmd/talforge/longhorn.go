package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/backuptarget"
	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/sopsfile"
)

type longhornOptions struct {
	*rootOptions
	kubeconfig  string
	chartCache  string
	helmTimeout time.Duration
	waitTimeout time.Duration
	// skipPreflight leaves out the backup target preflight before install and upgrade.
	skipPreflight bool
}

func newLonghornCmd(o *rootOptions) *cobra.Command {
	l := &longhornOptions{rootOptions: o}
	cmd := &cobra.Command{
		Use:   "longhorn",
		Short: "Install, upgrade, repair and check Longhorn (Helm SDK; never uninstalls)",
		Long: `longhorn manages Longhorn on the cluster with the Helm SDK, following Longhorn's source:
the S3 backup target is configured from the first install (defaultBackupStore, BackupTarget
"default"), upgrades go one minor at a time, and nothing ever uninstalls Longhorn or deletes its
namespace or CRDs. Every command refuses to run while Longhorn's deleting-confirmation-flag is
"true".

The kubeconfig is clusters/<name>/kubeconfig.sops.yaml, decrypted in memory, unless --kubeconfig
names a plain file. The S3 credentials come from longhorn.backup.credentialsFile, decrypted in
memory and written only into the cluster's Secret.

Before install and upgrade touch Helm, the backup target is checked the way Longhorn will use it
(keys, bucket, region, a probe object written, read back and deleted); a failure says which step
and how to fix it. --skip-preflight leaves the check out.`,
		Args: cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVar(&l.kubeconfig, "kubeconfig", "", "plain kubeconfig file (default: clusters/<name>/kubeconfig.sops.yaml, decrypted in memory)")
	cmd.PersistentFlags().StringVar(&l.chartCache, "chart-cache", "", "chart cache directory (default: <user cache dir>/talforge/charts)")
	cmd.PersistentFlags().DurationVar(&l.helmTimeout, "helm-timeout", 15*time.Minute, "limit for each Helm action, hooks included")
	cmd.PersistentFlags().DurationVar(&l.waitTimeout, "timeout", 30*time.Minute, "limit for each health gate and for the backup target to become available")
	cmd.PersistentFlags().BoolVar(&l.skipPreflight, "skip-preflight", false, "do not check the S3 backup target (keys, bucket, region, write/read/delete) before install and upgrade")
	cmd.AddCommand(l.installCmd(), l.upgradeCmd(), l.reinstallCmd(), l.statusCmd(), l.driftCmd())
	return cmd
}

// client loads the profile and the kubeconfig and connects.
func (l *longhornOptions) client(ctx context.Context) (*longhorn.Client, *profile.Cluster, error) {
	c, err := l.loadProfile(ctx)
	if err != nil {
		return nil, nil, err
	}
	if c.Longhorn == nil {
		return nil, nil, invalid(fmt.Errorf("%s has no longhorn section: add one to manage Longhorn", c.File()))
	}
	kubeconfig, err := l.readKubeconfig(c)
	if err != nil {
		return nil, nil, err
	}
	opts := longhorn.Options{
		Kubeconfig:          kubeconfig,
		ChartCacheDir:       l.chartCache,
		HelmTimeout:         l.helmTimeout,
		BackupTargetTimeout: min(l.waitTimeout, 5*time.Minute),
		HealthTimeout:       l.waitTimeout,
		Log:                 prefixWriter{l.errOut},
	}
	if !l.skipPreflight {
		opts.Preflight = backupPreflight
	}
	cl, err := longhorn.New(c, opts)
	if err != nil {
		return nil, nil, err
	}
	return cl, c, nil
}

func (l *longhornOptions) readKubeconfig(c *profile.Cluster) ([]byte, error) {
	if l.kubeconfig != "" {
		data, err := os.ReadFile(l.kubeconfig)
		if err != nil {
			return nil, &flagError{fmt.Errorf("--kubeconfig: %w", err)}
		}
		return data, nil
	}
	path := filepath.Join(c.OutputDir(), bootstrap.KubeconfigFile)
	data, err := sopsfile.DecryptFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: bootstrap the cluster first (`talforge bootstrap`), or pass --kubeconfig PATH", path)
	}
	return data, err
}

func (l *longhornOptions) installCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "install",
		Short: "Install Longhorn, or converge it on the profile at the installed version",
		Long: `install creates namespace longhorn-system (privileged Pod Security) and the S3 credentials
Secret, installs the chart at longhorn.version (or, when it is installed already, upgrades it in
place if the values changed and does nothing otherwise), applies the RecurringJobs,
StorageClasses and volume labels, and waits until BackupTarget "default" is available.
It never changes the installed version: use 'talforge longhorn upgrade'.`,
		Example: `  talforge longhorn install -p profiles/tazlab.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, _, err := l.client(cmd.Context())
			if err != nil {
				return err
			}
			res, err := cl.Install(cmd.Context())
			if err != nil {
				return longhornError(err)
			}
			switch res.Action {
			case "unchanged":
				fmt.Fprintf(l.out, "Longhorn %s is up to date (Helm revision %d)\n", res.Version, res.Revision)
			default:
				fmt.Fprintf(l.out, "Longhorn %s: %s done (Helm revision %d); backups go to the BackupTarget \"default\"\n", res.Version, res.Action, res.Revision)
			}
			return nil
		},
	}
}

func (l *longhornOptions) upgradeCmd() *cobra.Command {
	var to string
	var plan bool
	cmd := &cobra.Command{
		Use:   "upgrade [--to X.Y.Z] [--plan]",
		Short: "Upgrade Longhorn one minor at a time, with health gates between steps",
		Long: `upgrade goes from the installed version to --to (default: longhorn.version) through the latest
patch of every minor in between (1.8.x -> 1.9.2 -> 1.10.x), because Longhorn refuses to skip a
minor. Before the first step and after each one it waits until the manager and the deployments
are rolled out, every attached volume is healthy and no replica rebuild runs. Before entering
1.10 it checks that no Longhorn CRD still stores v1beta1. Downgrades are refused.

With --plan it prints the steps and changes nothing (exit 2 when there are steps).`,
		Example: `  talforge longhorn upgrade -p profiles/tazlab.yaml --to 1.10.2 --plan
  talforge longhorn upgrade -p profiles/tazlab.yaml --to 1.10.2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, c, err := l.client(cmd.Context())
			if err != nil {
				return err
			}
			if to == "" {
				to = c.Longhorn.Version
			}
			if plan {
				p, err := cl.Plan(cmd.Context(), to)
				if err != nil {
					return longhornError(err)
				}
				fmt.Fprintln(l.out, p)
				if len(p.Steps) > 0 {
					return &exitError{code: exitChanges}
				}
				return nil
			}
			p, err := cl.Upgrade(cmd.Context(), to)
			if err != nil {
				return longhornError(err)
			}
			if len(p.Steps) == 0 {
				fmt.Fprintln(l.out, p)
				return nil
			}
			fmt.Fprintf(l.out, "Longhorn upgraded %s -> %s\n", p.From, p.Steps[len(p.Steps)-1])
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "target chart version (default: longhorn.version)")
	cmd.Flags().BoolVar(&plan, "plan", false, "print the upgrade steps and change nothing")
	return cmd
}

func (l *longhornOptions) reinstallCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reinstall",
		Short: "Repair Longhorn's control plane without losing data (upgrade --install at the installed version)",
		Long: `reinstall re-applies the chart at the version that is installed, which Longhorn's pre-upgrade
check accepts: deleted components (manager, driver, CRDs, ConfigMaps) come back and every custom
resource — volumes, backups, settings — is kept. It never uninstalls. If the Helm release record
itself is gone, it installs at the version Longhorn reports and adopts the existing objects.`,
		Example: `  talforge longhorn reinstall -p profiles/tazlab.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, _, err := l.client(cmd.Context())
			if err != nil {
				return err
			}
			res, err := cl.Reinstall(cmd.Context())
			if err != nil {
				return longhornError(err)
			}
			fmt.Fprintf(l.out, "Longhorn %s re-applied (Helm revision %d); volumes and backups untouched\n", res.Version, res.Revision)
			return nil
		},
	}
}

func (l *longhornOptions) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "status",
		Short:   "Show the Longhorn release, the safety flag, the backup target and the health gates",
		Example: `  talforge longhorn status -p profiles/tazlab.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, _, err := l.client(cmd.Context())
			if err != nil {
				return err
			}
			st, err := cl.Status(cmd.Context())
			if err != nil {
				return err
			}
			st.Write(l.out)
			return nil
		},
	}
}

func (l *longhornOptions) driftCmd() *cobra.Command {
	var reconcile bool
	cmd := &cobra.Command{
		Use:   "drift [--reconcile]",
		Short: "Compare Longhorn's Settings, BackupTarget, RecurringJobs and StorageClasses with the profile",
		Long: `drift compares the live Helm values, credentials Secret, the Settings talforge owns, BackupTarget
"default", RecurringJobs, StorageClasses and volume recurring-job labels with the profile, at the
installed version. It exits 2 when something differs. Secret values are never shown.

With --reconcile it puts everything back as the profile says.`,
		Example: `  talforge longhorn drift -p profiles/tazlab.yaml
  talforge longhorn drift -p profiles/tazlab.yaml --reconcile`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, _, err := l.client(cmd.Context())
			if err != nil {
				return err
			}
			if reconcile {
				fixed, err := cl.Reconcile(cmd.Context())
				if err != nil {
					return longhornError(err)
				}
				for _, d := range fixed {
					fmt.Fprintf(l.out, "fixed   %s\n", d)
				}
				fmt.Fprintf(l.out, "%d difference(s) reconciled\n", len(fixed))
				return nil
			}
			diffs, err := cl.Drift(cmd.Context())
			if err != nil {
				return longhornError(err)
			}
			for _, d := range diffs {
				fmt.Fprintf(l.out, "drift   %s\n", d)
			}
			if len(diffs) > 0 {
				fmt.Fprintf(l.out, "%d difference(s); run with --reconcile to fix them\n", len(diffs))
				return &exitError{code: exitChanges}
			}
			fmt.Fprintln(l.out, "no drift: Longhorn matches the profile")
			return nil
		},
	}
	cmd.Flags().BoolVar(&reconcile, "reconcile", false, "fix the differences")
	return cmd
}

// longhornError marks refused user values as invalid input (exit 3) and says how to skip
// a failed backup target preflight.
func longhornError(err error) error {
	var (
		ve *longhorn.ValuesError
		pe *backuptarget.PreflightError
	)
	switch {
	case errors.As(err, &ve):
		return invalid(err)
	case errors.As(err, &pe):
		return fmt.Errorf("%w (to go on without the check: --skip-preflight)", err)
	}
	return err
}

// prefixWriter prefixes progress lines for stderr.
type prefixWriter struct{ w io.Writer }

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := fmt.Fprintf(p.w, "longhorn: %s", b); err != nil {
		return 0, err
	}
	return len(b), nil
}
