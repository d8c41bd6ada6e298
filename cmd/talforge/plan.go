package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/lifecycle"
)

func newPlanCmd(o *rootOptions) *cobra.Command {
	l := newLifecycleOptions(o)
	var output outputOptions
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show what `talforge up` would change, and change nothing (exit 2 when it would change something)",
		Long: `plan observes the cluster the way up does and reports what up would do:

  - the Proxmox plan (+ create, ~ update with a field-level diff, = unchanged);
  - per node, the Talos config against the live node: unchanged, would install (maintenance
    mode), or would apply, with a diff in which every secret value is redacted;
  - whether etcd is bootstrapped or would be;
  - the Longhorn steps: install, the upgrade ladder (one minor at a time), or the drift of
    Settings, BackupTarget, RecurringJobs and StorageClasses from the profile.

Nothing is written, sent or applied. Nodes whose VM does not run are not waited for; a node
that runs but does not answer within --timeout is an error.

Exit codes: 0 nothing would change; 2 something would change (for CI); 1 something could not be
observed, or a VM is in conflict (the Proxmox plan is printed first: up would provision the
other VMs and stop there); 3 invalid input.`,
		Example: `  talforge plan -p profiles/tazlab.yaml
  talforge plan -p profiles/ha.yaml --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.validate(); err != nil {
				return err
			}
			opts, err := l.options(l.errOut)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("timeout") {
				opts.Talos.APITimeout, opts.Talos.BootstrapTimeout = 30*time.Second, 30*time.Second
			}
			rep, err := lifecycle.Plan(cmd.Context(), opts)
			if rep != nil { // with VMs in conflict: the plan for the rest, then the error
				if werr := output.write(l.out, rep, rep.Print); werr != nil && err == nil {
					err = werr
				}
			}
			if err != nil {
				return lifecycleError(err)
			}
			if rep.Changes {
				return &exitError{code: exitChanges} // "would change", already reported
			}
			return nil
		},
	}
	output.addFlag(cmd)
	l.addFlags(cmd)
	return cmd
}
