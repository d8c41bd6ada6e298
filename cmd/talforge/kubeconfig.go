package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/atomicfile"
	"github.com/talforge/talforge/pkg/lifecycle"
)

type kubeconfigOptions struct {
	talosOptions

	out     string
	refresh bool
}

func newKubeconfigCmd(o *rootOptions) *cobra.Command {
	k := &kubeconfigOptions{talosOptions: talosOptions{rootOptions: o}}

	cmd := &cobra.Command{
		Use:   "kubeconfig --out PATH",
		Short: "Write a decrypted copy of the cluster's admin kubeconfig (mode 0600)",
		Long: `kubeconfig decrypts clusters/<name>/kubeconfig.sops.yaml and writes it to --out with mode 0600,
atomically. When the cluster has no stored kubeconfig yet (or with --refresh/--renew, or when its
client certificate expires within 30 days) it fetches one from a control plane through the Talos
API, which mints a new client certificate, and stores it encrypted first.

The kubeconfig holds cluster-admin credentials: talforge never prints it, and .gitignore keeps
/kubeconfig out of Git.`,
		Example: `  talforge kubeconfig -p profiles/ha.yaml --out ~/.kube/ha.yaml
  KUBECONFIG=~/.kube/ha.yaml kubectl get nodes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if k.out == "" {
				return &flagError{errors.New("--out PATH is required: talforge never prints credentials")}
			}

			opts, err := k.options()
			if err != nil {
				return err
			}

			kubeconfig, written, err := lifecycle.Kubeconfig(cmd.Context(), opts, k.refresh)
			if err != nil {
				return err
			}

			for _, f := range written {
				fmt.Fprintf(k.rootOptions.out, "  wrote     %s (encrypted)\n", f)
			}

			if err := atomicfile.Write(k.out, kubeconfig, 0o600); err != nil {
				return err
			}

			fmt.Fprintf(k.rootOptions.out, "wrote %s (mode 0600; cluster-admin credentials, keep it out of Git)\n", k.out)

			return nil
		},
	}

	cmd.Flags().StringVar(&k.out, "out", "", "file to write the decrypted kubeconfig to (required)")
	cmd.Flags().BoolVar(&k.refresh, "refresh", false, "fetch a fresh kubeconfig from a control plane and store it before writing")
	// Talos mints a new admin client certificate on every fetch: a refresh is a renewal.
	cmd.Flags().BoolVar(&k.refresh, "renew", false, "the same as --refresh: a new kubeconfig carries a new client certificate (Talos mints one per fetch)")
	k.addFlags(cmd)

	return cmd
}
