package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/restore"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// DRTestOptions select what a disaster-recovery test covers.
type DRTestOptions struct {
	// Volumes to test (default: every volume the profile declares).
	Volumes []string
	// Keep leaves the restored test volumes in place.
	Keep bool
}

// ErrDRTestFailed is returned when a restored volume does not match its source.
var ErrDRTestFailed = errors.New("disaster-recovery test failed")

// DRTest proves on the live cluster that volumes can be restored: for each, a backup, a
// restore of that backup into a new volume, a comparison, and the time to restore. It
// returns ErrDRTestFailed (with every result) when a comparison fails.
func DRTest(ctx context.Context, opts Options, dr DRTestOptions) ([]*restore.DRResult, error) {
	r, err := newRun(ctx, opts)
	if err != nil {
		return nil, err
	}
	volumes := dr.Volumes
	if len(volumes) == 0 {
		volumes = append(volumes, vols(r.cluster)...)
	}
	if len(volumes) == 0 {
		return nil, fmt.Errorf("%s declares no volumes (longhorn.volumes): name the volumes to test", r.opts.Profile)
	}
	if r.cluster.Longhorn == nil || r.cluster.Longhorn.Backup == nil {
		return nil, fmt.Errorf("%s: longhorn.backup: the profile has no backup target to test", r.opts.Profile)
	}
	path := filepath.Join(r.out, bootstrap.KubeconfigFile)
	kc, err := sopsfile.DecryptFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: the cluster must be up (`talforge up`)", path)
	}
	if err != nil {
		return nil, err
	}
	ro := r.opts.Restore
	ro.Log = prefixWriter{r.opts.Detail, "  "}
	rc, err := restore.New(kc, ro)
	if err != nil {
		return nil, err
	}
	r.opts.OnPhase("dr-test")
	p := r.rep.phase("dr-test")
	var results []*restore.DRResult
	failed := 0
	for _, v := range volumes {
		res, err := rc.DRTest(ctx, v, restore.DROptions{Keep: dr.Keep})
		if err != nil {
			return results, phaseError(ctx, "dr-test", fmt.Errorf("volume %s: %w", v, err))
		}
		results = append(results, res)
		passed := 0
		for _, c := range res.Checks {
			if c.OK {
				passed++
			}
		}
		verdict := "PASS"
		if !res.OK() {
			verdict, failed = "FAIL", failed+1
		}
		p.seen(v)
		p.node(v, "%s: backup %s in %s, restored into %s in %s, %d/%d checks passed", verdict, res.Backup.Name,
			formatDuration(res.BackupTook), res.Restored, formatDuration(res.RestoreTook), passed, len(res.Checks))
	}
	r.record(p, false, "%d of %d volume(s) restored and verified", len(results)-failed, len(results))
	if failed > 0 {
		return results, fmt.Errorf("%w: %d of %d volume(s) did not restore as they were backed up", ErrDRTestFailed, failed, len(results))
	}
	return results, nil
}
