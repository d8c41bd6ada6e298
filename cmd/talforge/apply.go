package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/lifecycle"
)

// talosOptions are the flags of the commands that talk to the Talos API.
type talosOptions struct {
	*rootOptions

	timeout      time.Duration
	pollInterval time.Duration
	talosPort    int
}

func (t *talosOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&t.timeout, "timeout", 15*time.Minute, "how long each phase may wait (a node's install and reboot, etcd, each health check)")
	cmd.Flags().DurationVar(&t.pollInterval, "poll-interval", 2*time.Second, "pause between observations of the nodes")
	cmd.Flags().IntVar(&t.talosPort, "talos-port", 50000, "Talos API port on every node")

	for _, hidden := range []string{"poll-interval", "talos-port"} {
		_ = cmd.Flags().MarkHidden(hidden) // the flags exist
	}
}

func (t *talosOptions) runnerOptions() bootstrap.Options {
	return bootstrap.Options{
		TalosPort:        t.talosPort,
		Progress:         t.errOut,
		APITimeout:       t.timeout,
		BootstrapTimeout: t.timeout,
		HealthTimeout:    t.timeout,
		PollInterval:     t.pollInterval,
	}
}

// options are the lifecycle options of a single Talos stage: the runner's progress and every
// note go to stderr.
func (t *talosOptions) options() (lifecycle.Options, error) {
	path, err := t.profilePath()
	if err != nil {
		return lifecycle.Options{}, err
	}

	return lifecycle.Options{Profile: path, Progress: t.errOut, Detail: t.errOut, Talos: t.runnerOptions()}, nil
}

type applyOptions struct {
	talosOptions

	mode   string
	dryRun bool
	output outputOptions
}

func newApplyCmd(o *rootOptions) *cobra.Command {
	a := &applyOptions{talosOptions: talosOptions{rootOptions: o}}

	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Apply every node's Talos config through the Talos API (maintenance or configured)",
		Long: `apply waits for each node's Talos API on its static IP (port 50000) and brings it to the config
rendered from the profile and the cluster's secrets bundle in clusters/<name>/:

  - a node in maintenance mode gets its config with mode auto; apply then waits until the node has
    installed and answers with the cluster's CA and the talosconfig's client certificate;
  - a configured node is compared with its desired config; the diff is printed with every secret
    value redacted, and the config is sent only when it differs, with --mode auto (reboot when
    needed), no-reboot or staged (takes effect at the next reboot);
  - a config whose role differs from the node's current role is refused.

apply can be interrupted at any time; the next run observes the nodes and continues.`,
		Example: `  talforge apply -p profiles/ha.yaml --dry-run
  talforge apply -p profiles/ha.yaml --mode staged`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			mode, err := bootstrap.ParseMode(a.mode)
			if err != nil {
				return &flagError{err}
			}

			opts, err := a.options()
			if err != nil {
				return err
			}

			if err := a.output.validate(); err != nil {
				return err
			}

			rep, err := lifecycle.ApplyConfigs(cmd.Context(), opts, mode, a.dryRun)
			if rep != nil {
				if werr := a.output.write(a.out, rep, func(w io.Writer) { printApplyResults(w, rep.Nodes, mode) }); werr != nil && err == nil {
					err = werr
				}
			}

			return err
		},
	}

	cmd.Flags().StringVar(&a.mode, "mode", string(bootstrap.ModeAuto), "how configured nodes take a changed config: auto, no-reboot or staged")
	a.output.addFlag(cmd)
	cmd.Flags().BoolVar(&a.dryRun, "dry-run", false, "show what would be applied (with redacted diffs) and change nothing")
	a.addFlags(cmd)

	return cmd
}

// printApplyResults prints one line per node in profile order, then the redacted diffs.
func printApplyResults(w io.Writer, results []bootstrap.NodeResult, mode bootstrap.Mode) {
	width := 0
	for _, r := range results {
		width = max(width, len(r.Node))
	}

	for _, r := range results {
		if r.Action == "" {
			fmt.Fprintf(w, "%-*s  failed\n", width, r.Node)

			continue
		}

		line := string(r.Action)
		if r.Action == bootstrap.ActionApplied || r.Action == bootstrap.ActionWouldApply {
			line += " (mode " + string(mode) + ")"
		}

		if r.Details != "" {
			line += ": " + r.Details
		}

		fmt.Fprintf(w, "%-*s  %s\n", width, r.Node, line)
	}

	for _, r := range results {
		if r.Diff == "" {
			continue
		}

		fmt.Fprintf(w, "\n%s: config diff (secret values redacted)\n", r.Node)

		for line := range strings.Lines(r.Diff) {
			fmt.Fprintf(w, "  %s", line)
		}
	}
}
