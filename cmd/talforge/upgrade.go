package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/lifecycle"
)

func newUpgradeCmd(o *rootOptions) *cobra.Command {
	u := newLifecycleOptions(o)
	var (
		dryRun                bool
		gateTimeout, nodeWait time.Duration
	)

	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Upgrade Talos on every node to the profile's version, one node at a time, gated on etcd and Longhorn health",
		Long: `upgrade takes every node whose Talos version differs from the profile's talos.version to it:
control planes first, then workers, one node at a time. For each node it

  1. waits for the storage gate: every attached Longhorn volume healthy, nothing rebuilding,
     each with a healthy replica on another node, engine images deployed;
  2. cordons and drains it through the Eviction API (a drain held by a PodDisruptionBudget is
     reported with the budget, and Longhorn's with the volume behind it);
  3. upgrades it with the profile's installer image (its schematic, so extensions stay):
     LifecycleService.Upgrade and a reboot on Talos > 1.13.0-alpha.2, the deprecated
     MachineService.Upgrade on older nodes, chosen by the version each node reports;
  4. waits for it to answer on the new version, for etcd to list every control plane and for
     its Kubernetes node to be Ready; applies its config rendered for the new version
     (no reboot), uncordons it and waits for its Longhorn node to be Ready and schedulable.

A node that fails a gate or does not come back stops the run with every other node serving.
Interrupted, it continues where it stopped on the next run. up never upgrades nodes by itself.`,
		Example: `  talforge upgrade -p profiles/ha.yaml --dry-run
  talforge upgrade -p profiles/ha.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := u.options(u.errOut)
			if err != nil {
				return err
			}
			// The steps go to the output as they happen, not only with --verbose.
			opts.Detail = u.out
			opts.Rollout.GateTimeout, opts.Rollout.NodeTimeout = gateTimeout, nodeWait

			rep, err := lifecycle.Upgrade(cmd.Context(), opts, dryRun)
			if rep != nil && (dryRun || err != nil) {
				printUpgradeSteps(u, rep)
			}
			if err != nil {
				return err
			}

			switch {
			case len(rep.Steps) == 0:
				fmt.Fprintf(u.out, "every node of cluster %s runs Talos %s\n", rep.Cluster, rep.Version)
			case dryRun:
				return &exitError{code: exitChanges}
			default:
				fmt.Fprintf(u.out, "cluster %s: %d node(s) upgraded to Talos %s (%s)\n", rep.Cluster, len(rep.Upgraded), rep.Version, rep.Image)
			}

			return nil
		},
	}

	u.addFlags(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list the upgrades, change nothing (exit code 2 when some are pending)")
	cmd.Flags().DurationVar(&gateTimeout, "gate-timeout", 30*time.Minute, "limit for each wait on Longhorn's storage gate (replica rebuilds take a while on large volumes)")
	cmd.Flags().DurationVar(&nodeWait, "node-timeout", 15*time.Minute, "limit for a node to come back on the new version, Ready and in etcd")

	return cmd
}

func printUpgradeSteps(u *lifecycleOptions, rep *lifecycle.UpgradeReport) {
	if len(rep.Steps) == 0 {
		return
	}

	fmt.Fprintf(u.out, "Talos upgrade of cluster %s to %s, one node at a time (%s):\n", rep.Cluster, rep.Version, rep.Image)

	for _, s := range rep.Steps {
		fmt.Fprintf(u.out, "  ~ %s\n", s)
	}
}
