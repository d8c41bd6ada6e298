// What rebuild knows of the backups before it destroys anything: the latest backup of every
// declared claim, read from the bucket (or the old cluster), and the proof that each is whole.

package lifecycle

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/talforge/talforge/pkg/backuptarget"
	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/restore"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// requireProvenBackups refuses to go on to the destroy unless every declared claim has a
// backup that the bucket itself holds whole (its config and every block it references), or
// its data survives on kept data disks, or the user accepted the loss by name. The old
// cluster's word is not enough: it may be unreachable, or list backups the bucket lost.
func (r *run) requireProvenBackups(ctx context.Context, plan *RebuildPlan, ro RebuildOptions) error {
	l := r.cluster.Longhorn
	if l == nil || len(plan.Restore) == 0 || ro.KeepDataDisks {
		return nil
	}
	why := ""
	// One listing, then one verification of the volumes holding the claims' latest backups:
	// block checks are an S3 request each, so nothing else is verified.
	var report *backuptarget.Report
	creds, err := r.backupCredentials()
	var listing *backuptarget.Listing
	if err == nil {
		listing, err = backuptarget.List(ctx, l.Backup.Target, creds)
	}
	if err == nil {
		var volumes []string
		for _, rp := range plan.Restore {
			if b := latestOf(listing, rp.Claim); b != nil && !slices.Contains(volumes, b.Volume) {
				volumes = append(volumes, b.Volume)
			}
		}
		if len(volumes) > 0 {
			report, err = backuptarget.Verify(ctx, l.Backup.Target, creds, backuptarget.VerifyOptions{Volumes: volumes})
		}
	}
	if err != nil {
		why = "the backup target cannot be read: " + bootstrap.ShortError(err)
	}
	var unproven []string
	for i := range plan.Restore {
		rp := &plan.Restore[i]
		rp.Proven = false
		if b := latestIn(listing, rp.Claim); b != nil && report != nil {
			rp.Latest, rp.Proven = b, whole(report, b)
		}
		if !rp.Proven {
			unproven = append(unproven, rp.Claim.String())
		}
	}
	if len(unproven) == 0 {
		return nil
	}
	if why == "" {
		why = "no complete backup of them is in " + backupTarget(l) + " (`talforge backup verify` shows what is there)"
	}
	if ro.AcceptDataLoss {
		plan.Notes = append(plan.Notes, fmt.Sprintf("--accept-data-loss: the data of %s is destroyed with the VMs (%s)", strings.Join(unproven, ", "), why))
		return nil
	}
	return fmt.Errorf("declared claim(s) %s have no backup talforge could verify in S3: %s; a rebuild would destroy their only copy. "+
		"Back them up (--backup-first), keep the data disks (--keep-data-disks), or pass --accept-data-loss to destroy the data",
		strings.Join(unproven, ", "), why)
}

// whole reports whether a verification found no problem with backup b (or its volume).
func whole(report *backuptarget.Report, b *backuptarget.Backup) bool {
	for _, p := range report.Problems {
		if p.Volume == b.Volume && (p.Backup == "" || p.Backup == b.Name) {
			return false
		}
	}
	return true
}

// latestIn is latestOf on a listing that may be missing.
func latestIn(listing *backuptarget.Listing, d restore.Declared) *backuptarget.Backup {
	if listing == nil {
		return nil
	}
	return latestOf(listing, d)
}

// backupCredentials decrypts the profile's backup credentials in memory.
func (r *run) backupCredentials() (backuptarget.Credentials, error) {
	decrypt := r.opts.Longhorn.Decrypt
	if decrypt == nil {
		decrypt = sopsfile.DecryptFile
	}
	return longhorn.BackupCredentials(r.cluster, decrypt)
}

// latestFromTarget fills each claim's latest backup from the backup target itself, read
// with Longhorn's backupstore library: it answers when the old cluster is gone.
func (r *run) latestFromTarget(ctx context.Context, plan *RebuildPlan) {
	l := r.cluster.Longhorn
	if l == nil || l.Backup == nil || len(plan.Restore) == 0 {
		return
	}
	listing, err := r.listBackupTarget(ctx)
	if err != nil {
		plan.Notes = append(plan.Notes, fmt.Sprintf("the backup target cannot be read from here (%s): the old cluster's listing is used", bootstrap.ShortError(err)))
		return
	}
	for i := range plan.Restore {
		d := plan.Restore[i].Claim
		plan.Restore[i].Latest = latestOf(listing, d)
	}
}

// latestOf is the newest backup of a declared claim in a listing: by the claim Longhorn
// records, or by the statically declared volume name.
func latestOf(listing *backuptarget.Listing, d restore.Declared) *backuptarget.Backup {
	b := listing.LatestForClaim(d.Namespace, d.Claim)
	if d.Name != "" {
		if bv := listing.LatestForVolume(d.Name); bv != nil && (b == nil || bv.Created.After(b.Created)) {
			b = bv
		}
	}
	return b
}

// listBackupTarget reads the profile's backup target straight from S3.
func (r *run) listBackupTarget(ctx context.Context) (*backuptarget.Listing, error) {
	creds, err := r.backupCredentials()
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return backuptarget.List(lctx, r.cluster.Longhorn.Backup.Target, creds)
}

// fromCluster converts what a cluster's Backup object says into the backup target's terms.
func fromCluster(b *restore.Backup) *backuptarget.Backup {
	if b == nil {
		return nil
	}
	return &backuptarget.Backup{Name: b.Name, URL: b.URL, Volume: b.Volume, Snapshot: b.Snapshot, Created: b.Created,
		Size: b.Size, VolumeSize: b.VolumeSize, Claim: b.Claim}
}

func (r *run) backupFirst(ctx context.Context, plan *RebuildPlan) ([]restore.Backup, error) {
	r.opts.OnPhase(PhaseBackup)
	p := r.rep.phase(PhaseBackup)
	kc, err := sopsfile.DecryptFile(filepath.Join(r.out, bootstrap.KubeconfigFile))
	if err != nil {
		return nil, phaseError(ctx, PhaseBackup, err)
	}
	rc, err := r.restoreClient(kc)
	if err != nil {
		return nil, phaseError(ctx, PhaseBackup, err)
	}
	var out []restore.Backup
	for _, v := range plan.BackupFirst {
		b, err := rc.BackupVolume(ctx, v)
		if err != nil {
			return out, phaseError(ctx, PhaseBackup, err)
		}
		p.seen(v)
		p.node(v, "backup %s completed", b.Name)
		out = append(out, *b)
		for i := range plan.Restore {
			d := plan.Restore[i].Claim
			if b.ClaimName() == d.String() || (d.Name != "" && d.Name == v) {
				plan.Restore[i].Latest = fromCluster(b)
			}
		}
	}
	r.record(p, len(out) > 0, "%d volume(s) backed up to %s", len(out), backupTarget(r.cluster.Longhorn))
	return out, nil
}
