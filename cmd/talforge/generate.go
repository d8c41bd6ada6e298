package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/longhorn"
)

type generateOptions struct {
	*rootOptions
	outDir     string
	commit     bool
	sopsConfig string
	output     outputOptions
}

func newGenerateCmd(o *rootOptions) *cobra.Command {
	g := &generateOptions{rootOptions: o}

	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Write the cluster's Talos configs, encrypted secrets and lockfile to clusters/<name>/",
		Long: `generate renders every node's machine config from the profile with Talos' machinery and
writes clusters/<name>/: the Talos secrets bundle (created once, SOPS-encrypted, never
replaced), nodes/<node>.yaml (secret fields encrypted), talosconfig.sops.yaml, schematic.yaml,
Longhorn values and manifests, the IAM policy and talforge.lock.yaml.

On a machine without an age identity it creates one (~/.config/sops/age/keys.txt, or
$SOPS_AGE_KEY_FILE) and .sops.yaml creation rules for it. Recipients come from the project's
.sops.yaml (or --sops-config), never from one found above --out; when they change, every
encrypted file is re-encrypted for them, the secrets bundle and kubeconfig without a byte of
their content changing. Secret input files in clear (proxmox.tokenFile,
longhorn.backup.credentialsFile) are refused: see talforge secret set. Nothing is written when the profile
or a patch is invalid; files whose content did not change are not rewritten.`,
		Example: `  talforge generate -p profiles/tazlab.yaml
  talforge generate -p profiles/ha.yaml --commit`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.output.validate(); err != nil {
				return err
			}

			path, err := g.profilePath()
			if err != nil {
				return err
			}

			res, err := generate.Run(cmd.Context(), generate.Options{
				Profile:    path,
				OutDir:     g.outDir,
				Commit:     g.commit,
				Renderers:  renderers(),
				Log:        g.errOut,
				SOPSConfig: g.sopsConfig,
			})
			if err != nil {
				return err
			}

			g.printWarnings(res.Cluster)

			return g.output.write(g.out, res, func(w io.Writer) { printGenerated(w, res) })
		},
	}

	cmd.Flags().StringVar(&g.outDir, "out", "", "output directory (default clusters/<name> under the project root)")
	cmd.Flags().BoolVar(&g.commit, "commit", false, "commit the output directory with git when it changed")
	g.output.addFlag(cmd)
	cmd.Flags().StringVar(&g.sopsConfig, "sops-config", "", "SOPS creation rules that choose the recipients (default: .sops.yaml at the project root, never one above --out)")

	return cmd
}

// renderers are the extra outputs generate writes beside the machine configs.
func renderers() []generate.Renderer { return []generate.Renderer{longhorn.Files} }

// printGenerated lists what generate wrote and removed, then counts.
func printGenerated(w io.Writer, res *generate.Result) {
	for _, f := range res.Files.Written {
		fmt.Fprintf(w, "  wrote     %s/%s\n", res.OutDir, f)
	}

	for _, f := range res.Files.Removed {
		fmt.Fprintf(w, "  removed   %s/%s\n", res.OutDir, f)
	}

	fmt.Fprintf(w, "%s: %d written, %d unchanged, %d removed (schematic %s)\n",
		res.OutDir, len(res.Files.Written), len(res.Files.Unchanged), len(res.Files.Removed), res.Schematic)

	if res.Committed {
		fmt.Fprintf(w, "committed %s\n", res.OutDir)
	}
}
