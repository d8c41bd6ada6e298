package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/lifecycle"
)

type importOptions struct {
	*rootOptions

	talosconfig string
	fromConfig  string
	kubeconfig  string
	endpoint    string
	nodes       []string
	talosPort   int
	pveEndpoint string
	caFile      string
	insecure    bool
	output      outputOptions
}

func newImportCmd(o *rootOptions) *cobra.Command {
	im := &importOptions{rootOptions: o}

	cmd := &cobra.Command{
		Use:   "import NAME --talosconfig FILE",
		Short: "Adopt a running Talos cluster built without talforge: profile, secrets and outputs, nothing changed on it",
		Long: `import reads a running cluster and writes what talforge needs to manage it, changing nothing on any
server:

  - every node's live machine config, through the Talos API with the cluster's own talosconfig
    (os:admin): the secrets bundle is taken from a control plane's config (as talosctl gen secrets
    --from-controlplane-config does), the nodes, addresses, network and versions go into
    profiles/NAME.yaml, and what the profile does not model into patch files under patches/NAME/;
  - with --proxmox-endpoint, the VMs of the nodes (matched by MAC, then by the guest agent's IP):
    VMID, PVE node and sizes. No tag is written: plan shows talforge's ownership tags, up adds them;
  - with --kubeconfig, Longhorn: the Helm release, its values, settings, backup target, recurring jobs,
    storage classes and the claims whose volumes have backups.

Before anything is written, every node is rendered the way generate renders it and compared with its
live config; the differences that remain are printed (secret values redacted). Then profiles/NAME.yaml
and the patches are written, the secrets bundle is stored encrypted, and clusters/NAME/ is generated.
Nothing is written when the cluster cannot be read or files of that name exist.`,
		Example: `  talforge import homelab --talosconfig ~/.talos/config --endpoint 192.168.1.51
  talforge import homelab --talosconfig talosconfig --kubeconfig kubeconfig --proxmox-endpoint https://pve:8006/api2/json`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return im.run(cmd, args[0]) },
	}

	cmd.Flags().StringVar(&im.talosconfig, "talosconfig", "", "the running cluster's talosconfig (required)")
	cmd.Flags().StringVar(&im.endpoint, "endpoint", "", "a control plane's IP to read from (default: the talosconfig's first endpoint)")
	cmd.Flags().StringSliceVar(&im.nodes, "nodes", nil, "node IPs to adopt (default: the talosconfig context's nodes, else the cluster's members)")
	cmd.Flags().StringVar(&im.fromConfig, "from-config", "", "take the secrets from this control plane machine config instead of the live one")
	cmd.Flags().StringVar(&im.kubeconfig, "kubeconfig", "", "the cluster's kubeconfig, to describe Longhorn")
	cmd.Flags().StringVar(&im.pveEndpoint, "proxmox-endpoint", "", "PVE API URL whose VMs are matched to the nodes (token from $TALFORGE_PVE_TOKEN)")
	cmd.Flags().StringVar(&im.caFile, "ca-file", "", "PEM CA bundle to verify the Proxmox certificate")
	cmd.Flags().BoolVar(&im.insecure, "insecure", false, "do not verify the Proxmox TLS certificate (lab hosts only; prefer --ca-file)")
	cmd.Flags().IntVar(&im.talosPort, "talos-port", 50000, "Talos API port on every node")
	_ = cmd.Flags().MarkHidden("talos-port") // the flag exists
	im.output.addFlag(cmd)

	return cmd
}

func (im *importOptions) run(cmd *cobra.Command, name string) error {
	if err := im.output.validate(); err != nil {
		return err
	}

	if im.talosconfig == "" {
		return &flagError{fmt.Errorf("--talosconfig FILE is required: import reads the nodes through the Talos API with the cluster's own talosconfig")}
	}

	in := lifecycle.ImportOptions{Name: name, PVE: lifecycle.PVEConnection{CAFile: im.caFile, Insecure: im.insecure, Log: im.errOut}, ProxmoxEndpoint: im.pveEndpoint}
	in.Talos.Endpoint, in.Talos.Nodes, in.Talos.Port = im.endpoint, im.nodes, im.talosPort

	var err error

	for _, f := range []struct {
		flag, path string
		into       *[]byte
	}{
		{"--talosconfig", im.talosconfig, &in.Talos.Talosconfig},
		{"--from-config", im.fromConfig, &in.Talos.FromConfig},
		{"--kubeconfig", im.kubeconfig, &in.Kubeconfig},
	} {
		if f.path == "" {
			continue
		}

		if *f.into, err = os.ReadFile(f.path); err != nil {
			return &flagError{fmt.Errorf("%s: %w", f.flag, err)}
		}
	}

	rep, err := lifecycle.Import(cmd.Context(), lifecycle.Options{Renderers: renderers(), Detail: im.errOut}, in)
	if rep == nil {
		return lifecycleError(err)
	}

	if werr := im.output.write(im.out, rep, func(w io.Writer) { printImport(w, rep) }); werr != nil && err == nil {
		err = werr
	}

	return lifecycleError(err)
}

// printImport lists what was written, the VMs, the differences left and what to do next.
func printImport(w io.Writer, rep *lifecycle.ImportReport) {
	for _, f := range rep.Written {
		fmt.Fprintf(w, "  wrote     %s\n", f)
	}

	if p := rep.Proxmox; p != nil {
		for _, m := range p.Matches {
			fmt.Fprintf(w, "  vm        %s: VMID %d on %s (matched by %s)\n", m.Node, m.VMID, m.PVENode, m.By)
		}

		for _, n := range p.Unmatched {
			fmt.Fprintf(w, "  vm        %s: no VM found\n", n)
		}

		for _, o := range p.Others {
			fmt.Fprintf(w, "  not ours  %s (left alone)\n", o)
		}
	}

	for _, d := range rep.Diffs {
		fmt.Fprintf(w, "\n%s: talforge renders a config that differs from the live one (secret values redacted)\n", d.Node)

		for line := range strings.Lines(d.Diff) {
			fmt.Fprintf(w, "  %s", line)
		}
	}

	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}

	if len(rep.Diffs) == 0 {
		fmt.Fprintf(w, "\nimported cluster %s: every node's config renders exactly as it runs.\n", rep.Cluster)
	} else {
		fmt.Fprintf(w, "\nimported cluster %s: %d node(s) differ; edit %s or the patches until `talforge plan` shows no config change.\n", rep.Cluster, len(rep.Diffs), rep.Profile)
	}

	fmt.Fprintf(w, "next: review %s, commit it with clusters/%s/, then `talforge plan -p %s`\n", rep.Profile, rep.Cluster, rep.Profile)
}
