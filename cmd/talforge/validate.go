package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/lifecycle"
)

func newValidateCmd(o *rootOptions) *cobra.Command {
	var (
		online bool
		output outputOptions
	)
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
			if err := output.validate(); err != nil {
				return err
			}

			path, err := o.profilePath()
			if err != nil {
				return err
			}

			rep, err := lifecycle.Validate(cmd.Context(), lifecycle.Options{Profile: path}, online)
			if rep == nil {
				return err
			}

			if werr := output.write(o.out, rep, func(w io.Writer) { printValidation(w, o.errOut, rep, online) }); werr != nil && err == nil {
				err = werr
			}

			return err
		},
	}
	output.addFlag(cmd)
	cmd.Flags().BoolVar(&online, "online", false, "also check the Longhorn S3 backup target with its credentials (writes and deletes a probe object)")
	return cmd
}

// printValidation prints the warnings, the summary and the online steps.
func printValidation(w, errOut io.Writer, rep *lifecycle.ValidateReport, online bool) {
	for _, warning := range rep.Warnings {
		fmt.Fprintln(errOut, "warning:", warning)
	}

	fmt.Fprintf(w, "%s: valid — cluster %s, %d control plane(s), %d worker(s), Talos %s (contract %s), Kubernetes %s, schematic %s\n",
		rep.File, rep.Cluster, rep.ControlPlanes, rep.Workers, rep.Talos, rep.Contract, rep.Kubernetes, rep.Schematic)

	c := rep.Rendered.Cluster

	switch {
	case !online:
	case c.Longhorn == nil || c.Longhorn.Backup == nil || c.Longhorn.Backup.Target == "":
		fmt.Fprintln(w, "online: the profile has no longhorn.backup.target, nothing to check")
	case rep.Online != nil:
		for _, s := range rep.Online.Steps {
			fmt.Fprintf(w, "online: %-14s %-7s %s\n", s.Name, s.Status, s.Detail)
		}

		if rep.Online.Err() == nil {
			fmt.Fprintf(w, "online: backup target %s works with the credentials in %s\n", c.Longhorn.Backup.Target, c.Longhorn.Backup.CredentialsFile)
		}
	}
}
