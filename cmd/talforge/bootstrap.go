package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/lifecycle"
)

type bootstrapOptions struct {
	talosOptions

	dryRun bool
	output outputOptions
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
			opts, err := b.options()
			if err != nil {
				return err
			}

			if err := b.output.validate(); err != nil {
				return err
			}

			rep, err := lifecycle.Bootstrap(cmd.Context(), opts, b.dryRun)
			if rep != nil {
				if werr := b.output.write(b.out, rep, func(w io.Writer) { b.print(w, rep) }); werr != nil && err == nil {
					err = werr
				}
			}

			return err
		},
	}

	b.output.addFlag(cmd)
	cmd.Flags().BoolVar(&b.dryRun, "dry-run", false, "show what would be applied and whether etcd would be bootstrapped; change nothing")
	b.addFlags(cmd)

	return cmd
}

// print reports the apply results, etcd, the files stored and the outcome.
func (b *bootstrapOptions) print(w io.Writer, rep *lifecycle.TalosReport) {
	printApplyResults(w, rep.Nodes, rep.Mode)

	if rep.Etcd == nil {
		if b.dryRun && len(rep.Nodes) > 0 {
			fmt.Fprintf(w, "etcd: would be bootstrapped once the control planes run their configs\n")
		}

		return
	}

	fmt.Fprintf(w, "etcd: %s (first control plane %s)\n", rep.Etcd.Action, rep.Etcd.Node)

	for _, f := range rep.Written {
		fmt.Fprintf(w, "  wrote     %s (encrypted)\n", f)
	}

	if rep.Healthy {
		fmt.Fprintf(w, "cluster %s is up: etcd healthy, kube-apiserver answers, all %d nodes registered\n", rep.Cluster, len(rep.Nodes))
	}
}
