package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/proxmox"
	"github.com/talforge/talforge/pkg/schematic"
	"github.com/talforge/talforge/pkg/sopsfile"
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
	cmd.Flags().IntVar(&o.parallelism, "parallelism", 4, "how many VMs to work on at once")
}

// connect resolves the token (TALFORGE_PVE_TOKEN or the SOPS token file), builds the TLS
// configuration and checks that the API answers. The token secret is never printed.
func (o *pveOptions) connect(ctx context.Context, c *profile.Cluster) (*proxmox.Telmate, error) {
	if c.Proxmox == nil {
		return nil, invalid(fmt.Errorf("%s: proxmox: the profile has no proxmox section", c.File()))
	}

	if o.parallelism < 1 {
		return nil, &flagError{fmt.Errorf("--parallelism must be at least 1, got %d", o.parallelism)}
	}

	tok, src, err := proxmox.ResolveToken(c, os.Getenv, sopsfile.DecryptFile)
	if err != nil {
		return nil, invalid(err)
	}

	caFile := o.caFile
	if caFile == "" {
		caFile = c.Resolve(c.Proxmox.CAFile)
	}

	insecure := o.insecure || c.Proxmox.InsecureSkipVerify
	if insecure {
		fmt.Fprintln(o.errOut, "warning: TLS certificate verification of the Proxmox API is disabled")
	}

	tlsCfg, err := proxmox.TLSConfig(caFile, insecure)
	if err != nil {
		return nil, invalid(err)
	}

	api, err := proxmox.NewTelmateAPI(proxmox.ClientOptions{Endpoint: c.Proxmox.Endpoint, Token: tok, TLS: tlsCfg})
	if err != nil {
		return nil, invalid(err)
	}

	v, err := api.Version(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s as %s (token from %s): %w", c.Proxmox.Endpoint, tok.ID, src, err)
	}

	fmt.Fprintf(o.errOut, "connected to Proxmox VE %s at %s as %s\n", v, c.Proxmox.Endpoint, tok.ID)

	return api, nil
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

	plan bool
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
     node's name or VMID but without that tag is foreign: it is never touched and provision
     fails. Each VM is checked again right before every change;
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

	cmd.Flags().BoolVar(&p.plan, "plan", false, "show what would change and exit (2 if something would change, 0 if not)")
	p.addFlags(cmd)

	return cmd
}

func (p *provisionOptions) run(ctx context.Context) error {
	c, err := p.loadProfile(ctx)
	if err != nil {
		return err
	}

	if !p.plan { // one run at a time per cluster; a read-only look needs no lock
		var unlock func()
		if ctx, unlock, err = lockCluster(ctx, c); err != nil {
			return err
		}
		defer unlock()
	}

	img, err := schematic.ForCluster(c)
	if err != nil {
		return err
	}

	specs, boot, err := proxmox.Desired(c, img)
	if err != nil {
		return invalid(err)
	}

	findings := proxmox.LintSpecs(specs, img)
	for _, f := range findings {
		if f.Severity == proxmox.SeverityWarning {
			fmt.Fprintln(p.errOut, "warning:", f)
		}
	}

	api, err := p.connect(ctx, c)
	if err != nil {
		return err
	}

	plan, err := proxmox.Observe(ctx, api, c.Metadata.Name, specs, boot)
	if err != nil {
		return err
	}

	plan.Findings = findings
	plan.Print(p.out)

	if err := plan.Err(); err != nil {
		return err
	}

	if p.plan {
		if plan.HasChanges() {
			return &exitError{code: exitChanges} // "would change", already reported
		}

		return nil
	}

	if !plan.HasChanges() {
		fmt.Fprintf(p.out, "\nNothing to do: every VM of cluster %s matches the profile and runs.\n", c.Metadata.Name)
		return nil
	}

	fmt.Fprintln(p.out)

	ex := proxmox.NewExecutor(api, proxmox.Options{Parallelism: p.parallelism, Events: p.events()})
	res, applyErr := ex.Apply(ctx, plan)

	if res != nil {
		printProvisionResult(p, res)
	}

	if applyErr != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted; tasks already started keep running in Proxmox, run provision again to converge: %w", applyErr)
		}

		return applyErr
	}

	return nil
}

func printProvisionResult(p *provisionOptions, res *proxmox.Result) {
	width := 0
	for _, r := range res.VMs {
		width = max(width, len(r.Name))
	}

	ok := 0

	for _, r := range res.VMs {
		var what []string

		switch {
		case r.Err != nil:
			what = append(what, "FAILED")
		case r.Action == proxmox.ActionCreate:
			what = append(what, "created")
		case r.Action == proxmox.ActionUpdate:
			what = append(what, "updated")
		default:
			what = append(what, "unchanged")
		}

		if r.Started {
			what = append(what, "started")
		}

		if len(r.Pending) > 0 {
			what = append(what, "restart it to apply: "+strings.Join(r.Pending, ", "))
		}

		if r.Err == nil {
			ok++
		}

		fmt.Fprintf(p.out, "  %-*s  VMID %-6d %s\n", width, r.Name, r.VMID, strings.Join(what, ", "))
	}

	fmt.Fprintf(p.out, "\n%d of %d VMs provisioned.\n", ok, len(res.VMs))
}
