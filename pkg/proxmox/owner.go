package proxmox

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/talforge/talforge/pkg/profile"
)

// Ownership tags.
//
// A VM belongs to a cluster through exactly one ownership tag that names both its role and the
// cluster: talforge.node.<cluster> on node VMs, talforge.parked.<cluster> on the holder VMs of
// kept data disks. Cluster names are DNS labels ([a-z0-9-]), which never contain '.', so the
// cluster is everything after the second '.' and the two namespaces cannot overlap whatever a
// cluster is called: a cluster named "parked" owns talforge.node.parked, which no holder ever
// carries. PVE tags match [a-z0-9_][a-z0-9_\-\+\.]* case-insensitively (pve-common
// src/PVE/JSONSchema.pm $PVE_TAG_RE; Telmate's Tag.Validate allows no '+', hence '.').
//
// Before this scheme node VMs carried talforge-<cluster> and holders talforge-<cluster> plus
// talforge-parked: a cluster named "parked" owned the tag of every cluster's holders. Those
// tags are still read (see ParseOwnership) except where they are ambiguous.
const (
	// TagManaged marks every VM talforge made (for people filtering in the PVE GUI); it does
	// not decide ownership.
	TagManaged = "talforge"
	// TagParked is the holder tag of talforge before the talforge.<role>.<cluster> scheme,
	// shared by every cluster's holders (and equal to the owner tag of a cluster named
	// "parked"). It is only read, never written.
	TagParked = "talforge-parked"

	tagNodePrefix   = "talforge.node."
	tagHolderPrefix = "talforge.parked."
	legacyPrefix    = "talforge-"
)

// OwnerTag is the tag that marks a VM as a node VM of a cluster.
func OwnerTag(cluster string) string { return tagNodePrefix + strings.ToLower(cluster) }

// HolderTag is the tag that marks a VM as the holder of a cluster's kept data disk.
func HolderTag(cluster string) string { return tagHolderPrefix + strings.ToLower(cluster) }

// legacyOwnerTag is the pre-scheme tag of a cluster's node VMs and holders.
func legacyOwnerTag(cluster string) string { return legacyPrefix + strings.ToLower(cluster) }

// CheckClusterName refuses names for which the ownership tags would be ambiguous: a DNS label
// (profile.ValidClusterName) has no '.', the separator of the tags.
func CheckClusterName(cluster string) error {
	if !profile.ValidClusterName(cluster) {
		return fmt.Errorf("cluster name %q is not a DNS label (lowercase letters, digits, '-'): its Proxmox ownership tags would be ambiguous", cluster)
	}

	return nil
}

// Kind is what a VM is to talforge.
type Kind int

// Kinds.
const (
	// KindNone: no cluster owns the VM (no ownership tag, or ambiguous ones).
	KindNone Kind = iota
	// KindNode is a cluster node's VM.
	KindNode
	// KindHolder holds a node's kept data disk.
	KindHolder
)

func (k Kind) String() string {
	switch k {
	case KindNode:
		return "node VM"
	case KindHolder:
		return "data disk holder"
	}

	return "foreign VM"
}

// Ownership is what a VM's tags say about who owns it.
type Ownership struct {
	Kind    Kind
	Cluster string
	// Legacy: the owner was read from the tags of talforge before the current scheme
	// (provision rewrites a node VM's tags; holders keep them until re-attached or deleted).
	Legacy bool
	// Ambiguous explains why tags that look like ownership tags name no single owner (Kind is
	// then KindNone); Claims lists the clusters they could mean.
	Ambiguous string
	Claims    []string
}

// Is reports whether the VM is unambiguously a VM of that kind of that cluster.
func (o Ownership) Is(kind Kind, cluster string) bool {
	return kind != KindNone && o.Kind == kind && o.Cluster == strings.ToLower(cluster)
}

// Claims reports whether the tags name the cluster, ambiguously or not.
func (o Ownership) claims(cluster string) bool {
	cluster = strings.ToLower(cluster)
	if o.Cluster == cluster {
		return true
	}

	for _, c := range o.Claims {
		if c == cluster {
			return true
		}
	}

	return false
}

type claim struct {
	kind    Kind
	cluster string
}

// ParseOwnership classifies a VM by its tags. Tags of the current scheme decide when present;
// a VM carrying more than one (two clusters, or node and holder) belongs to nobody. Without
// them the pre-scheme tags are read: talforge-<c> alone is a node VM of c, talforge-<c> with
// talforge-parked a holder of c. talforge-parked alone is ambiguous (a node VM of a cluster
// named "parked", or a holder of it) and so is more than one talforge-<c>: such VMs belong to
// nobody and must be retagged by hand (docs/proxmox.md).
func ParseOwnership(tags []string) Ownership {
	var (
		current []claim
		legacy  []string
		parked  bool
		bad     []string
	)

	for _, t := range tags {
		t = strings.ToLower(strings.TrimSpace(t))

		switch {
		case strings.HasPrefix(t, tagNodePrefix), strings.HasPrefix(t, tagHolderPrefix):
			k, c := KindNode, strings.TrimPrefix(t, tagNodePrefix)
			if strings.HasPrefix(t, tagHolderPrefix) {
				k, c = KindHolder, strings.TrimPrefix(t, tagHolderPrefix)
			}

			if !profile.ValidClusterName(c) {
				bad = append(bad, t)
				continue
			}

			if !containsClaim(current, claim{k, c}) {
				current = append(current, claim{k, c})
			}
		case t == TagParked:
			parked = true
		case strings.HasPrefix(t, legacyPrefix):
			if c := strings.TrimPrefix(t, legacyPrefix); profile.ValidClusterName(c) && !containsString(legacy, c) {
				legacy = append(legacy, c)
			}
		}
	}

	switch {
	case len(bad) > 0:
		return Ownership{Ambiguous: fmt.Sprintf("tag %s names no valid cluster", strings.Join(bad, ", ")), Claims: claimClusters(current)}
	case len(current) == 1:
		return Ownership{Kind: current[0].kind, Cluster: current[0].cluster}
	case len(current) > 1:
		names := make([]string, 0, len(current))
		for _, c := range current {
			names = append(names, tagOf(c))
		}

		sort.Strings(names)

		return Ownership{Ambiguous: "carries several ownership tags (" + strings.Join(names, ", ") + ")", Claims: claimClusters(current)}
	}

	switch {
	case len(legacy) == 1:
		o := Ownership{Kind: KindNode, Cluster: legacy[0], Legacy: true}
		if parked {
			o.Kind = KindHolder
		}

		return o
	case len(legacy) > 1:
		sort.Strings(legacy)

		return Ownership{Ambiguous: "carries the old ownership tags of several clusters (talforge-" + strings.Join(legacy, ", talforge-") + ")", Claims: legacy}
	case parked:
		return Ownership{Ambiguous: "carries only the old tag talforge-parked, which was both the owner tag of a cluster named \"parked\" and the tag of every cluster's kept data disks",
			Claims: []string{"parked"}}
	}

	return Ownership{}
}

func tagOf(c claim) string {
	if c.kind == KindHolder {
		return HolderTag(c.cluster)
	}

	return OwnerTag(c.cluster)
}

func containsClaim(cs []claim, c claim) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}

	return false
}

func containsString(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}

	return false
}

func claimClusters(cs []claim) []string {
	var out []string
	for _, c := range cs {
		if !containsString(out, c.cluster) {
			out = append(out, c.cluster)
		}
	}

	return out
}

// Ownership classifies the VM by its tags (see ParseOwnership).
// A container owns nothing, whatever its tags say: talforge makes and changes only VMs.
func (r VMResource) Ownership() Ownership {
	if r.Container {
		return Ownership{}
	}
	return ParseOwnership(r.Tags)
}

// IsNodeOf reports whether the VM is unambiguously a node VM of the cluster.
func (r VMResource) IsNodeOf(cluster string) bool { return r.Ownership().Is(KindNode, cluster) }

// IsHolderOf reports whether the VM is unambiguously a data disk holder of the cluster.
func (r VMResource) IsHolderOf(cluster string) bool { return r.Ownership().Is(KindHolder, cluster) }

// splitTags splits a PVE tag list (';', ',' or space separated: pve-tag-list).
func splitTags(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == ',' || r == ' ' })
}

// ErrNotOwned is wrapped by errors about a VM that is no longer what the plan says it is:
// renamed, retagged, replaced or changed by someone else since it was observed. talforge does
// not touch such a VM.
var ErrNotOwned = errors.New("not talforge's to change")

// OwnershipError reports a VM that failed the ownership check right before a change.
type OwnershipError struct {
	VMID int
	Node string
	// Want describes what the plan expected, e.g. `node VM "lab-cp-1" of cluster lab`.
	Want string
	// Name and Tags are what PVE reports now.
	Name, Tags string
	Reason     string
}

func (e *OwnershipError) Error() string {
	return fmt.Sprintf("VM %d on %s is no longer the %s (now named %q, tags %q: %s); it was changed since the plan and is not touched",
		e.VMID, e.Node, e.Want, e.Name, e.Tags, e.Reason)
}

func (e *OwnershipError) Unwrap() error { return ErrNotOwned }

// expect is what a VM must still be right before talforge changes it.
type expect struct {
	cluster string
	kind    Kind
	name    string
	node    string
	vmid    int
	// fresh accepts a VM this run has just cloned (it carries the template's tags until the
	// first config update): only the name is checked.
	fresh bool
	// adopted accepts a VM made by hand (nodes[].adopted) without an ownership tag, or with the
	// cluster's node tag, as long as one of its NICs still has mac: the node's VM is found by
	// VMID, and a VMID can be freed and reused.
	adopted bool
	mac     string
}

func (x expect) String() string {
	if x.adopted {
		return fmt.Sprintf("adopted VM %q (NIC %s) of cluster %s", x.name, x.mac, x.cluster)
	}

	return fmt.Sprintf("%s %q of cluster %s", x.kind, x.name, x.cluster)
}

// vmExpect is what a planned node VM must still be right before a change.
func vmExpect(cluster string, vp VMPlan) expect {
	s := vp.Spec
	x := expect{cluster: cluster, kind: KindNode, name: s.Name, node: s.PVENode, vmid: vp.VMID}

	if s.IsAdopted() {
		x.name, x.adopted, x.mac = vp.VMName, true, s.Node.MAC
	}

	return x
}

func nodeExpect(cluster string, vm VMResource) expect {
	return expect{cluster: cluster, kind: KindNode, name: vm.Name, node: vm.Node, vmid: vm.VMID}
}

func holderExpect(cluster string, vm VMResource) expect {
	return expect{cluster: cluster, kind: KindHolder, name: vm.Name, node: vm.Node, vmid: vm.VMID}
}

// check compares a config read from PVE with the expectation.
func (x expect) check(cfg map[string]string) error {
	name, tags := cfg["name"], cfg["tags"]
	oe := &OwnershipError{VMID: x.vmid, Node: x.node, Want: x.String(), Name: name, Tags: tags}

	if name != x.name {
		oe.Reason = "the name changed"
		return oe
	}

	if x.fresh {
		return nil
	}

	o := ParseOwnership(splitTags(tags))

	if x.adopted {
		switch {
		case o.Ambiguous != "":
			oe.Reason = o.Ambiguous
		case o.Kind != KindNone && !o.Is(KindNode, x.cluster):
			oe.Reason = "it is tagged as a " + o.Kind.String() + " of cluster " + o.Cluster
		case !hasMAC(cfg, x.mac):
			oe.Reason = "no NIC has the MAC " + x.mac + " any more"
		default:
			return nil
		}

		return oe
	}

	switch {
	case o.Ambiguous != "":
		oe.Reason = o.Ambiguous
	case o.Kind == KindNone:
		oe.Reason = "it carries no ownership tag"
	case o.Cluster != strings.ToLower(x.cluster):
		oe.Reason = "it is tagged for cluster " + o.Cluster
	case o.Kind != x.kind:
		oe.Reason = "it is tagged as a " + o.Kind.String()
	default:
		return nil
	}

	return oe
}

// verify reads the VM's configuration from PVE right before a change and checks that it is
// still what the plan says (ownership tag and name; the VMID and PVE node are the address
// read). The configuration returned carries PVE's digest, which the change sends back where
// the API allows it, so that PVE itself refuses a change made in between.
func (e *Executor) verify(ctx context.Context, x expect) (map[string]string, error) {
	cfg, err := e.api.VMConfig(ctx, x.node, x.vmid)
	if err != nil {
		return nil, fmt.Errorf("VM %d: reading its config to re-check ownership: %w", x.vmid, err)
	}

	if err := x.check(cfg); err != nil {
		return nil, err
	}

	return cfg, nil
}

// rxVolOwner finds the owner VMID in a volume name: PVE names guest volumes
// vm-<vmid>-<name> or base-<vmid>-<name>, after the storage id and an optional directory
// (pve-storage src/PVE/Storage/Plugin.pm parse_name_dir / parse_volname).
// Compiled on first use, not at package initialisation, to keep start-up cheap (issue 16).
var rxVolOwner = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[^:]+:(?:[^/]*/)?(?:vm|base)-(\d+)-`)
})

// volumeOwner returns the VMID a volume name belongs to (0 if none).
func volumeOwner(volid string) int {
	m := rxVolOwner().FindStringSubmatch(volid)
	if m == nil {
		return 0
	}

	n, _ := strconv.Atoi(m[1])

	return n
}

func volumeStorage(volid string) string {
	st, _, _ := strings.Cut(volid, ":")
	return st
}

// heldVolumes lists the volumes a VM config references in disk slots or unusedN entries,
// CD-ROM images and "none" excepted: what deleting the VM would destroy.
func heldVolumes(cfg map[string]string) []string {
	var out []string

	for k, v := range cfg {
		if !rxDiskKey().MatchString(k) && !rxUnusedKey().MatchString(k) {
			continue
		}

		d := parseProp(v, "file")
		if f := d["file"]; f != "" && f != "none" && d["media"] != "cdrom" {
			out = append(out, f)
		}
	}

	sort.Strings(out)

	return out
}

var (
	rxDiskKey = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^(?:ide|sata|scsi|virtio)\d+$|^efidisk0$|^tpmstate0$`)
	})
	rxUnusedKey = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^unused\d+$`) })
)

// CloneMarker is the description a clone gets in the clone request itself (PVE's clone takes
// no tags): until the update that follows tags it, the marker is what tells a later run that
// the untagged VM with the node's name is its own unfinished clone, not a foreign VM.
func CloneMarker(cluster, node string) string {
	return fmt.Sprintf("talforge: clone for node %s of cluster %s, being created (talforge provision finishes it)", node, cluster)
}
