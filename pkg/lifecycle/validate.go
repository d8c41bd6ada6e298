package lifecycle

import (
	"context"
	"fmt"

	"github.com/talforge/talforge/pkg/backuptarget"
	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/secrets"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// ValidateReport is what Validate found.
type ValidateReport struct {
	// Rendered holds every node's config, rendered with a throw-away secrets bundle.
	Rendered      *generate.Rendered `json:"-"`
	File          string             `json:"file"`
	Cluster       string             `json:"cluster"`
	ControlPlanes int                `json:"controlPlanes"`
	Workers       int                `json:"workers"`
	Talos         string             `json:"talos"`
	Contract      string             `json:"contract"`
	Kubernetes    string             `json:"kubernetes"`
	Schematic     string             `json:"schematic"`
	// Warnings are the profile's and each node's config's ("node <name>: ...").
	Warnings []string `json:"warnings"`
	// Online is the backup target's preflight (nil unless asked for and configured).
	Online *backuptarget.PreflightReport `json:"online,omitempty"`
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
	rendered, err := generate.RenderThrowaway(ctx, c)
	if err != nil {
		return nil, err
	}
	rep := &ValidateReport{
		Rendered: rendered, File: c.File(), Cluster: c.Metadata.Name, ControlPlanes: len(c.ControlPlanes()), Workers: len(c.Workers()),
		Talos: c.Talos.Version, Contract: rendered.Generator.Contract().String(), Kubernetes: c.Talos.Kubernetes, Schematic: rendered.Image.ID,
	}
	for _, w := range c.Warnings {
		rep.Warnings = append(rep.Warnings, w.String())
	}
	for _, cfg := range rendered.Configs {
		for _, w := range cfg.Warnings {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("node %s: %s", cfg.Node.Name, w))
		}
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
