package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/lifecycle"
	"github.com/talforge/talforge/pkg/proxmox"
)

type destroyOptions struct {
	pveOptions

	yes           bool
	dryRun        bool
	keepDataDisks bool
	includeParked bool
	// includeAdopted also deletes VMs the profile adopted (nodes[].adopted).
	includeAdopted bool
	nodes          []string
}

func newDestroyCmd(o *rootOptions) *cobra.Command {
	d := &destroyOptions{pveOptions: pveOptions{rootOptions: o}}

	cmd := &cobra.Command{
		Use:   "destroy",
		Short: "Stop and delete the cluster's Proxmox VMs (only VMs tagged talforge.node.<cluster>)",
		Long: `destroy stops and deletes (with purge) every VM that carries the cluster's ownership tag
talforge.node.<cluster>. VMs without it are never touched, whatever their name. Each VM is
checked again (ownership tag and name) right before it is stopped, its disk moved or it is
deleted: a VM renamed or retagged after the plan is left alone and reported.

--keep-data-disks keeps each VM's Longhorn data disk: it is moved into a holder VM
<node>-parked, tagged talforge.parked.<cluster> and never started, before the VM is deleted,
because Proxmox deletes every disk a VM owns, detached ones included. The next
` + "`talforge provision`" + ` re-attaches the disk to the re-created VM and removes the holder.
--include-parked-disks also deletes the cluster's holder VMs, and the kept disks with them.
VMs the profile adopted (nodes[].adopted: made by hand, taken over by talforge import) are left
alone, even once they carry the ownership tag, unless --include-adopted is given.

It asks you to type the cluster name unless --yes is given.`,
		Example: `  talforge destroy -p profiles/tazlab.yaml --keep-data-disks
  talforge destroy -p profiles/ha.yaml --node worker-3 --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return d.run(cmd.Context()) },
	}

	cmd.Flags().BoolVar(&d.yes, "yes", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&d.dryRun, "dry-run", false, "show what would be destroyed and exit")
	cmd.Flags().BoolVar(&d.keepDataDisks, "keep-data-disks", false, "keep the Longhorn data disks for re-created VMs")
	cmd.Flags().BoolVar(&d.includeParked, "include-parked-disks", false, "also delete the holder VMs of kept data disks, and the disks")
	cmd.Flags().BoolVar(&d.includeAdopted, "include-adopted", false, "also delete the VMs the profile adopted (nodes[].adopted)")
	cmd.Flags().StringSliceVar(&d.nodes, "node", nil, "destroy only these VMs (node names; repeatable)")
	d.addFlags(cmd)

	return cmd
}

func (d *destroyOptions) run(ctx context.Context) error {
	if d.keepDataDisks && d.includeParked {
		return &flagError{errors.New("--keep-data-disks and --include-parked-disks contradict each other")}
	}

	path, err := d.profilePath()
	if err != nil {
		return err
	}

	do := lifecycle.DestroyOptions{
		DestroyOptions: proxmox.DestroyOptions{Nodes: d.nodes, KeepDataDisks: d.keepDataDisks, IncludeParked: d.includeParked, IncludeAdopted: d.includeAdopted},
		DryRun:         d.dryRun,
		Show:           func(plan *proxmox.DestroyPlan) { d.show(plan) },
	}
	if !d.yes {
		do.Confirm = func(prompt string) (string, error) {
			fmt.Fprintf(d.errOut, "\n%s", prompt)
			line, _ := bufio.NewReader(d.in).ReadString('\n') // no answer (EOF) is no confirmation

			return line, nil
		}
	}

	plan, err := lifecycle.Destroy(ctx, lifecycle.Options{
		Profile: path, Progress: d.errOut, ConnectPVE: d.connection().Connect,
		Proxmox: proxmox.Options{Parallelism: d.parallelism, Events: d.events()},
	}, do)
	if err != nil {
		return lifecycleError(err)
	}

	if !plan.Empty() && !d.dryRun {
		fmt.Fprintf(d.out, "\nDestroyed %d VM(s) of cluster %s.\n", len(plan.Items)+len(plan.Holders), plan.Cluster)
	}

	return nil
}

// show prints the plan, or why there is nothing to destroy.
func (d *destroyOptions) show(plan *proxmox.DestroyPlan) {
	if !plan.Empty() {
		plan.Print(d.out)
		return
	}

	for _, s := range plan.Skipped {
		fmt.Fprintf(d.out, "  # %s\n", s)
	}

	tags := proxmox.OwnerTag(plan.Cluster)
	if d.includeParked {
		tags += " or " + proxmox.HolderTag(plan.Cluster)
	}

	fmt.Fprintf(d.out, "Nothing to destroy: no VM carries the tag %s.\n", tags)
}
