package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/lifecycle"
)

func newStatusCmd(o *rootOptions) *cobra.Command {
	l := newLifecycleOptions(o)
	var output outputOptions
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every node's VM, Talos stage, etcd membership and Kubernetes node, and Longhorn's backups",
		Long: `status asks every component and shows, per node, the Proxmox VM (VMID, running or not), the Talos
API (configured or maintenance mode, machine stage), etcd membership and the Kubernetes node (Ready);
then Longhorn's version, whether the backup target is available, and the last backup of every
volume the profile declares or Longhorn has.

What cannot be reached is listed under "Could not observe" instead of failing the command.
--output json gives the same as a JSON document.`,
		Example: `  talforge status -p profiles/tazlab.yaml
  talforge status -p profiles/tazlab.yaml --output json | jq '.longhorn.volumes'`,
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
				opts.Talos.CallTimeout = 5 * time.Second
			} else {
				opts.Talos.CallTimeout = l.talos.timeout
			}
			st, err := lifecycle.Status(cmd.Context(), opts)
			if err != nil {
				return lifecycleError(err)
			}
			return output.write(l.out, st, st.Print)
		},
	}
	output.addFlag(cmd)
	l.addFlags(cmd)
	return cmd
}
