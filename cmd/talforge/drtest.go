package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/lifecycle"
)

func newDRTestCmd(o *rootOptions) *cobra.Command {
	l := newLifecycleOptions(o)
	var (
		dr     lifecycle.DRTestOptions
		output string
	)
	cmd := &cobra.Command{
		Use:   "dr-test [VOLUME...]",
		Short: "Prove a volume can be restored: back it up, restore the backup into a new volume, compare",
		Long: `dr-test turns the hope of backups into the certainty of recovery, on the live cluster. For each
volume (default: every volume the profile declares) it:

  1. takes a backup to the S3 backup target (a Longhorn snapshot, then a backup of it) and waits;
  2. restores that backup into a new volume <volume>-drtest-<random>, and times it;
  3. compares what Longhorn reports: the restore finished and is not faulted, the restored
     volume has the source's size and the backup's, and it came from exactly this backup;
  4. deletes the test volume (--keep leaves it for inspection).

The source volume is only snapshotted; workloads keep running. Exit code 1 when a volume fails.`,
		Example: `  talforge dr-test -p profiles/tazlab.yaml
  talforge dr-test -p profiles/tazlab.yaml traefik-data --keep --output json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return &flagError{fmt.Errorf("--output must be text or json, got %q", output)}
			}
			progress := l.out
			if output == "json" {
				progress = l.errOut
			}
			opts, err := l.options(progress)
			if err != nil {
				return err
			}
			dr.Volumes = args
			results, err := lifecycle.DRTest(cmd.Context(), opts, dr)
			if output == "json" && results != nil {
				enc := json.NewEncoder(l.out)
				enc.SetIndent("", "  ")
				if encErr := enc.Encode(results); encErr != nil && err == nil {
					err = encErr
				}
			}
			if err != nil {
				return lifecycleError(err)
			}
			if output == "text" {
				for _, r := range results {
					fmt.Fprintf(l.out, "\n%s: restored backup %s into %s in %s (time to restore)\n", r.Volume, r.Backup.Name, r.Restored, r.RestoreTook.Round(1e6))
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
	cmd.Flags().BoolVar(&dr.Keep, "keep", false, "keep the restored test volumes")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	l.addFlags(cmd)
	return cmd
}
