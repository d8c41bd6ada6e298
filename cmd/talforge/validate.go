package main

import (
	"fmt"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/machineconfig"
	"github.com/talforge/talforge/pkg/schematic"
)

func newValidateCmd(o *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "validate",
		Short: "Check a profile and render every node's config without writing anything",
		Long: `validate loads the profile strictly, runs every semantic check, and renders each node's
machine config with Talos' machinery (with a throw-away secrets bundle) so that patches are
checked too. It needs no keys and writes nothing.`,
		Example: `  talforge validate -p profiles/tazlab.yaml`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.loadProfile()
			if err != nil {
				return err
			}

			img, err := schematic.ForCluster(c)
			if err != nil {
				return err
			}

			contract, err := config.ParseContractFromVersion(c.Talos.Version)
			if err != nil {
				return err
			}

			// Validation does not depend on secret values: a throw-away bundle needs no keys.
			bundle, err := secrets.NewBundle(secrets.NewFixedClock(time.Now()), contract)
			if err != nil {
				return err
			}

			gen, err := machineconfig.New(c, img, bundle)
			if err != nil {
				return err
			}

			cfgs, err := gen.All(cmd.Context())
			if err != nil {
				return err
			}

			for _, cfg := range cfgs {
				for _, w := range cfg.Warnings {
					fmt.Fprintf(o.errOut, "warning: node %s: %s\n", cfg.Node.Name, w)
				}
			}

			fmt.Fprintf(o.out, "%s: valid — cluster %s, %d control plane(s), %d worker(s), Talos %s (contract %s), Kubernetes %s, schematic %s\n",
				c.File(), c.Metadata.Name, len(c.ControlPlanes()), len(c.Workers()), c.Talos.Version, gen.Contract(), c.Talos.Kubernetes, img.ID)

			return nil
		},
	}
}
