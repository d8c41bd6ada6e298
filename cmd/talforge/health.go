package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/sopsfile"
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
			ctx := cmd.Context()

			tc, err := h.loadTalosCluster(ctx)
			if err != nil {
				return err
			}

			r, err := bootstrap.New(tc.input, h.runnerOptions())
			if err != nil {
				return err
			}

			if err := r.TalosHealth(ctx); err != nil {
				return err
			}

			kubeconfig, err := storedOrFetchedKubeconfig(ctx, h.rootOptions, tc, r, false)
			if err != nil {
				return err
			}

			if err := kubeHealth(ctx, r, kubeconfig); err != nil {
				return err
			}

			fmt.Fprintf(h.out, "cluster %s is healthy: apid on %d nodes, etcd with one member per control plane, kube-apiserver answers, all nodes registered\n",
				tc.profile.Metadata.Name, len(tc.input.Nodes))

			return nil
		},
	}

	h.addFlags(cmd)

	return cmd
}

// storedOrFetchedKubeconfig returns the kubeconfig stored in clusters/<name>/, or fetches and stores it when
// there is none (or refresh asks for a new one).
func storedOrFetchedKubeconfig(ctx context.Context, o *rootOptions, tc *talosCluster, r *bootstrap.Runner, refresh bool) ([]byte, error) {
	path := filepath.Join(tc.outDir, bootstrap.KubeconfigFile)

	if !refresh {
		kubeconfig, err := sopsfile.DecryptFile(path)
		if err == nil {
			return kubeconfig, nil
		}

		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}

		fmt.Fprintf(o.errOut, "%s does not exist yet: fetching the kubeconfig from a control plane\n", path)
	}

	return fetchAndStore(ctx, o.out, tc, r)
}
