// Adopted VMs (nodes[].adopted): VMs a person made by hand that talforge manages only as far
// as the profile says (ownership tags, cores, memory, disk growth) and never creates.

package proxmox

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/talforge/talforge/pkg/profile"
)

// IsAdopted reports whether the node's VM was made by hand and adopted (nodes[].adopted).
func (s VMSpec) IsAdopted() bool { return s.Node.Adopted != nil }

// AdoptedVMs maps the VMIDs of a profile's adopted nodes to the node names, for
// DestroyOptions.Adopted.
func AdoptedVMs(c *profile.Cluster) map[int]string {
	out := map[int]string{}

	for _, n := range c.Nodes {
		if n.IsAdopted() && n.VMID != 0 {
			out[n.VMID] = n.Name
		}
	}

	return out
}

// adoptTags are the tags an adopted VM gets beside its own, in the order the plan names them:
// the marker, the ownership tag, the role (the tags of VMs talforge creates, see Tags).
func adoptTags(cluster string, role profile.Role) []string {
	return []string{TagManaged, OwnerTag(cluster), strings.ToLower(string(role))}
}

// missingTags returns the tags of want that the tag list have lacks (PVE tags are
// case-insensitive).
func missingTags(have string, want []string) []string {
	cur := splitTags(have)

	var out []string

	for _, w := range want {
		found := false

		for _, c := range cur {
			if strings.EqualFold(c, w) {
				found = true
				break
			}
		}

		if !found {
			out = append(out, w)
		}
	}

	return out
}

// mergeTags returns the VM's own tags, as written, followed by those of add it lacks: tags are
// only ever added to an adopted VM.
func mergeTags(have string, add []string) string {
	return strings.Join(append(splitTags(have), missingTags(have, add)...), ";")
}

// Compiled on first use, not at package initialisation, to keep start-up cheap (issue 16).
var rxNetKey = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^net\d+$`) })

// hasMAC reports whether one of the VM's NICs (netN) has the MAC address.
func hasMAC(cfg map[string]string, mac string) bool {
	for k, v := range cfg {
		if !rxNetKey().MatchString(k) {
			continue
		}

		if _, m, _ := splitNet(v); m != "" && strings.EqualFold(m, mac) {
			return true
		}
	}

	return false
}

// observeAdopted plans an adopted node's VM. Its identity is the profile's VMID on the
// profile's PVE node, whatever the VM is called, confirmed by a NIC with the node's MAC (a VMID
// freed and reused by another VM has another MAC). Without an ownership tag, or with this
// cluster's node tag, the VM is the node's; any other owner, ambiguous tags, a missing VM or
// another MAC are conflicts: such a VM is never touched, and a missing one never created.
func observeAdopted(ctx context.Context, api API, plan *Plan, vms []VMResource, cluster string, s VMSpec) (VMPlan, error) {
	vp := VMPlan{Spec: s, VMID: s.VMID}

	conflict := func(vm VMResource, format string, a ...any) {
		plan.Conflicts = append(plan.Conflicts, Conflict{VM: vm, Node: s.Name, Message: fmt.Sprintf(format, a...)})
	}

	var found *VMResource

	for i, vm := range vms {
		switch {
		case vm.VMID == s.VMID:
			found = &vms[i]
		case vm.IsNodeOf(cluster) && vm.Name == s.Name:
			conflict(vm, "carries the ownership tag %s and the name of node %s, whose VM is the adopted VM %d: destroy the duplicate or fix nodes[].vmid",
				OwnerTag(cluster), s.Name, s.VMID)
		}
	}

	if found == nil {
		conflict(VMResource{VMID: s.VMID, Node: s.PVENode}, "the adopted VM of node %s does not exist: talforge never creates an adopted node's VM "+
			"(restore it, or remove nodes[].adopted and nodes[].vmid to have talforge create a new VM)", s.Name)

		return vp, nil
	}

	vm := *found
	vp.VMName, vp.Running = vm.Name, vm.Running

	o := vm.Ownership()

	switch {
	case vm.Node != s.PVENode:
		conflict(vm, "is the adopted VM of node %s but runs on %s, not on %s: migrate it back in Proxmox or change pveNode", s.Name, vm.Node, s.PVENode)
		return vp, nil
	case vm.Template:
		conflict(vm, "is a template, not the adopted VM of node %s: check nodes[].vmid", s.Name)
		return vp, nil
	case vm.Container:
		conflict(vm, "is an LXC container, not the adopted VM of node %s: check nodes[].vmid", s.Name)
		return vp, nil
	case o.Ambiguous != "":
		conflict(vm, "has the VMID of adopted node %s but its tags are ambiguous: it %s; talforge will not touch it (fix its tags by hand)", s.Name, o.Ambiguous)
		return vp, nil
	case o.Kind != KindNone && !o.Is(KindNode, cluster):
		conflict(vm, "has the VMID of adopted node %s but is tagged as a %s of cluster %s; talforge will not touch it", s.Name, o.Kind, o.Cluster)
		return vp, nil
	}

	cfg, err := api.VMConfig(ctx, vm.Node, vm.VMID)
	if err != nil {
		return vp, fmt.Errorf("VM %s (%d): reading config: %w", s.Name, vm.VMID, err)
	}

	if !hasMAC(cfg, s.Node.MAC) {
		conflict(vm, "has the VMID of adopted node %s but no NIC with its MAC %s: another VM took the VMID? talforge will not touch it (check nodes[].vmid and nodes[].mac)",
			s.Name, s.Node.MAC)

		return vp, nil
	}

	d, add := diffAdopted(cluster, s, cfg)
	vp.Set, vp.Resize, vp.Changes, vp.Notes, vp.AddTags = d.set, d.resize, d.changes, d.notes, add

	for _, e := range d.errs {
		conflict(vm, "%s", e)
	}

	if len(add) > 0 && vm.Name != s.Name {
		vp.Notes = append(vp.Notes, fmt.Sprintf("the VM keeps its name %q", vm.Name))
	}

	vp.Action = ActionUnchanged
	if len(vp.Set) > 0 || len(vp.Resize) > 0 {
		vp.Action = ActionUpdate
	}

	if vm.Running {
		if err := notePending(ctx, api, &vp, vm); err != nil {
			return vp, err
		}
	}

	return vp, nil
}

// pveDefaultMemory is the memory of a VM config without a memory key (qemu-server
// src/PVE/QemuServer/Memory.pm, default of 'current').
const pveDefaultMemory = 512

// diffAdopted compares an adopted VM's config with what the profile manages of it: the
// ownership tags (added, never removed), the vCPUs (cores × sockets), the memory and the size
// of the disks in the adopted slots (grown, never shrunk). The CPU type, NICs, disk options and
// storage, boot order, cloud-init and everything else are the user's and not compared.
func diffAdopted(cluster string, s VMSpec, cur map[string]string) (diff, []string) {
	d := diff{set: Params{}, resize: map[string]int{}}

	add := missingTags(cur["tags"], adoptTags(cluster, s.Node.Role))
	if len(add) > 0 {
		d.add("tags", cur["tags"], mergeTags(cur["tags"], add))
	}

	if want := s.Node.Cores; want > 0 {
		cores, sockets := atoiDefault(cur["cores"], 1), atoiDefault(cur["sockets"], 1)

		switch {
		case cores*sockets == want:
		case want%sockets == 0:
			// keep the user's sockets; cores are per socket
			d.set["cores"] = strconv.Itoa(want / sockets)
			d.changes = append(d.changes, Change{Key: "cores", From: vcpus(cores, sockets), To: vcpus(want/sockets, sockets)})
		default:
			d.set["cores"], d.set["sockets"] = strconv.Itoa(want), "1"
			d.changes = append(d.changes, Change{Key: "cores", From: vcpus(cores, sockets), To: vcpus(want, 1)})
		}
	}

	if want := s.Node.Memory; want > 0 {
		// PVE 8.1+ writes memory as a property string (current=<MiB>); older ones as a number
		have := atoiDefault(parseProp(cur["memory"], "current")["current"], pveDefaultMemory)
		if have != want {
			d.set["memory"] = strconv.Itoa(want)
			d.changes = append(d.changes, Change{Key: "memory", From: strconv.Itoa(have), To: strconv.Itoa(want)})
		}
	}

	disks := []struct {
		field, slot string
		gib         int
	}{
		{"adopted.osDisk", s.Node.Adopted.OSDiskSlot(), s.OSDiskGiB},
		{"adopted.longhornDisk", s.Node.Adopted.LonghornDiskSlot(), s.DataDiskGiB},
	}

	for _, dk := range disks {
		if dk.gib == 0 {
			continue // no Longhorn disk in the profile
		}

		have, ok := cur[dk.slot]
		h := parseProp(have, "file")

		switch {
		case !ok:
			d.errs = append(d.errs, fmt.Sprintf("%s: the adopted VM has no disk in %s (nodes[].%s); talforge does not add disks to an adopted VM", dk.slot, dk.slot, dk.field))
			continue
		case h["media"] == "cdrom":
			d.errs = append(d.errs, fmt.Sprintf("%s is a CD-ROM drive, not a disk (nodes[].%s)", dk.slot, dk.field))
			continue
		}

		switch haveGiB := diskGiB(h); {
		case haveGiB == 0:
			d.notes = append(d.notes, fmt.Sprintf("%s reports no size; it is not grown", dk.slot))
		case dk.gib > haveGiB:
			d.resize[dk.slot] = dk.gib
			d.changes = append(d.changes, Change{Key: dk.slot + " size", From: h["size"], To: strconv.Itoa(dk.gib) + "G"})
		case dk.gib < haveGiB:
			d.notes = append(d.notes, fmt.Sprintf("%s is %s, larger than the profile's %dG; disks never shrink", dk.slot, h["size"], dk.gib))
		}
	}

	return d, add
}

func vcpus(cores, sockets int) string {
	if sockets == 1 {
		return strconv.Itoa(cores)
	}

	return fmt.Sprintf("%d (%d sockets × %d)", cores*sockets, sockets, cores)
}

func atoiDefault(s string, def int) int {
	if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
		return n
	}

	return def
}
