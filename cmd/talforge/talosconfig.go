package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/atomicfile"
	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/machineconfig"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/sopsfile"
)

func newTalosconfigCmd(o *rootOptions) *cobra.Command {
	var (
		out   string
		renew bool
	)

	cmd := &cobra.Command{
		Use:   "talosconfig [--renew] [--out PATH]",
		Short: "Show when the talosconfig's client certificate expires; renew it; write a decrypted copy (mode 0600)",
		Long: `talosconfig reads clusters/<name>/talosconfig.sops.yaml and says when its client certificate
(os:admin) expires. generate and up mint a new one from the secrets bundle once it is within 30
days of expiry; --renew mints one now (as generate does: the lockfile stays consistent), and
stores it re-encrypted. --out writes the decrypted talosconfig atomically with mode 0600 (for
talosctl); talforge never prints it.`,
		Example: `  talforge talosconfig -p profiles/ha.yaml
  talforge talosconfig -p profiles/ha.yaml --renew --out ~/.talos/ha.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := o.profilePath()
			if err != nil {
				return err
			}

			if renew {
				res, err := generate.Run(cmd.Context(), generate.Options{Profile: path, Renderers: renderers(), RenewTalosconfig: true})
				if err != nil {
					return err
				}

				for _, f := range res.Files.Written {
					fmt.Fprintf(o.out, "  wrote     %s\n", f)
				}
			}

			c, err := profile.LoadContext(cmd.Context(), path)
			if err != nil {
				return err
			}

			data, err := sopsfile.DecryptFile(filepath.Join(c.OutputDir(), generate.TalosconfigFile))
			if err != nil {
				return fmt.Errorf("talosconfig: %w (run `talforge generate` first)", err)
			}

			expires, err := machineconfig.TalosconfigExpiry(data)
			if err != nil {
				return err
			}

			fmt.Fprintf(o.out, "talosconfig of cluster %s: client certificate expires on %s (in %d days)\n",
				c.Metadata.Name, expires.UTC().Format(time.DateOnly), int(time.Until(expires).Hours()/24))

			if out != "" {
				if err := atomicfile.Write(out, data, 0o600); err != nil {
					return err
				}

				fmt.Fprintf(o.out, "wrote %s (mode 0600; os:admin credentials, keep it out of Git)\n", out)
			}

			return nil
		},
	}

	cmd.Flags().BoolVar(&renew, "renew", false, "mint a new client certificate from the secrets bundle now and store it re-encrypted")
	cmd.Flags().StringVar(&out, "out", "", "also write the decrypted talosconfig to this file (mode 0600)")

	return cmd
}
