package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/sopsfile"
)

type bootstrapOptions struct {
	talosOptions

	dryRun bool
}

func newBootstrapCmd(o *rootOptions) *cobra.Command {
	b := &bootstrapOptions{talosOptions: talosOptions{rootOptions: o}}

	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Apply configs, bootstrap etcd exactly once, wait for health and store the kubeconfig",
		Long: `bootstrap takes the cluster's nodes from "booted on their static IPs" to "Kubernetes answers":

  1. apply, as ` + "`talforge apply --mode auto`" + ` does;
  2. bootstrap etcd on the first control plane of the profile, addressed by its own IP (never the
     VIP), exactly once: when any control plane reports etcd members or a running etcd, Bootstrap
     is not called; AlreadyExists counts as done;
  3. health: apid on every node, then etcd healthy with one member per control plane;
  4. fetch the admin kubeconfig and store it, and the talosconfig, SOPS-encrypted in
     clusters/<name>/ (kubeconfig.sops.yaml, talosconfig.sops.yaml);
  5. health: kube-apiserver reachable through the kubeconfig's endpoint (the VIP when the profile
     has one), then every node registered (Ready is not required: there may be no CNI yet).

It is safe to interrupt and run again; a second run on a healthy cluster changes nothing.`,
		Example: `  talforge bootstrap -p profiles/ha.yaml
  talforge bootstrap -p profiles/ha.yaml --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tc, err := b.loadTalosCluster(cmd.Context())
			if err != nil {
				return err
			}

			opts := b.runnerOptions()
			opts.DryRun = b.dryRun

			r, err := bootstrap.New(tc.input, opts)
			if err != nil {
				return err
			}

			return b.run(cmd.Context(), tc, r)
		},
	}

	cmd.Flags().BoolVar(&b.dryRun, "dry-run", false, "show what would be applied and whether etcd would be bootstrapped; change nothing")
	b.addFlags(cmd)

	return cmd
}

func (b *bootstrapOptions) run(ctx context.Context, tc *talosCluster, r *bootstrap.Runner) error {
	results, err := r.Apply(ctx)
	printApplyResults(b.out, results, bootstrap.ModeAuto)

	if err != nil {
		return err
	}

	if b.dryRun {
		for _, res := range results {
			if res.Action == bootstrap.ActionWouldInstall {
				fmt.Fprintf(b.out, "etcd: would be bootstrapped once the control planes run their configs\n")

				return nil
			}
		}
	}

	etcd, err := r.Bootstrap(ctx)
	if err != nil {
		return err
	}

	fmt.Fprintf(b.out, "etcd: %s (first control plane %s)\n", etcd.Action, etcd.Node)

	if b.dryRun {
		return nil
	}

	if err := r.TalosHealth(ctx); err != nil {
		return err
	}

	kubeconfig, err := fetchAndStore(ctx, b.out, tc, r)
	if err != nil {
		return err
	}

	if err := kubeHealth(ctx, r, kubeconfig); err != nil {
		return err
	}

	fmt.Fprintf(b.out, "cluster %s is up: etcd healthy, kube-apiserver answers, all %d nodes registered\n", tc.profile.Metadata.Name, len(tc.input.Nodes))

	return nil
}

// fetchAndStore fetches the admin kubeconfig from a control plane and stores it and the talosconfig,
// encrypted, in clusters/<name>/.
func fetchAndStore(ctx context.Context, out io.Writer, tc *talosCluster, r *bootstrap.Runner) ([]byte, error) {
	kubeconfig, err := r.Kubeconfig(ctx)
	if err != nil {
		return nil, err
	}

	sops, err := sopsfile.ProjectConfig(tc.profile.Root())
	if err != nil {
		return nil, err
	}

	written, err := bootstrap.Store(sops, tc.outDir, kubeconfig, tc.input.Talosconfig)
	if err != nil {
		return nil, err
	}

	for _, f := range written {
		fmt.Fprintf(out, "  wrote     %s (encrypted)\n", f)
	}

	return kubeconfig, nil
}

func kubeHealth(ctx context.Context, r *bootstrap.Runner, kubeconfig []byte) error {
	kube, err := bootstrap.NewKubeClient(kubeconfig)
	if err != nil {
		return err
	}

	return r.KubeHealth(ctx, kube)
}
