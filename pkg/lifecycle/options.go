package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/proxmox"
	"github.com/talforge/talforge/pkg/restore"
	"github.com/talforge/talforge/pkg/rollout"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// Options configure every lifecycle operation.
type Options struct {
	// Profile is the cluster profile's path.
	Profile string
	// Renderers add files to clusters/<name>/ (the Longhorn values, manifests and IAM policy:
	// pass the same renderers `talforge generate` uses, e.g. longhorn.Files).
	Renderers []generate.Renderer
	// Commit commits what the run wrote under clusters/<name>/.
	Commit bool
	// Progress receives one line per phase and per node, with elapsed times.
	Progress io.Writer
	// Live: Progress is a terminal; a wait shows as one status line rewritten in place
	// rather than a line every 15 s.
	Live bool
	// Detail receives each stage's own progress (Proxmox tasks, Talos observations, Helm);
	// nil discards it.
	Detail io.Writer
	// ConnectPVE connects to the profile's Proxmox VE (token and TLS are the caller's
	// business). Required for profiles with a proxmox section.
	ConnectPVE func(ctx context.Context, c *profile.Cluster) (proxmox.API, error)
	// Proxmox tunes provisioning (parallelism, retries); Events is set by lifecycle.
	Proxmox proxmox.Options
	// Talos tunes the Talos stages (port, timeouts, polling); Progress is set by lifecycle.
	Talos bootstrap.Options
	// Longhorn tunes the Longhorn stage (chart cache, timeouts); Kubeconfig and Log are set
	// by lifecycle.
	Longhorn longhorn.Options
	// Restore tunes backups and restores; Log is set by lifecycle.
	Restore restore.Options
	// Rollout tunes Talos upgrades (gates' timeouts); Progress, Now, TalosPort and, unless
	// set, Poll come from lifecycle.
	Rollout rollout.Options
	// OnPhase, when set, is called as each phase starts (progress UIs, fault-injection tests).
	OnPhase func(name string)
	// ConfirmAdopt, when set, is asked before up takes over VMs made by hand (the plan's
	// "adopt" steps: talforge's tags added, nothing else changed); its error stops up before
	// anything changes. nil adopts them.
	ConfirmAdopt func(vms []string) error
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Detail == nil {
		o.Detail = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ConnectPVE == nil {
		o.ConnectPVE = ConnectProfilePVE
	}
	if o.OnPhase == nil {
		o.OnPhase = func(string) {}
	}
	return o
}

// ConnectProfilePVE connects to Proxmox VE as the profile says (PVEConnection's zero value).
func ConnectProfilePVE(ctx context.Context, c *profile.Cluster) (proxmox.API, error) {
	return PVEConnection{}.Connect(ctx, c)
}

// PVEConnection is how to reach the profile's Proxmox VE: the API token from
// $TALFORGE_PVE_TOKEN or the SOPS-encrypted proxmox.tokenFile, the CA from proxmox.caFile (or
// CAFile), TLS verification unless proxmox.insecureSkipVerify (or Insecure). The token secret is
// never printed.
type PVEConnection struct {
	// CAFile overrides proxmox.caFile.
	CAFile string
	// Insecure disables TLS verification whatever the profile says.
	Insecure bool
	// Log, when set, receives a warning when verification is off and a line once connected.
	Log io.Writer
}

// Connect resolves the token and TLS configuration and checks that the API answers. A missing
// section, a malformed token or an unreadable CA is an InputError.
func (pc PVEConnection) Connect(ctx context.Context, c *profile.Cluster) (proxmox.API, error) {
	if c.Proxmox == nil {
		return nil, &InputError{fmt.Errorf("%s: proxmox: the profile has no proxmox section", c.File())}
	}
	log := pc.Log
	if log == nil {
		log = io.Discard
	}
	tok, src, err := proxmox.ResolveToken(c, os.Getenv, sopsfile.DecryptFile)
	if err != nil {
		return nil, &InputError{err}
	}
	caFile := pc.CAFile
	if caFile == "" {
		caFile = c.Resolve(c.Proxmox.CAFile)
	}
	insecure := pc.Insecure || c.Proxmox.InsecureSkipVerify
	if insecure {
		fmt.Fprintln(log, "warning: TLS certificate verification of the Proxmox API is disabled")
	}
	tlsCfg, err := proxmox.TLSConfig(caFile, insecure)
	if err != nil {
		return nil, &InputError{err}
	}
	api, err := proxmox.NewTelmateAPI(proxmox.ClientOptions{Endpoint: c.Proxmox.Endpoint, Token: tok, TLS: tlsCfg})
	if err != nil {
		return nil, &InputError{err}
	}
	// One 503 from a busy pveproxy must not end the run: the version check is a read.
	v, err := proxmox.WithReadRetries(api).Version(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s as %s (token from %s): %w", c.Proxmox.Endpoint, tok.ID, src, err)
	}
	fmt.Fprintf(log, "connected to Proxmox VE %s at %s as %s\n", v, c.Proxmox.Endpoint, tok.ID)
	return api, nil
}

// InterruptedError is returned when the context ended during a phase. Nothing is lost:
// every phase observes before it acts, so running the command again resumes.
type InterruptedError struct {
	Phase string
	Err   error
	// Hint says how to resume (default: run the command again).
	Hint string
}

func (e *InterruptedError) Error() string {
	hint := e.Hint
	if hint == "" {
		hint = "run the command again to resume"
	}
	return fmt.Sprintf("interrupted during %s: %v; nothing is lost: %s", e.Phase, e.Err, hint)
}

func (e *InterruptedError) Unwrap() error { return e.Err }

// phaseError wraps a phase's failure, marking interruptions.
func phaseError(ctx context.Context, phase string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		var ie *InterruptedError
		if errors.As(err, &ie) {
			return err
		}
		return &InterruptedError{Phase: phase, Err: err}
	}
	return fmt.Errorf("%s: %w", phase, err)
}
