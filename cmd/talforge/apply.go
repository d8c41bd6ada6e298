package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	machinetype "github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/machineconfig"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/schematic"
	"github.com/talforge/talforge/pkg/secrets"
	"github.com/talforge/talforge/pkg/sopsfile"
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

// talosCluster is a profile made ready for the Talos stages: every node's config rendered from the
// profile and the cluster's stored secrets bundle (exactly what `talforge generate` writes), and the
// talosconfig.
type talosCluster struct {
	profile *profile.Cluster
	outDir  string
	input   bootstrap.Cluster
}

// loadTalosCluster renders the node configs in memory rather than reading nodes/*.yaml back, so what is
// applied is what the profile says; it warns when clusters/<name>/ (what Git holds) says otherwise.
func (o *rootOptions) loadTalosCluster(ctx context.Context) (*talosCluster, error) {
	c, err := o.loadProfile(ctx)
	if err != nil {
		return nil, err
	}

	out := c.OutputDir()
	bundlePath := filepath.Join(out, secrets.FileName)
	talosconfigPath := filepath.Join(out, generate.TalosconfigFile)

	haveBundle, err := secrets.Exists(bundlePath)
	if err != nil {
		return nil, err
	}

	if !haveBundle {
		return nil, fmt.Errorf("%s does not exist: run `talforge generate` first (it creates the cluster's secrets and talosconfig)", bundlePath)
	}

	bundle, err := secrets.Load(bundlePath)
	if err != nil {
		return nil, err
	}

	img, err := schematic.ForCluster(c)
	if err != nil {
		return nil, err
	}

	gen, err := machineconfig.New(ctx, c, img, bundle)
	if err != nil {
		return nil, err
	}

	configs, err := gen.All(ctx)
	if err != nil {
		return nil, err
	}

	existing, err := sopsfile.DecryptFile(talosconfigPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: run `talforge generate` first", talosconfigPath)
	}

	if err != nil {
		return nil, err
	}

	talosconfig, err := gen.Talosconfig(existing)
	if err != nil {
		return nil, err
	}

	warnIfStale(o.errOut, out, configs)

	tc := &talosCluster{profile: c, outDir: out, input: bootstrap.Cluster{
		Name: c.Metadata.Name, Talosconfig: talosconfig, VIP: c.Network.VIP,
	}}

	for _, cfg := range configs {
		role := machinetype.TypeWorker
		if cfg.Node.Role == profile.RoleControlPlane {
			role = machinetype.TypeControlPlane
		}

		tc.input.Nodes = append(tc.input.Nodes, bootstrap.Node{Name: cfg.Node.Name, IP: cfg.Node.IP, Role: role, Config: cfg.Bytes})
	}

	return tc, nil
}

// warnIfStale compares the rendered configs with the digests generate recorded in the lockfile.
func warnIfStale(w io.Writer, outDir string, configs []*machineconfig.Config) {
	data, err := os.ReadFile(filepath.Join(outDir, generate.LockFile))
	if err != nil {
		fmt.Fprintf(w, "warning: %s/%s is missing: run `talforge generate` and commit, so Git holds what is applied\n", outDir, generate.LockFile)

		return
	}

	var lock generate.Lock
	if err := yaml.Unmarshal(data, &lock); err != nil {
		fmt.Fprintf(w, "warning: %s/%s: %v\n", outDir, generate.LockFile, err)

		return
	}

	recorded := map[string]string{}
	for _, n := range lock.Nodes {
		recorded[n.Name] = n.ConfigDigest
	}

	var stale []string

	for _, cfg := range configs {
		sum := sha256.Sum256(cfg.Bytes)
		if recorded[cfg.Node.Name] != "sha256:"+hex.EncodeToString(sum[:]) {
			stale = append(stale, cfg.Node.Name)
		}
	}

	if len(stale) > 0 {
		fmt.Fprintf(w, "warning: the profile changed since %s was generated (nodes %s): run `talforge generate` and commit, so Git holds what is applied\n",
			outDir, strings.Join(stale, ", "))
	}
}

type applyOptions struct {
	talosOptions

	mode   string
	dryRun bool
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

			tc, err := a.loadTalosCluster(cmd.Context())
			if err != nil {
				return err
			}

			opts := a.runnerOptions()
			opts.Mode, opts.DryRun = mode, a.dryRun

			r, err := bootstrap.New(tc.input, opts)
			if err != nil {
				return err
			}

			results, err := r.Apply(cmd.Context())
			printApplyResults(a.out, results, mode)

			return err
		},
	}

	cmd.Flags().StringVar(&a.mode, "mode", string(bootstrap.ModeAuto), "how configured nodes take a changed config: auto, no-reboot or staged")
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
