package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/restore"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// DRTestOptions select what a disaster-recovery test covers.
type DRTestOptions struct {
	// Targets to test: declared claims as namespace/name, or Longhorn volume names (default:
	// every claim the profile declares).
	Targets []string
	// Keep leaves what the test created in place.
	Keep bool
	// VerifyData compares the restored data with the backed-up snapshot in a Job.
	VerifyData bool
	// VerifyImage is the verification Job's image (default restore.DefaultVerifyImage).
	VerifyImage string
}

// ErrDRTestFailed is returned when a restored volume does not match its source.
var ErrDRTestFailed = errors.New("disaster-recovery test failed")

// DRTest proves on the live cluster that claims can be restored: for each, a backup, a
// restore of that backup into a new volume, a comparison, and the time to restore. It
// returns ErrDRTestFailed (with every result) when a comparison fails.
func DRTest(ctx context.Context, opts Options, dr DRTestOptions) ([]*restore.DRResult, error) {
	r, err := newRun(ctx, opts)
	if err != nil {
		return nil, err
	}
	if r.cluster.Longhorn == nil || r.cluster.Longhorn.Backup == nil {
		return nil, fmt.Errorf("%s: longhorn.backup: the profile has no backup target to test", r.opts.Profile)
	}
	decl, err := restore.Declarations(r.cluster)
	if err != nil {
		return nil, err
	}
	targets := dr.Targets
	if len(targets) == 0 {
		for _, d := range decl {
			targets = append(targets, d.String())
		}
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("%s declares no claims (longhorn.volumes): name the claims (namespace/name) or volumes to test", r.opts.Profile)
	}
	path := filepath.Join(r.out, bootstrap.KubeconfigFile)
	kc, err := sopsfile.DecryptFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: the cluster must be up (`talforge up`)", path)
	}
	if err != nil {
		return nil, err
	}
	rc, err := r.restoreClient(kc)
	if err != nil {
		return nil, err
	}
	r.opts.OnPhase("dr-test")
	p := r.rep.phase("dr-test")
	do := restore.DROptions{Keep: dr.Keep, VerifyData: dr.VerifyData, VerifyImage: dr.VerifyImage}
	var results []*restore.DRResult
	failed := 0
	for _, t := range targets {
		var res *restore.DRResult
		if d, ok := declaredClaim(decl, t); ok {
			res, err = rc.DRTestClaim(ctx, d, do)
		} else if strings.Contains(t, "/") {
			return results, fmt.Errorf("%s is not a claim the profile declares (longhorn.volumes); declared: %s", t, strings.Join(claimNames(decl), ", "))
		} else {
			res, err = rc.DRTest(ctx, t, do)
		}
		if err != nil {
			if res != nil && len(res.Left) > 0 {
				r.rep.note("left behind (delete by hand): %s", strings.Join(res.Left, ", "))
			}
			return results, phaseError(ctx, "dr-test", fmt.Errorf("%s: %w", t, err))
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
		data := "data not compared (--verify-data compares it)"
		if res.DataVerified {
			data = "data compared"
		}
		p.seen(t)
		p.node(t, "%s: backup %s in %s, restored %s into %s in %s, %s, %d/%d checks passed", verdict, res.Backup.Name,
			formatDuration(res.BackupTook), formatBytes(res.Bytes), res.Restored, formatDuration(res.RestoreTook), data, passed, len(res.Checks))
		if len(res.Left) > 0 {
			r.rep.note("left behind (delete by hand): %s", strings.Join(res.Left, ", "))
		}
	}
	r.record(p, false, "%d of %d restored and verified", len(results)-failed, len(results))
	if failed > 0 {
		return results, fmt.Errorf("%w: %d of %d did not restore as they were backed up", ErrDRTestFailed, failed, len(results))
	}
	return results, nil
}

func declaredClaim(decl []restore.Declared, name string) (restore.Declared, bool) {
	for _, d := range decl {
		if d.String() == name || (d.Name != "" && d.Name == name) {
			return d, true
		}
	}
	return restore.Declared{}, false
}

func claimNames(decl []restore.Declared) []string {
	out := make([]string, 0, len(decl))
	for _, d := range decl {
		out = append(out, d.String())
	}
	return out
}
