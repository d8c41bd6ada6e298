package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/lifecycle"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/proxmox"
)

// pveOptions are the flags of commands that talk to Proxmox.
type pveOptions struct {
	*rootOptions

	caFile      string
	insecure    bool
	parallelism int
}

func (o *pveOptions) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.caFile, "ca-file", "", "PEM CA bundle to verify the Proxmox certificate (overrides proxmox.caFile)")
	cmd.Flags().BoolVar(&o.insecure, "insecure", false, "do not verify the Proxmox TLS certificate (lab hosts only; prefer --ca-file)")
	cmd.Flags().IntVar(&o.parallelism, "parallelism", proxmox.DefaultParallelism, "how many VMs to work on at once")
}

// connection is how the flags say to reach Proxmox; notes go to stderr.
func (o *pveOptions) connection() lifecycle.PVEConnection {
	return lifecycle.PVEConnection{CAFile: o.caFile, Insecure: o.insecure, Log: o.errOut}
}

func (o *pveOptions) checkFlags() error {
	if o.parallelism < 1 {
		return &flagError{fmt.Errorf("--parallelism must be at least 1, got %d", o.parallelism)}
	}
	return nil
}

// events prints progress lines to stderr (serialised: they come from several goroutines).
func (o *pveOptions) events() func(proxmox.Event) {
	var mu sync.Mutex

	return func(e proxmox.Event) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(o.errOut, "  %s\n", e)
	}
}

type provisionOptions struct {
	pveOptions

	plan   bool
	output outputOptions
}

func newProvisionCmd(o *rootOptions) *cobra.Command {
	p := &provisionOptions{pveOptions: pveOptions{rootOptions: o}}

	cmd := &cobra.Command{
		Use:   "provision",
		Short: "Create or update the cluster's Proxmox VMs (static IPs via cloud-init) and start them",
		Long: `provision makes Proxmox match the profile through the PVE API alone (no SSH, no Terraform state):

  1. the Image Factory nocloud ISO of the cluster's schematic and Talos version must be in
     proxmox.isoStorage on every PVE node used; if it is not, PVE downloads it (download-url);
  2. one VM per node: virtio-scsi-pci, cpu host, ballooning off, the OS disk (scsi0), the Longhorn
     data disk (scsi1, serial ` + profile.LonghornDiskSerial + `), a virtio NIC with the node's fixed MAC on
     proxmox.bridge (+ VLAN), the ISO as CD-ROM, a cloud-init drive with the static address
     (ipconfig0, nameserver, searchdomain), a serial console, the QEMU agent when the schematic
     has it, and the tags talforge, talforge.node.<cluster> and the role;
  3. VMs are found by the ownership tag talforge.node.<cluster> and their name. A VM with a
     node's name or VMID but without that tag is foreign: it and that node are left alone,
     the other nodes are provisioned, and provision then fails naming it. Each VM is checked
     again right before every change;
  4. new VMs are created, existing ones updated field by field (disks only grow), then started;
     a data disk kept by ` + "`destroy --keep-data-disks`" + ` is moved back from its holder VM.

Progress goes to stderr; the plan and the summary to stdout. A second run changes nothing.
Interrupting (Ctrl-C) stops cleanly; running again converges.

The API token comes from $TALFORGE_PVE_TOKEN or the SOPS-encrypted proxmox.tokenFile
(` + "`token: USER@REALM!TOKENID=SECRET`" + `). See docs/proxmox.md for the privileges it needs.

Exit codes: 0 ok; 1 failure (including foreign VMs); 2 with --plan: changes pending; 3 invalid input.`,
		Example: `  talforge provision -p profiles/tazlab.yaml --plan
  talforge provision -p profiles/ha.yaml --parallelism 6`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return p.run(cmd.Context()) },
	}

	p.output.addFlag(cmd)
	cmd.Flags().BoolVar(&p.plan, "plan", false, "show what would change and exit (2 if something would change, 0 if not)")
	p.addFlags(cmd)

	return cmd
}

func (p *provisionOptions) run(ctx context.Context) error {
	path, err := p.profilePath()
	if err != nil {
		return err
	}
	if err := p.checkFlags(); err != nil {
		return err
	}
	if err := p.output.validate(); err != nil {
		return err
	}

	rep, err := lifecycle.Provision(ctx, lifecycle.Options{
		Profile:    path,
		Progress:   p.errOut,
		ConnectPVE: p.connection().Connect,
		Proxmox:    proxmox.Options{Parallelism: p.parallelism, Events: p.events()},
	}, p.plan)
	if p.output.json() {
		if rep != nil {
			if werr := writeJSON(p.out, rep); werr != nil && err == nil {
				err = werr
			}
		}
		if err == nil && p.plan && rep.Plan.HasChanges() {
			return &exitError{code: exitChanges}
		}
		return err
	}
	if rep != nil && rep.Plan != nil {
		rep.Plan.Print(p.out)
	}

	switch {
	case err != nil:
		if rep != nil && rep.Result != nil {
			printProvisionResult(p, rep.Result)
		}
		return err
	case p.plan && rep.Plan.HasChanges():
		return &exitError{code: exitChanges} // "would change", already reported
	case p.plan:
		return nil
	case rep.Result == nil:
		fmt.Fprintf(p.out, "\nNothing to do: every VM of cluster %s matches the profile and runs.\n", rep.Cluster)
		return nil
	}

	fmt.Fprintln(p.out)
	printProvisionResult(p, rep.Result)

	return nil
}

func printProvisionResult(p *provisionOptions, res *proxmox.Result) {
	width := 0
	for _, r := range res.VMs {
		width = max(width, len(r.Name))
	}

	ok := 0

	for _, r := range res.VMs {
		if r.Err == nil {
			ok++
		}

		fmt.Fprintf(p.out, "  %-*s  VMID %-6d %s\n", width, r.Name, r.VMID, lifecycle.DescribeVM(r, false))
	}

	fmt.Fprintf(p.out, "\n%d of %d VMs provisioned.\n", ok, len(res.VMs))
}
