package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/lifecycle"
)

func newExportCmd(o *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export the cluster for other tools",
		Args:  cobra.NoArgs,
	}

	cmd.AddCommand(newExportCAPICmd(o))

	return cmd
}

func newExportCAPICmd(o *rootOptions) *cobra.Command {
	var (
		eo     lifecycle.ExportOptions
		output outputOptions
	)

	cmd := &cobra.Command{
		Use:   "capi",
		Short: "Write the cluster as Cluster API objects (CAPI, the Proxmox provider CAPMOX, Sidero's Talos providers)",
		Long: `export capi writes, from what generate stored, the objects a Cluster API management cluster runs
this cluster with, into clusters/<name>/capi/ (or --out):

  cluster-api.yaml         Cluster and MachineDeployment (cluster.x-k8s.io/v1beta2),
                           ProxmoxCluster and ProxmoxMachineTemplates (CAPMOX v1alpha2),
                           TalosControlPlane and TalosConfigTemplate (v1alpha3) with the same
                           patches talforge applies: install image, Longhorn data disk, VIP,
                           the profile's patches
  talos-secrets.sops.yaml  the Secret <name>-talos with the cluster's secrets bundle, as the
                           Talos providers read it, SOPS-encrypted: the machines they make share
                           talforge's PKI

Cluster API makes the machines of a role alike and gives them their address, MAC, VMID and host.
What the profile pins per node is reported field by field, and nothing is written unless
--allow-lossy. Notes say what the management cluster needs (a VM template, the in-cluster IPAM
provider).

Exit codes: 0 written; 1 the profile cannot be expressed whole (without --allow-lossy), or a
failure; 3 invalid input.`,
		Example: `  talforge export capi -p profiles/ha.yaml
  talforge export capi -p profiles/ha.yaml --allow-lossy --namespace fleet --out capi/ha`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.validate(); err != nil {
				return err
			}

			path, err := o.profilePath()
			if err != nil {
				return err
			}

			rep, err := lifecycle.ExportCAPI(cmd.Context(), lifecycle.Options{Profile: path}, eo)
			if rep != nil {
				if werr := output.write(o.out, rep, func(w io.Writer) { printExport(w, rep) }); werr != nil && err == nil {
					err = werr
				}
			}

			return lifecycleError(err)
		},
	}

	cmd.Flags().StringVar(&eo.Out, "out", "", "output directory (default clusters/<name>/capi)")
	cmd.Flags().StringVar(&eo.Namespace, "namespace", "default", "namespace of the objects in the management cluster")
	cmd.Flags().BoolVar(&eo.AllowLossy, "allow-lossy", false, "write the objects even when they cannot express everything the profile says")
	output.addFlag(cmd)

	return cmd
}

// printExport prints the notes and what was written; the losses too when the objects were
// written anyway (otherwise the error lists them).
func printExport(w io.Writer, rep *lifecycle.ExportReport) {
	for _, l := range rep.Lossy {
		if len(rep.Written) > 0 {
			fmt.Fprintf(w, "  ! %s\n", l)
		}
	}

	for _, n := range rep.Notes {
		fmt.Fprintf(w, "  # %s\n", n)
	}

	for _, f := range rep.Written {
		fmt.Fprintf(w, "  wrote     %s\n", f)
	}
}
