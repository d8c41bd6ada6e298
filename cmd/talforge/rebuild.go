package main

import (
	"bufio"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/lifecycle"
)

func newRebuildCmd(o *rootOptions) *cobra.Command {
	l := newLifecycleOptions(o)
	var (
		ro     lifecycle.RebuildOptions
		commit bool
	)
	cmd := &cobra.Command{
		Use:   "rebuild",
		Short: "Tabula rasa: destroy the cluster's VMs and re-create the cluster from Git, restoring volumes from S3",
		Long: `rebuild re-creates the cluster from nothing but what Git holds:

  1. plan: what will be destroyed and re-created; the newest backup of every declared claim
     (longhorn.volumes), read straight from S3; while the old cluster answers, it checks that
     Longhorn runs the profile's version and backs up to the profile's target;
  2. confirmation: type the cluster name (or pass --yes);
  3. --backup-first: back up every Longhorn volume and wait for the backups;
     then, right before anything is destroyed, every declared claim must have a backup the
     bucket holds whole (its config and every block), unless --keep-data-disks keeps the data
     on the disks: otherwise rebuild refuses, whether or not the old cluster answers, unless
     --accept-data-loss says to destroy that data;
  4. destroy the VMs that carry the cluster's tag (--keep-data-disks keeps the Longhorn data
     disks for the re-created VMs);
  5. up: the VMs again with the same IPs and MACs, the same secrets bundle (byte for byte:
     nothing Git holds is regenerated), a new etcd, Longhorn at the same version with the same
     backup target;
  6. restore every declared claim from its latest backup (found by the claim Longhorn records in
     each backup) into a Longhorn volume and PersistentVolume named as before and the same
     PersistentVolumeClaim bound to it, before any workload starts, so workloads find their
     data instead of an empty volume.

If it is interrupted after the destroy, run it again with --resume: it skips the backup and the
destroy and continues.`,
		Example: `  talforge rebuild -p profiles/tazlab.yaml --backup-first --keep-data-disks
  talforge rebuild -p profiles/tazlab.yaml --resume --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := l.options(l.out)
			if err != nil {
				return err
			}
			opts.Commit = commit
			in := bufio.NewReader(l.in)
			ro.Confirm = func(prompt string) (string, error) {
				fmt.Fprint(l.errOut, prompt)
				line, err := in.ReadString('\n')
				if line != "" {
					err = nil
				}
				return line, err
			}
			res, err := lifecycle.Rebuild(cmd.Context(), opts, ro)
			if err != nil {
				return lifecycleError(err)
			}
			fmt.Fprintf(l.out, "\ncluster %s rebuilt in %s: %d VM(s) re-created, %d volume(s) restored\n",
				res.Plan.Cluster, res.Took.Round(100*time.Millisecond), len(res.Up.Cluster.Nodes), len(res.Restored))
			return nil
		},
	}
	cmd.Flags().BoolVar(&ro.Yes, "yes", false, "do not ask for the typed confirmation")
	cmd.Flags().BoolVar(&ro.BackupFirst, "backup-first", false, "back up every Longhorn volume, and wait, before destroying anything")
	cmd.Flags().BoolVar(&ro.KeepDataDisks, "keep-data-disks", false, "keep the Longhorn data disks for the re-created VMs")
	cmd.Flags().BoolVar(&ro.AcceptDataLoss, "accept-data-loss", false, "DESTROY the data of declared claims that have no backup talforge can verify in S3 (without it, rebuild refuses)")
	cmd.Flags().BoolVar(&ro.Resume, "resume", false, "continue an interrupted rebuild whose VMs are already destroyed (no backup, no destroy)")
	cmd.Flags().BoolVar(&commit, "commit", false, "commit what changed under clusters/<name>/ with git")
	l.addFlags(cmd)
	return cmd
}
