package proxmox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Action is what provisioning does to a node's VM.
type Action string

// Actions.
const (
	ActionCreate    Action = "create"
	ActionUpdate    Action = "update"
	ActionUnchanged Action = "unchanged"
)

// Change is one field-level difference between a VM's config and its spec.
type Change struct {
	Key  string
	From string // "" when the key is added
	To   string // "" when the key is removed
}

func (c Change) String() string {
	switch {
	case c.From == "":
		return fmt.Sprintf("+ %s: %s", c.Key, c.To)
	case c.To == "":
		return fmt.Sprintf("- %s: %s", c.Key, c.From)
	}

	return fmt.Sprintf("~ %s: %s -> %s", c.Key, c.From, c.To)
}

// ParkedDisk is a data disk kept by `destroy --keep-data-disks` in a holder VM.
type ParkedDisk struct {
	HolderVMID int
	HolderNode string
	// HolderName is the holder VM's name (<node>-parked), re-checked before every change.
	HolderName string
	Slot       string
	// VolID is the kept volume as the holder references it; re-attaching renames it to the new
	// VM (vm-<vmid>-disk-<n>, docs/proxmox.md#move-disk).
	VolID   string
	SizeGiB int
	// Serial is the drive's serial= option, carried along by move_disk.
	Serial string
}

// VMPlan is the plan for one node's VM.
type VMPlan struct {
	Spec   VMSpec
	Action Action
	// VMID of the existing VM, the profile's fixed VMID, or 0 (allocated at apply time).
	VMID int
	// Running is the observed power state of an existing VM.
	Running bool
	// Changes are field-level differences (update) or the new config (create).
	Changes []Change
	// Set and Delete are the config update to send; Resize maps disks to their new size in GiB.
	Set    Params
	Delete []string
	Resize map[string]int
	// Pending are config keys that already wait for a VM restart.
	Pending []string
	// Parked is a kept data disk to re-attach on create.
	Parked *ParkedDisk
	// Notes are things worth knowing that change nothing.
	Notes []string
}

// NeedsStart reports whether apply will start the VM.
func (v VMPlan) NeedsStart() bool { return v.Action == ActionCreate || !v.Running }

// ISOPlan is the boot image on one PVE node.
type ISOPlan struct {
	Node    string
	Image   BootImage
	Present bool
}

// Conflict is a VM talforge must not touch that collides with a node (foreign VM) or an
// ambiguous ownership situation.
type Conflict struct {
	VM      VMResource
	Node    string // profile node it collides with
	Message string
}

func (c Conflict) String() string {
	return fmt.Sprintf("VM %d %q on %s: %s", c.VM.VMID, c.VM.Name, c.VM.Node, c.Message)
}

// Plan is the result of observing Proxmox against a cluster's desired VMs.
type Plan struct {
	Cluster   string
	Endpoint  string
	ISOs      []ISOPlan
	VMs       []VMPlan
	Conflicts []Conflict
	// Orphans are VMs owned by the cluster that the profile no longer lists; provision leaves
	// them alone.
	Orphans []VMResource
	// Findings are lint results for the desired specs.
	Findings []Finding
}

// ErrConflict is returned by Plan.Err when foreign or ambiguous VMs block provisioning.
var ErrConflict = errors.New("conflicting VMs")

// Err returns an error when the plan cannot be applied: conflicts or lint errors.
func (p *Plan) Err() error {
	var msgs []string
	for _, c := range p.Conflicts {
		msgs = append(msgs, c.String())
	}

	for _, f := range p.Findings {
		if f.Severity == SeverityError {
			msgs = append(msgs, f.String())
		}
	}

	if len(msgs) == 0 {
		return nil
	}

	return fmt.Errorf("%w: cluster %s:\n  %s", ErrConflict, p.Cluster, strings.Join(msgs, "\n  "))
}

// HasChanges reports whether applying would change anything.
func (p *Plan) HasChanges() bool {
	for _, i := range p.ISOs {
		if !i.Present {
			return true
		}
	}

	for _, v := range p.VMs {
		if v.Action != ActionUnchanged || v.NeedsStart() {
			return true
		}
	}

	return false
}

// readRetry retries a read on transient errors (a few quick attempts: reads are cheap and
// observation must not fail on one dropped connection).
func readRetry[T any](ctx context.Context, read func() (T, error)) (T, error) {
	delay := 100 * time.Millisecond

	for attempt := 1; ; attempt++ {
		v, err := read()
		if err == nil || !Retryable(err) || attempt == 4 {
			return v, err
		}

		if serr := sleepCtx(ctx, delay); serr != nil {
			return v, err
		}

		delay *= 2
	}
}

// retryingReads wraps the read side of an API with readRetry.
type retryingReads struct{ API }

func (r retryingReads) ListVMs(ctx context.Context) ([]VMResource, error) {
	return readRetry(ctx, func() ([]VMResource, error) { return r.API.ListVMs(ctx) })
}

func (r retryingReads) VMConfig(ctx context.Context, node string, vmid int) (map[string]string, error) {
	return readRetry(ctx, func() (map[string]string, error) { return r.API.VMConfig(ctx, node, vmid) })
}

func (r retryingReads) PendingKeys(ctx context.Context, node string, vmid int) ([]string, error) {
	return readRetry(ctx, func() ([]string, error) { return r.API.PendingKeys(ctx, node, vmid) })
}

func (r retryingReads) StorageContent(ctx context.Context, node, storage, content string) ([]StorageVolume, error) {
	return readRetry(ctx, func() ([]StorageVolume, error) { return r.API.StorageContent(ctx, node, storage, content) })
}

// Observe reads the VMs and ISO storage from Proxmox and plans how to reach the specs.
// It changes nothing.
func Observe(ctx context.Context, api API, cluster string, specs []VMSpec, boot BootImage) (*Plan, error) {
	if err := CheckClusterName(cluster); err != nil {
		return nil, err
	}

	api = retryingReads{api}

	vms, err := api.ListVMs(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing VMs: %w", err)
	}

	sort.Slice(vms, func(i, j int) bool { return vms[i].VMID < vms[j].VMID })

	plan := &Plan{Cluster: cluster}
	want := map[string]bool{}

	for _, s := range specs {
		want[s.Name] = true
	}

	for _, s := range specs {
		vp, err := observeVM(ctx, api, plan, vms, cluster, s)
		if err != nil {
			return nil, err
		}

		plan.VMs = append(plan.VMs, vp)
	}

	for _, vm := range vms {
		if vm.IsNodeOf(cluster) && !want[vm.Name] {
			plan.Orphans = append(plan.Orphans, vm)
		}
	}

	nodes := map[string]bool{}
	for _, s := range specs {
		nodes[s.PVENode] = true
	}

	for _, n := range sortedKeys(nodes) {
		present, err := isoPresent(ctx, api, n, boot)
		if err != nil {
			return nil, err
		}

		plan.ISOs = append(plan.ISOs, ISOPlan{Node: n, Image: boot, Present: present})
	}

	return plan, nil
}

func isoPresent(ctx context.Context, api API, node string, boot BootImage) (bool, error) {
	vols, err := api.StorageContent(ctx, node, boot.Storage, "iso")
	if err != nil {
		return false, fmt.Errorf("listing ISO storage %s on %s: %w", boot.Storage, node, err)
	}

	for _, v := range vols {
		if v.VolID == boot.VolID() {
			return true, nil
		}
	}

	return false, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}

	sort.Strings(out)

	return out
}

func observeVM(ctx context.Context, api API, plan *Plan, vms []VMResource, cluster string, s VMSpec) (VMPlan, error) {
	vp := VMPlan{Spec: s, VMID: s.VMID}
	owner := OwnerTag(cluster)

	var mine []VMResource

	for _, vm := range vms {
		o := vm.Ownership()
		ours := o.Is(KindNode, cluster)

		switch {
		case o.Is(KindHolder, cluster):
		case ours && vm.Name == s.Name:
			mine = append(mine, vm)
		case !ours && (vm.Name == s.Name || (s.VMID != 0 && vm.VMID == s.VMID)):
			what := "has the name"
			if vm.Name != s.Name {
				what = "has the VMID"
			}

			msg := fmt.Sprintf("%s of node %s but not the ownership tag %s: foreign VM, talforge will not touch it (rename it, or tag it %s to adopt it)",
				what, s.Name, owner, owner)
			if o.Ambiguous != "" {
				msg += "; its tags are ambiguous: it " + o.Ambiguous
			}

			plan.Conflicts = append(plan.Conflicts, Conflict{VM: vm, Node: s.Name, Message: msg})
		case ours && s.VMID != 0 && vm.VMID == s.VMID:
			plan.Conflicts = append(plan.Conflicts, Conflict{VM: vm, Node: s.Name, Message: fmt.Sprintf(
				"is the profile's VMID %d of node %s but is named %q", s.VMID, s.Name, vm.Name)})
		}
	}

	switch {
	case len(mine) > 1:
		for _, vm := range mine[1:] {
			plan.Conflicts = append(plan.Conflicts, Conflict{VM: vm, Node: s.Name, Message: fmt.Sprintf(
				"another VM of this cluster (VMID %d) is also named %s: destroy the duplicate", mine[0].VMID, s.Name)})
		}

		return vp, nil
	case len(mine) == 0:
		vp.Action = ActionCreate
		vp.Changes = configChanges(s.Config)

		if err := planReattach(ctx, api, plan, vms, cluster, &vp); err != nil {
			return vp, err
		}

		return vp, nil
	}

	vm := mine[0]
	vp.VMID, vp.Running = vm.VMID, vm.Running

	if s.VMID != 0 && vm.VMID != s.VMID {
		plan.Conflicts = append(plan.Conflicts, Conflict{VM: vm, Node: s.Name, Message: fmt.Sprintf(
			"the profile wants VMID %d; a VM's id cannot change: remove nodes[].vmid or destroy the VM", s.VMID)})

		return vp, nil
	}

	if vm.Node != s.PVENode {
		plan.Conflicts = append(plan.Conflicts, Conflict{VM: vm, Node: s.Name, Message: fmt.Sprintf(
			"runs on %s but the profile places it on %s; migrate it in Proxmox or change pveNode", vm.Node, s.PVENode)})

		return vp, nil
	}

	cfg, err := api.VMConfig(ctx, vm.Node, vm.VMID)
	if err != nil {
		return vp, fmt.Errorf("VM %s (%d): reading config: %w", s.Name, vm.VMID, err)
	}

	d := diffConfig(s, cfg)
	vp.Set, vp.Delete, vp.Resize, vp.Changes, vp.Notes = d.set, d.del, d.resize, d.changes, d.notes

	if vm.Ownership().Legacy {
		vp.Notes = append(vp.Notes, "carries the old ownership tag "+legacyOwnerTag(cluster)+"; the tags update moves it to "+owner)
	}

	if _, has := cfg[SlotData]; !has && s.HasDataDisk() {
		// An earlier run created the VM but did not get the kept disk across: re-attach it
		// rather than allocating an empty one.
		if _, adding := vp.Set[SlotData]; adding {
			if err := planReattach(ctx, api, plan, vms, cluster, &vp); err != nil {
				return vp, err
			}

			if vp.Parked != nil {
				delete(vp.Set, SlotData)
			}
		}
	}

	for _, e := range d.errs {
		plan.Conflicts = append(plan.Conflicts, Conflict{VM: vm, Node: s.Name, Message: e})
	}

	vp.Action = ActionUnchanged
	if len(vp.Set) > 0 || len(vp.Delete) > 0 || len(vp.Resize) > 0 || vp.Parked != nil {
		vp.Action = ActionUpdate
	}

	if vm.Running {
		for _, c := range vp.Changes {
			if c.Key == "ipconfig0" || c.Key == "nameserver" || c.Key == "searchdomain" {
				vp.Notes = append(vp.Notes, "cloud-init changes reach Talos at the VM's next boot (nocloud is read at boot)")
				break
			}
		}

		if vp.Pending, err = api.PendingKeys(ctx, vm.Node, vm.VMID); err != nil {
			return vp, fmt.Errorf("VM %s (%d): reading pending changes: %w", s.Name, vm.VMID, err)
		}

		sort.Strings(vp.Pending)

		if len(vp.Pending) > 0 {
			vp.Notes = append(vp.Notes, "changes pending until the VM restarts: "+strings.Join(vp.Pending, ", "))
		}
	}

	return vp, nil
}

// planReattach plans re-attaching a node's kept data disk, if a holder of this cluster keeps
// one, instead of allocating a new data disk.
func planReattach(ctx context.Context, api API, plan *Plan, vms []VMResource, cluster string, vp *VMPlan) error {
	s := vp.Spec

	parked, err := findParked(ctx, api, vms, cluster, s)
	if err != nil || parked == nil {
		return err
	}

	if parked.HolderNode != s.PVENode {
		plan.Conflicts = append(plan.Conflicts, Conflict{VM: VMResource{VMID: parked.HolderVMID, Node: parked.HolderNode, Name: parked.HolderName},
			Node: s.Name, Message: fmt.Sprintf("holds the kept data disk of %s on %s, but the profile places %s on %s; disks can only be re-attached on the same host",
				s.Name, parked.HolderNode, s.Name, s.PVENode)})
	}

	vp.Parked = parked

	for i, c := range vp.Changes {
		if c.Key == SlotData {
			vp.Changes[i].To = parked.VolID + " (kept data disk, re-attached)"
		}
	}

	vp.Notes = append(vp.Notes, fmt.Sprintf("re-attaches the kept data disk %s (%d GiB) from VM %d %s", parked.VolID, parked.SizeGiB, parked.HolderVMID, parked.HolderName))

	return nil
}

// findParked looks for the holder VM of a node's kept data disk: a VM tagged as a holder of
// this cluster (never another cluster's, whatever the names) and named <node>-parked. Its
// config is read again before anything is moved.
func findParked(ctx context.Context, api API, vms []VMResource, cluster string, s VMSpec) (*ParkedDisk, error) {
	if !s.HasDataDisk() {
		return nil, nil
	}

	for _, vm := range vms {
		if !vm.IsHolderOf(cluster) || vm.Name != s.ParkedName() {
			continue
		}

		cfg, err := api.VMConfig(ctx, vm.Node, vm.VMID)
		if err != nil {
			return nil, fmt.Errorf("VM %s (%d): reading config: %w", vm.Name, vm.VMID, err)
		}

		if holderExpect(cluster, vm).check(cfg) != nil {
			continue // changed between the listing and the read
		}

		d, ok := cfg[SlotData]
		if !ok {
			continue
		}

		dp := parseProp(d, "file")

		return &ParkedDisk{HolderVMID: vm.VMID, HolderNode: vm.Node, HolderName: vm.Name, Slot: SlotData, VolID: dp["file"],
			SizeGiB: diskGiB(dp), Serial: dp["serial"]}, nil
	}

	return nil, nil
}

func configChanges(cfg Params) []Change {
	var out []Change
	for _, k := range cfg.Keys() {
		out = append(out, Change{Key: k, To: cfg[k]})
	}

	return out
}

type diff struct {
	set     Params
	del     []string
	resize  map[string]int
	changes []Change
	notes   []string
	errs    []string
}

// ignoredDriveOpts are drive options PVE adds or normalises that the spec does not manage.
var ignoredDriveOpts = map[string]bool{"file": true, "size": true, "format": true}

// diffConfig compares an observed VM config (pending changes applied) with the spec.
func diffConfig(s VMSpec, cur map[string]string) diff {
	d := diff{set: Params{}, resize: map[string]int{}}

	for _, k := range s.Config.Keys() {
		want := s.Config[k]
		have, ok := cur[k]

		switch k {
		case SlotOS, SlotData:
			d.diffDisk(s, k, want, have, ok)
			continue
		case SlotCloudInit:
			if !ok || !strings.Contains(have, "cloudinit") {
				d.add(k, have, want)
			} else if st, _, _ := strings.Cut(parseProp(have, "file")["file"], ":"); st != s.Storage {
				d.errs = append(d.errs, fmt.Sprintf("%s: the cloud-init drive is on storage %s, the profile wants %s", k, st, s.Storage))
			}

			continue
		}

		if !ok || !sameValue(k, want, have) {
			d.add(k, have, want)
		}
	}
	// the guest agent is managed: enabled only with the extension
	if _, wantAgent := s.Config["agent"]; !wantAgent {
		if have, ok := cur["agent"]; ok && parseBool(parseProp(have, "enabled")["enabled"]) {
			d.del = append(d.del, "agent")
			d.changes = append(d.changes, Change{Key: "agent", From: have})
		}
	}

	if _, wantData := s.Config[SlotData]; !wantData {
		if have, ok := cur[SlotData]; ok {
			d.notes = append(d.notes, fmt.Sprintf("%s (%s) is not in the profile (no longhornDisk); it is left alone", SlotData, have))
		}
	}

	return d
}

func (d *diff) add(k, from, to string) {
	d.set[k] = to
	d.changes = append(d.changes, Change{Key: k, From: from, To: to})
}

func (d *diff) diffDisk(s VMSpec, k, want, have string, ok bool) {
	w := parseProp(want, "file")
	wantStorage, _, _ := strings.Cut(w["file"], ":")
	wantGiB := diskGiB(w)

	if !ok {
		d.add(k, "", want)
		return
	}

	h := parseProp(have, "file")
	haveStorage, _, _ := strings.Cut(h["file"], ":")
	haveGiB := diskGiB(h)

	if haveStorage != wantStorage {
		d.errs = append(d.errs, fmt.Sprintf("%s is on storage %s, the profile wants %s; moving disks is not automated (move it in Proxmox or change proxmox.storage back)",
			k, haveStorage, wantStorage))

		return
	}

	switch {
	case wantGiB > haveGiB:
		d.resize[k] = wantGiB
		d.changes = append(d.changes, Change{Key: k + " size", From: h["size"], To: strconv.Itoa(wantGiB) + "G"})
	case wantGiB < haveGiB:
		d.notes = append(d.notes, fmt.Sprintf("%s is %s, larger than the profile's %dG; disks never shrink", k, h["size"], wantGiB))
	}

	if !sameOpts(w, h) {
		// re-attach the same volume with the desired options
		parts := []string{h["file"]}

		for _, o := range sortedOptKeys(w) {
			parts = append(parts, o+"="+w[o])
		}

		d.add(k, have, strings.Join(parts, ","))
	}
}

func sortedOptKeys(m map[string]string) []string {
	var out []string

	for k := range m {
		if !ignoredDriveOpts[k] {
			out = append(out, k)
		}
	}

	sort.Strings(out)

	return out
}

func sameOpts(want, have map[string]string) bool {
	wk, hk := sortedOptKeys(want), sortedOptKeys(have)
	if len(wk) != len(hk) {
		return false
	}

	for i, k := range wk {
		if hk[i] != k || !sameScalar(want[k], have[k]) {
			return false
		}
	}

	return true
}

func sameScalar(a, b string) bool {
	if a == b {
		return true
	}

	pa, oka := boolValue(a)
	pb, okb := boolValue(b)

	return oka && okb && pa == pb
}

func boolValue(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "1", "on", "yes", "true":
		return true, true
	case "0", "off", "no", "false":
		return false, true
	}

	return false, false
}

// sameValue compares a config value as PVE stores it with the desired one.
func sameValue(key, want, have string) bool {
	switch {
	case key == "tags":
		return strings.EqualFold(strings.Join(normTags(want), ";"), strings.Join(normTags(have), ";"))
	case key == "memory":
		return strings.TrimPrefix(want, "current=") == strings.TrimPrefix(have, "current=")
	case key == "agent":
		return sameProps(parseProp(want, "enabled"), parseProp(have, "enabled"))
	case key == "cpu":
		return sameProps(parseProp(want, "cputype"), parseProp(have, "cputype"))
	case strings.HasPrefix(key, "net"):
		wm, wmac, wo := splitNet(want)
		hm, hmac, ho := splitNet(have)

		return wm == hm && strings.EqualFold(wmac, hmac) && sameProps(wo, ho)
	case key == SlotISO:
		w, h := parseProp(want, "file"), parseProp(have, "file")
		return w["file"] == h["file"] && w["media"] == h["media"]
	}

	return sameScalar(strings.TrimSpace(want), strings.TrimSpace(have))
}

func sameProps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}

	for k, v := range a {
		if w, ok := b[k]; !ok || !sameScalar(v, w) {
			return false
		}
	}

	return true
}

func normTags(s string) []string {
	f := strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == ',' || r == ' ' })
	for i := range f {
		f[i] = strings.ToLower(f[i])
	}

	sort.Strings(f)

	return f
}

// Print writes the plan like `terraform plan`: + create, ~ update, = unchanged, ! conflict.
func (p *Plan) Print(w io.Writer) {
	fmt.Fprintf(w, "Proxmox plan for cluster %s\n\n", p.Cluster)

	for _, i := range p.ISOs {
		if i.Present {
			fmt.Fprintf(w, "  = boot image %s on %s\n", i.Image.VolID(), i.Node)
		} else {
			fmt.Fprintf(w, "  + boot image %s on %s\n      download-url %s\n", i.Image.VolID(), i.Node, i.Image.URL)
		}
	}

	if len(p.ISOs) > 0 {
		fmt.Fprintln(w)
	}

	creates, updates, starts, same := 0, 0, 0, 0

	for _, v := range p.VMs {
		id := "new VMID"
		if v.VMID != 0 {
			id = "VMID " + strconv.Itoa(v.VMID)
		}

		switch v.Action {
		case ActionCreate:
			creates++

			fmt.Fprintf(w, "  + %s (%s on %s) will be created and started\n", v.Spec.Name, id, v.Spec.PVENode)

			for _, c := range v.Changes {
				fmt.Fprintf(w, "      %s\n", c)
			}
		case ActionUpdate:
			updates++

			fmt.Fprintf(w, "  ~ %s (%s on %s) will be updated in place\n", v.Spec.Name, id, v.Spec.PVENode)

			for _, c := range v.Changes {
				fmt.Fprintf(w, "      %s\n", c)
			}
		default:
			same++

			fmt.Fprintf(w, "  = %s (%s on %s) unchanged\n", v.Spec.Name, id, v.Spec.PVENode)
		}

		if v.Action != ActionCreate && !v.Running {
			starts++

			fmt.Fprintf(w, "      > will be started (it is stopped)\n")
		}

		for _, n := range v.Notes {
			fmt.Fprintf(w, "      # %s\n", n)
		}
	}

	for _, o := range p.Orphans {
		fmt.Fprintf(w, "  # VM %d %q on %s belongs to cluster %s but is not in the profile; provision leaves it alone (talforge destroy --node %s removes it)\n",
			o.VMID, o.Name, o.Node, p.Cluster, o.Name)
	}

	for _, c := range p.Conflicts {
		fmt.Fprintf(w, "  ! %s\n", c)
	}

	for _, f := range p.Findings {
		fmt.Fprintf(w, "  ! %s\n", f)
	}

	fmt.Fprintf(w, "\nPlan: %d to create, %d to update, %d to start, %d unchanged.\n", creates, updates, starts, same)
}
