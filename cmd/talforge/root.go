package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/lifecycle"
	"github.com/talforge/talforge/pkg/machineconfig"
	"github.com/talforge/talforge/pkg/profile"
)

// Exit codes. CI scripts tell "would change" from "cannot run" (Terraform's
// -detailed-exitcode: 1 error, 2 changes), so the two never share a code.
const (
	exitOK      = 0
	exitFailure = 1
	// exitChanges: a plan (plan, provision --plan, longhorn upgrade --plan, longhorn drift)
	// has changes to make.
	exitChanges = 2
	// exitInvalid: the input (profile, patch, flags, a refused confirmation) is wrong.
	exitInvalid = 3
)

type streams struct {
	in          io.Reader
	out, errOut io.Writer
}

// rootOptions are the flags every command shares.
type rootOptions struct {
	streams
	profile string
}

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// invalid marks an error as bad input (exit 3).
func invalid(err error) error { return &exitError{code: exitInvalid, err: err} }

func run(ctx context.Context, args []string, s streams) int {
	root := newRootCmd(&rootOptions{streams: s})
	root.SetArgs(args)
	root.SetIn(s.in)
	root.SetOut(s.out)
	root.SetErr(s.errOut)

	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}

	var ee *exitError
	if errors.As(err, &ee) && ee.err == nil {
		return ee.code // already reported
	}

	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		// Say why (the signal), not only "context canceled".
		fmt.Fprintf(s.errOut, "error: stopped: %v\n", context.Cause(ctx))

		return exitFailure
	}

	fmt.Fprintln(s.errOut, "error:", err)

	return exitCode(err)
}

func exitCode(err error) int {
	var (
		ee       *exitError
		problems profile.Problems
		patchErr *machineconfig.PatchError
		flagErr  *flagError
		inputErr *lifecycle.InputError
	)

	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &problems), errors.As(err, &patchErr), errors.As(err, &flagErr), errors.As(err, &inputErr):
		return exitInvalid
	default:
		return exitFailure
	}
}

type flagError struct{ err error }

// exactArgs is cobra.ExactArgs whose refusal is invalid input (exit 3), like a bad flag.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return &flagError{err}
		}

		return nil
	}
}

func (e *flagError) Error() string { return e.err.Error() }

func newRootCmd(o *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "talforge",
		Short: "From one YAML profile to a running, backed-up Talos cluster on Proxmox",
		Long: `talforge turns a cluster profile (profiles/<name>.yaml) into Talos machine configs,
Proxmox VMs with static IPs, a bootstrapped Kubernetes cluster and Longhorn with S3 backups,
and keeps the generated output reproducible and safe to commit (secrets SOPS-encrypted).

Exit codes: 0 ok, 1 failure, 2 changes pending (plan, --plan, longhorn drift), 3 invalid input.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}

	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &flagError{err} })
	cmd.PersistentFlags().StringVarP(&o.profile, "profile", "p", os.Getenv("TALFORGE_PROFILE"),
		"cluster profile (default: $TALFORGE_PROFILE, or the only file in ./profiles)")

	cmd.AddCommand(
		newInitCmd(o),
		newImportCmd(o),
		newValidateCmd(o),
		newGenerateCmd(o),
		newApplyCmd(o),
		newBootstrapCmd(o),
		newHealthCmd(o),
		newKubeconfigCmd(o),
		newTalosconfigCmd(o),
		newProvisionCmd(o),
		newDestroyCmd(o),
		newLonghornCmd(o),
		newIAMPolicyCmd(o),
		newBackupCmd(o),
		newUpCmd(o),
		newUpgradeCmd(o),
		newPlanCmd(o),
		newStatusCmd(o),
		newRebuildCmd(o),
		newDRTestCmd(o),
		newExportCmd(o),
		newSchemaCmd(o),
		newSecretCmd(o),
		newVersionCmd(o),
	)
	// Stage commands (provision, apply, bootstrap, longhorn, ...) register here too.

	return cmd
}

// profilePath returns the profile to use: -p, $TALFORGE_PROFILE, or the only profile in
// ./profiles.
func (o *rootOptions) profilePath() (string, error) {
	if o.profile != "" {
		return o.profile, nil
	}

	matches, _ := filepath.Glob(filepath.Join("profiles", "*.yaml"))
	if len(matches) == 1 {
		return matches[0], nil
	}

	return "", &flagError{errors.New("which profile? pass -p profiles/<name>.yaml (or set TALFORGE_PROFILE)")}
}

// loadProfile loads and validates the profile, printing warnings. A signal (ctx) stops it.
func (o *rootOptions) loadProfile(ctx context.Context) (*profile.Cluster, error) {
	path, err := o.profilePath()
	if err != nil {
		return nil, err
	}

	c, err := profile.LoadContext(ctx, path)
	if err != nil {
		return nil, err
	}

	o.printWarnings(c)

	return c, nil
}

func (o *rootOptions) printWarnings(c *profile.Cluster) {
	for _, w := range c.Warnings {
		fmt.Fprintln(o.errOut, "warning:", w)
	}
}
