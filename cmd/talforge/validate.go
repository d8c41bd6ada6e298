package main

import (
	"context"
	"fmt"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/backuptarget"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/machineconfig"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/schematic"
	tfsecrets "github.com/talforge/talforge/pkg/secrets"
	"github.com/talforge/talforge/pkg/sopsfile"
)

func newValidateCmd(o *rootOptions) *cobra.Command {
	var online bool
	cmd := &cobra.Command{
		Use:   "validate [--online]",
		Short: "Check a profile and render every node's config without writing anything",
		Long: `validate loads the profile strictly, runs every semantic check, and renders each node's
machine config with Talos' machinery (with a throw-away secrets bundle) so that patches are
checked too. It needs no keys and writes nothing.

With --online it also checks the Longhorn backup target the way Longhorn will use it: it
decrypts longhorn.backup.credentialsFile in memory and checks that the keys are accepted, the
bucket exists and lists, the URL's region is the bucket's, and that a probe object can be
written, read back and deleted (nothing is left behind). It exits 1 naming the failed step and
the fix.`,
		Example: `  talforge validate -p profiles/tazlab.yaml
  talforge validate -p profiles/tazlab.yaml --online`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.loadProfile(cmd.Context())
			if err != nil {
				return err
			}

			// A secret input file in clear is an error, not something to find at provision time.
			if err := tfsecrets.CheckInputs(c); err != nil {
				return err
			}

			img, err := schematic.ForCluster(c)
			if err != nil {
				return err
			}

			contract, err := config.ParseContractFromVersion(c.Talos.Version)
			if err != nil {
				return err
			}

			// Validation does not depend on secret values: a throw-away bundle needs no keys. Its
			// service-account key is ECDSA (a millisecond) rather than RSA (up to seconds, in one
			// call that a signal cannot interrupt): validation does not depend on the key type.
			bundle, err := secrets.NewBundle(secrets.NewFixedClock(time.Now()), contract, secrets.WithECDSAServiceAccountKey())
			if err != nil {
				return err
			}

			gen, err := machineconfig.New(cmd.Context(), c, img, bundle)
			if err != nil {
				return err
			}

			cfgs, err := gen.All(cmd.Context())
			if err != nil {
				return err
			}

			for _, cfg := range cfgs {
				for _, w := range cfg.Warnings {
					fmt.Fprintf(o.errOut, "warning: node %s: %s\n", cfg.Node.Name, w)
				}
			}

			fmt.Fprintf(o.out, "%s: valid — cluster %s, %d control plane(s), %d worker(s), Talos %s (contract %s), Kubernetes %s, schematic %s\n",
				c.File(), c.Metadata.Name, len(c.ControlPlanes()), len(c.Workers()), c.Talos.Version, gen.Contract(), c.Talos.Kubernetes, img.ID)

			if online {
				return validateOnline(cmd.Context(), o, c)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&online, "online", false, "also check the Longhorn S3 backup target with its credentials (writes and deletes a probe object)")
	return cmd
}

// validateOnline runs the backup target preflight and prints its steps.
func validateOnline(ctx context.Context, o *rootOptions, c *profile.Cluster) error {
	if c.Longhorn == nil || c.Longhorn.Backup == nil || c.Longhorn.Backup.Target == "" {
		fmt.Fprintln(o.out, "online: the profile has no longhorn.backup.target, nothing to check")
		return nil
	}
	creds, err := longhorn.BackupCredentials(c, sopsfile.DecryptFile)
	if err != nil {
		return err
	}
	backuptarget.QuietLogs()
	r, err := backuptarget.Preflight(ctx, c.Longhorn.Backup.Target, creds)
	for _, s := range r.Steps {
		fmt.Fprintf(o.out, "online: %-14s %-7s %s\n", s.Name, s.Status, s.Detail)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(o.out, "online: backup target %s works with the credentials in %s\n", c.Longhorn.Backup.Target, c.Longhorn.Backup.CredentialsFile)
	return nil
}
