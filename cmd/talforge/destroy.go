package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/proxmox"
)

type destroyOptions struct {
	pveOptions

	yes           bool
	dryRun        bool
	keepDataDisks bool
	includeParked bool
	nodes         []string
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
	cmd.Flags().StringSliceVar(&d.nodes, "node", nil, "destroy only these VMs (node names; repeatable)")
	d.addFlags(cmd)

	return cmd
}

func (d *destroyOptions) run(ctx context.Context) error {
	if d.keepDataDisks && d.includeParked {
		return &flagError{errors.New("--keep-data-disks and --include-parked-disks contradict each other")}
	}

	c, err := d.loadProfile(ctx)
	if err != nil {
		return err
	}

	if !d.dryRun { // one run at a time per cluster; a read-only look needs no lock
		var unlock func()
		if ctx, unlock, err = lockCluster(ctx, c); err != nil {
			return err
		}
		defer unlock()
	}

	api, err := d.connect(ctx, c)
	if err != nil {
		return err
	}

	name := c.Metadata.Name

	plan, err := proxmox.PlanDestroy(ctx, api, name, proxmox.DestroyOptions{Nodes: d.nodes, KeepDataDisks: d.keepDataDisks, IncludeParked: d.includeParked})
	if err != nil {
		return err
	}

	if plan.Empty() {
		for _, s := range plan.Skipped {
			fmt.Fprintf(d.out, "  # %s\n", s)
		}

		tags := proxmox.OwnerTag(name)
		if d.includeParked {
			tags += " or " + proxmox.HolderTag(name)
		}

		fmt.Fprintf(d.out, "Nothing to destroy: no VM carries the tag %s.\n", tags)

		return nil
	}

	plan.Print(d.out)

	if d.dryRun {
		return nil
	}

	if !d.yes {
		fmt.Fprintf(d.errOut, "\nType the cluster name (%s) to destroy these VMs: ", name)

		line, _ := bufio.NewReader(d.in).ReadString('\n')
		if strings.TrimSpace(line) != name {
			return invalid(fmt.Errorf("confirmation %q does not match the cluster name %q; nothing was destroyed", strings.TrimSpace(line), name))
		}
	}

	ex := proxmox.NewExecutor(api, proxmox.Options{Parallelism: d.parallelism, Events: d.events()})
	if err := ex.Destroy(ctx, plan); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted; run destroy again to finish: %w", err)
		}

		return err
	}

	fmt.Fprintf(d.out, "\nDestroyed %d VM(s) of cluster %s.\n", len(plan.Items)+len(plan.Holders), name)

	return nil
}
