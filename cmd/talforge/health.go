package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/lifecycle"
)

func newHealthCmd(o *rootOptions) *cobra.Command {
	h := &talosOptions{rootOptions: o}

	cmd := &cobra.Command{
		Use:   "health",
		Short: "Check the cluster in phases: apid, etcd, kube-apiserver, node registration",
		Long: `health checks, in order, and waits for each phase up to --timeout:

  1. apid answers on every node with the cluster's CA and the talosconfig's client certificate;
  2. etcd runs and is healthy on every control plane, with exactly one member per control plane;
  3. kube-apiserver answers at the kubeconfig's endpoint (the VIP when the profile has one);
  4. every node of the profile is registered with Kubernetes (Ready is not required).

It uses the kubeconfig stored in clusters/<name>/kubeconfig.sops.yaml, fetching (and storing) it
from a control plane when there is none yet. An error names the phase, the node, what was last
seen and what to check next.`,
		Example: `  talforge health -p profiles/ha.yaml --timeout 2m`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := h.options()
			if err != nil {
				return err
			}

			rep, err := lifecycle.Health(cmd.Context(), opts)
			if err != nil {
				return err
			}

			for _, f := range rep.Written {
				fmt.Fprintf(h.out, "  wrote     %s (encrypted)\n", f)
			}

			fmt.Fprintf(h.out, "cluster %s is healthy: apid on every node, etcd with one member per control plane, kube-apiserver answers, all nodes registered\n",
				rep.Cluster)

			return nil
		},
	}

	h.addFlags(cmd)

	return cmd
}
