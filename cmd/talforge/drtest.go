package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/lifecycle"
	"github.com/talforge/talforge/pkg/restore"
)

func newDRTestCmd(o *rootOptions) *cobra.Command {
	l := newLifecycleOptions(o)
	var (
		dr     lifecycle.DRTestOptions
		output outputOptions
	)
	cmd := &cobra.Command{
		Use:   "dr-test [NAMESPACE/CLAIM | VOLUME ...]",
		Short: "Prove a claim can be restored: back it up, restore the backup into a new volume, compare the data",
		Long: `dr-test turns the hope of backups into the certainty of recovery, on the live cluster. For each
claim (default: every claim the profile declares in longhorn.volumes; a bare Longhorn volume name
also works) it:

  1. finds the Longhorn volume behind the claim (PVC → PV → CSI volume handle);
  2. takes a backup to the S3 backup target (a snapshot, then a backup of it that records the
     claim, as Longhorn's own backups do) and waits;
  3. restores that backup into a new volume <volume>-drtest-<random>, and times it;
  4. checks what Longhorn reports (restore finished, sizes, source backup, claim recorded), and
     with --verify-data compares the data: a Job mounts, read-only, the restored volume and a clone
     of the very snapshot that was backed up, and compares every file's SHA-256;
  5. deletes what it created — Job, claims, volumes, the on-demand backup (also from the bucket)
     and its snapshot — checking before each delete that this run created it (--keep leaves them).

The source volume is only snapshotted; workloads keep running. Exit code 1 when a check fails.`,
		Example: `  talforge dr-test -p profiles/tazlab.yaml --verify-data
  talforge dr-test -p profiles/tazlab.yaml traefik/traefik --keep --output json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.validate(); err != nil {
				return err
			}
			opts, err := l.options(output.progress(l.out, l.errOut))
			if err != nil {
				return err
			}
			dr.Targets = args
			results, err := lifecycle.DRTest(cmd.Context(), opts, dr)
			if output.json() && results != nil {
				if encErr := writeJSON(l.out, results); encErr != nil && err == nil {
					err = encErr
				}
			}
			if err != nil {
				return lifecycleError(err)
			}
			if !output.json() {
				for _, r := range results {
					name := r.Volume
					if r.Claim != "" {
						name = r.Claim + " (volume " + r.Volume + ")"
					}
					fmt.Fprintf(l.out, "\n%s: restored backup %s into %s: %d bytes in %s (time to restore)\n", name, r.Backup.Name, r.Restored, r.Bytes, r.RestoreTook.Round(1e6))
					for _, c := range r.Checks {
						mark := "ok  "
						if !c.OK {
							mark = "FAIL"
						}
						fmt.Fprintf(l.out, "  %s %-16s %s\n", mark, c.Name, c.Detail)
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dr.Keep, "keep", false, "keep what the test created (restored volume, backup, snapshot, Job) for inspection")
	cmd.Flags().BoolVar(&dr.VerifyData, "verify-data", false, "compare the restored data with the backed-up snapshot in a Job (needs the image below on the nodes)")
	cmd.Flags().StringVar(&dr.VerifyImage, "verify-image", restore.DefaultVerifyImage, "image of the data-verification Job (sh, find, sha256sum, cmp)")
	output.addFlag(cmd)
	l.addFlags(cmd)
	return cmd
}
