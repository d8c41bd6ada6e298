package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/backuptarget"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/sopsfile"
)

func newBackupCmd(o *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Read and check the Longhorn backup target straight from S3",
		Long: `backup reads longhorn.backup.target straight from S3 with Longhorn's own backupstore library and
the keys in longhorn.backup.credentialsFile (decrypted in memory). It needs no cluster: it works
when the cluster that wrote the backups is gone, which is when it matters.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newBackupListCmd(o), newBackupVerifyCmd(o))
	return cmd
}

// backupTarget loads the profile and returns its backup target and credentials.
func (o *rootOptions) backupTarget(ctx context.Context) (*profile.Cluster, string, backuptarget.Credentials, error) {
	c, err := o.loadProfile(ctx)
	if err != nil {
		return nil, "", nil, err
	}
	if c.Longhorn == nil || c.Longhorn.Backup == nil || c.Longhorn.Backup.Target == "" {
		return nil, "", nil, invalid(fmt.Errorf("%s: longhorn.backup.target is not set: there is no backup target to read", c.File()))
	}
	creds, err := longhorn.BackupCredentials(c, sopsfile.DecryptFile)
	if err != nil {
		return nil, "", nil, err
	}
	// Longhorn's library logs every config it loads through logrus' standard logger.
	backuptarget.QuietLogs()
	return c, c.Longhorn.Backup.Target, creds, nil
}

func newBackupListCmd(o *rootOptions) *cobra.Command {
	var output outputOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the backup volumes and backups in the backup target, newest first",
		Long: `list shows every backup volume in longhorn.backup.target with its backups, newest first, and
the claim (namespace/PVC) each backup was taken of, as Longhorn records it in the backup's
KubernetesStatus label. --output json gives every field.`,
		Example: `  talforge backup list -p profiles/tazlab.yaml
  talforge backup list -p profiles/tazlab.yaml -o json | jq '.volumes[].backups[0].url'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.validate(); err != nil {
				return err
			}
			_, target, creds, err := o.backupTarget(cmd.Context())
			if err != nil {
				return err
			}
			l, err := backuptarget.List(cmd.Context(), target, creds)
			if err != nil {
				return err
			}
			return output.write(o.out, l, func(w io.Writer) { printListing(w, l) })
		},
	}
	output.addFlag(cmd)
	return cmd
}

func printListing(w io.Writer, l *backuptarget.Listing) {
	fmt.Fprintf(w, "backup target %s: %d backup volume(s)\n", l.Target, len(l.Volumes))
	for _, v := range l.Volumes {
		fmt.Fprintf(w, "\nvolume %s  size %s  %d backup(s)\n", v.Name, humanBytes(v.Size), len(v.Backups))
		for _, p := range v.Problems {
			fmt.Fprintf(w, "  problem: %s\n", p)
		}
		for _, b := range v.InProgress {
			fmt.Fprintf(w, "  in progress or abandoned: %s\n", b)
		}
		if len(v.Backups) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  BACKUP\tCREATED\tSNAPSHOT\tSIZE\tBLOCKS\tCLAIM")
		for _, b := range v.Backups {
			claim := b.ClaimName()
			if claim == "" {
				claim = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%s\n", b.Name, b.Created.Format(time.RFC3339), b.Snapshot, humanBytes(b.Size), b.BlockCount, claim)
		}
		_ = tw.Flush()
	}
}

func newBackupVerifyCmd(o *rootOptions) *cobra.Command {
	var (
		output   outputOptions
		readData bool
		volumes  []string
	)
	cmd := &cobra.Command{
		Use:   "verify [--read-data] [--volume NAME...]",
		Short: "Check that every backup in the backup target can be restored",
		Long: `verify checks, for every backup volume in longhorn.backup.target (or those named with --volume),
that volume.cfg and every backup config parse and that every block a backup references exists
and is not empty. With --read-data it also downloads every block, decompresses it and checks it
against its checksum, as a restore would (this reads the whole target). A block shared by
several backups is checked once.

It prints, per claim, the newest backup (claims the profile declares and claims the backups
name), then every problem naming volume, backup and block, and exits 1 if there is any.`,
		Example: `  talforge backup verify -p profiles/tazlab.yaml
  talforge backup verify -p profiles/tazlab.yaml --read-data --volume pvc-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0
  talforge backup verify -p profiles/tazlab.yaml -o json | jq '.problems'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.validate(); err != nil {
				return err
			}
			c, target, creds, err := o.backupTarget(cmd.Context())
			if err != nil {
				return err
			}
			r, err := backuptarget.Verify(cmd.Context(), target, creds, backuptarget.VerifyOptions{ReadData: readData, Volumes: volumes})
			if err != nil {
				return err
			}
			claims := claimRows(c, r.Listing)
			view := verifyJSON{Report: r, OK: r.OK(), Claims: claims, Unclaimed: unclaimed(r.Listing)}
			if err := output.write(o.out, view, func(w io.Writer) { printVerify(w, r, claims, view.Unclaimed) }); err != nil {
				return err
			}
			if !r.OK() {
				if !output.json() {
					fmt.Fprintf(o.errOut, "error: %d problem(s) in backup target %s\n", len(r.Problems), r.Target)
				}
				return &exitError{code: exitFailure}
			}
			return nil
		},
	}
	output.addFlag(cmd)
	cmd.Flags().BoolVar(&readData, "read-data", false, "download every block and check its content against its checksum")
	cmd.Flags().StringArrayVar(&volumes, "volume", nil, "check only this backup volume (repeatable)")
	return cmd
}

// claimRow is one claim of the per-claim table: declared in the profile, named by backups,
// or both.
type claimRow struct {
	Namespace string               `json:"namespace"`
	Claim     string               `json:"claim"`
	Declared  bool                 `json:"declared"`
	Latest    *backuptarget.Backup `json:"latest"`
	Backups   int                  `json:"backups"`
}

// claimRows merges the profile's declared claims with the claims the backups name (their
// KubernetesStatus label), declared ones first in profile order.
func claimRows(c *profile.Cluster, l *backuptarget.Listing) []claimRow {
	var rows []claimRow
	seen := map[string]bool{}
	found := map[string]backuptarget.Claim{}
	for _, cl := range l.Claims() {
		found[cl.Namespace+"/"+cl.Name] = cl
	}
	if c.Longhorn != nil {
		for _, v := range c.Longhorn.Volumes {
			name := v.Claim
			if name == "" {
				name = v.Name
			}
			key := v.Namespace + "/" + name
			if seen[key] {
				continue
			}
			seen[key] = true
			row := claimRow{Namespace: v.Namespace, Claim: name, Declared: true}
			if cl, ok := found[key]; ok {
				row.Latest, row.Backups = cl.Latest, cl.Backups
			}
			rows = append(rows, row)
		}
	}
	for _, cl := range l.Claims() {
		if key := cl.Namespace + "/" + cl.Name; !seen[key] {
			seen[key] = true
			rows = append(rows, claimRow{Namespace: cl.Namespace, Claim: cl.Name, Latest: cl.Latest, Backups: cl.Backups})
		}
	}
	return rows
}

// unclaimed are the newest backups of backup volumes whose backups name no claim.
func unclaimed(l *backuptarget.Listing) []*backuptarget.Backup {
	var out []*backuptarget.Backup
	for _, v := range l.Volumes {
		if b := l.LatestForVolume(v.Name); b != nil && b.Claim == nil {
			out = append(out, b)
		}
	}
	return out
}

type verifyJSON struct {
	*backuptarget.Report
	OK        bool                   `json:"ok"`
	Claims    []claimRow             `json:"claims"`
	Unclaimed []*backuptarget.Backup `json:"unclaimed"`
}

func printVerify(w io.Writer, r *backuptarget.Report, claims []claimRow, noClaim []*backuptarget.Backup) {
	what := "existence and size of each block"
	if r.ReadData {
		what = fmt.Sprintf("content of each block, %s read", humanBytes(r.BytesRead))
	}
	fmt.Fprintf(w, "backup target %s: checked %d volume(s), %d backup(s), %d block(s) (%s)\n", r.Target, r.Volumes, r.Backups, r.Blocks, what)
	if len(claims) > 0 || len(noClaim) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CLAIM\tNEWEST BACKUP\tCREATED\tVOLUME\tSIZE\tBACKUPS")
		for _, c := range claims {
			name := c.Namespace + "/" + c.Claim
			if !c.Declared {
				name += " (not in profile)"
			}
			if c.Latest == nil {
				fmt.Fprintf(tw, "%s\tnone\t-\t-\t-\t0\n", name)
				continue
			}
			b := c.Latest
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", name, b.Name, b.Created.Format(time.RFC3339), b.Volume, humanBytes(b.Size), c.Backups)
		}
		for _, b := range noClaim {
			fmt.Fprintf(tw, "(no claim label)\t%s\t%s\t%s\t%s\t-\n", b.Name, b.Created.Format(time.RFC3339), b.Volume, humanBytes(b.Size))
		}
		_ = tw.Flush()
	}
	if r.OK() {
		fmt.Fprintln(w, "\nno problems: every backup checked can be restored")
		return
	}
	fmt.Fprintf(w, "\n%d problem(s):\n", len(r.Problems))
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  %s\n", p)
	}
}

// humanBytes renders n in IEC units (1.5 GiB).
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// backupPreflight is longhorn.Options.Preflight: the backup target preflight of
// pkg/backuptarget, which pkg/longhorn does not import.
func backupPreflight(ctx context.Context, target string, creds map[string]string) error {
	backuptarget.QuietLogs()
	_, err := backuptarget.Preflight(ctx, target, creds)
	return err
}
