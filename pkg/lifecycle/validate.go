package lifecycle

import (
	"context"

	"github.com/talforge/talforge/pkg/backuptarget"
	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/secrets"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// ValidateReport is what Validate found.
type ValidateReport struct {
	// Rendered holds every node's config, rendered with a throw-away secrets bundle.
	Rendered *generate.Rendered
	// Online is the backup target's preflight (nil unless asked for and configured).
	Online *backuptarget.PreflightReport
}

// Validate loads the profile strictly, refuses secret input files in clear and renders every
// node's config with Talos' machinery (patches included) with a throw-away bundle: it needs no
// keys and writes nothing. With online it also runs the backup target's preflight with the
// decrypted credentials (it writes and deletes a probe object).
func Validate(ctx context.Context, opts Options, online bool) (*ValidateReport, error) {
	r, err := loadRun(ctx, opts)
	if err != nil {
		return nil, err
	}
	c := r.cluster
	// A secret input file in clear is an error, not something to find at provision time.
	if err := secrets.CheckInputs(c); err != nil {
		return nil, err
	}
	rep := &ValidateReport{}
	if rep.Rendered, err = generate.RenderThrowaway(ctx, c); err != nil {
		return nil, err
	}
	if !online || c.Longhorn == nil || c.Longhorn.Backup == nil || c.Longhorn.Backup.Target == "" {
		return rep, nil
	}
	creds, err := longhorn.BackupCredentials(c, sopsfile.DecryptFile)
	if err != nil {
		return rep, err
	}
	backuptarget.QuietLogs()
	rep.Online, err = backuptarget.Preflight(ctx, c.Longhorn.Backup.Target, creds)
	return rep, err
}
