package proxmox

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/talforge/talforge/internal/testenv/pvesim"
)

// adversarialNames are cluster names chosen to collide with talforge's own tag vocabulary and
// with each other under the old talforge-<cluster> scheme.
var adversarialNames = []string{"parked", "parked-x", "x-parked", "node", "talforge", "tazlab", "tazlab-x", "other", "p"}

func TestParseOwnership(t *testing.T) {
	cases := []struct {
		tags      string
		kind      Kind
		cluster   string
		legacy    bool
		ambiguous string
	}{
		{"talforge;talforge.node.lab;worker", KindNode, "lab", false, ""},
		{"talforge;talforge.parked.lab", KindHolder, "lab", false, ""},
		{"Talforge.Node.Parked", KindNode, "parked", false, ""},
		{"talforge.node.parked-x", KindNode, "parked-x", false, ""},
		{"talforge.parked.parked", KindHolder, "parked", false, ""},
		{"talforge.node.lab;talforge.node.lab", KindNode, "lab", false, ""},
		{"talforge.node.lab;talforge.parked.lab", KindNone, "", false, "several ownership tags"},
		{"talforge.node.a;talforge.node.b", KindNone, "", false, "several ownership tags"},
		{"talforge.node.a.b", KindNone, "", false, "names no valid cluster"},
		{"talforge.node.", KindNone, "", false, "names no valid cluster"},
		// a current tag decides over old ones
		{"talforge.node.lab;talforge-other;talforge-parked", KindNode, "lab", false, ""},
		// the tags of talforge before the talforge.<role>.<cluster> scheme
		{"talforge;talforge-lab;worker", KindNode, "lab", true, ""},
		{"talforge;talforge-lab;talforge-parked", KindHolder, "lab", true, ""},
		{"talforge;talforge-parked-x;controlplane", KindNode, "parked-x", true, ""},
		{"talforge;talforge-parked", KindNone, "", false, "only the old tag talforge-parked"},
		{"talforge;talforge-parked;worker", KindNone, "", false, "only the old tag talforge-parked"},
		{"talforge-a;talforge-b", KindNone, "", false, "several clusters"},
		{"talforge;prod;worker", KindNone, "", false, ""},
		{"", KindNone, "", false, ""},
	}
	for _, tc := range cases {
		o := ParseOwnership(splitTags(tc.tags))
		if o.Kind != tc.kind || o.Cluster != tc.cluster || o.Legacy != tc.legacy ||
			(tc.ambiguous == "") != (o.Ambiguous == "") || !strings.Contains(o.Ambiguous, tc.ambiguous) {
			t.Errorf("ParseOwnership(%q) = %+v, want kind %v cluster %q legacy %v ambiguous %q", tc.tags, o, tc.kind, tc.cluster, tc.legacy, tc.ambiguous)
		}
	}
}

// TestOwnershipTagsCannotCollide: whatever two clusters are called, the tags talforge writes
// for one never make a VM another's, nor a holder a node VM; every tag is a valid PVE tag.
func TestOwnershipTagsCannotCollide(t *testing.T) {
	names := append([]string{"a", "lab", "parked-parked", "node-parked", "0", strings.Repeat("z", 63)}, adversarialNames...)

	for _, a := range names {
		if err := CheckClusterName(a); err != nil {
			t.Fatalf("test name %q: %v", a, err)
		}

		for _, k := range []Kind{KindNode, KindHolder} {
			tags := Tags(a, "worker")
			if k == KindHolder {
				tags = []string{TagManaged, HolderTag(a)}
			}

			for _, tag := range tags {
				if !rxPVETag.MatchString(tag) {
					t.Errorf("%q is not a valid PVE tag", tag)
				}
			}

			o := ParseOwnership(tags)
			if o.Kind != k || o.Cluster != a || o.Legacy || o.Ambiguous != "" {
				t.Errorf("tags %v of a %v of %q parse as %+v", tags, k, a, o)
			}

			for _, b := range names {
				for _, k2 := range []Kind{KindNode, KindHolder} {
					if (a != b || k != k2) && o.Is(k2, b) {
						t.Errorf("tags %v of a %v of %q also make it a %v of %q", tags, k, a, k2, b)
					}
				}
			}
		}
	}

	for _, bad := range []string{"", "a.b", "Lab", "-a", "a_b", strings.Repeat("z", 64)} {
		if CheckClusterName(bad) == nil {
			t.Errorf("cluster name %q accepted", bad)
		}
	}
}

// rxPVETag is PVE's tag rule (pve-common src/PVE/JSONSchema.pm $PVE_TAG_RE) without the '+'
// that Telmate's Tag.Validate rejects.
var rxPVETag = regexp.MustCompile(`^[a-z0-9_][a-z0-9_\-.]*$`)

func TestKeptDiskAttached(t *testing.T) {
	pk := &ParkedDisk{HolderVMID: 900, VolID: "local-lvm:vm-900-disk-0", SizeGiB: 100, Serial: "talforge-longhorn"}
	ok := "local-lvm:vm-151-disk-2,backup=0,discard=on,serial=talforge-longhorn,size=100G,ssd=1"
	before := map[string]bool{"local-lvm:vm-151-disk-0": true, "local-lvm:vm-151-disk-1": true}
	cases := []struct {
		name, scsi1, err string
	}{
		{"the kept disk, renamed", ok, ""},
		{"dir storage path form", "local-lvm:151/vm-151-disk-2.raw,serial=talforge-longhorn,size=100G", ""},
		{"nothing", "", "nothing on scsi1"},
		{"referenced before", strings.Replace(ok, "disk-2", "disk-1", 1), "referenced it before"},
		{"another VM's volume", strings.Replace(ok, "vm-151", "vm-152", 1), "not named for VM 151"},
		{"the holder's name", strings.Replace(ok, "vm-151-disk-2", "vm-900-disk-0", 1), "not named for VM 151"},
		{"other storage", strings.Replace(ok, "local-lvm:", "ceph:", 1), "on storage ceph"},
		{"other size", strings.Replace(ok, "size=100G", "size=50G", 1), "50 GiB"},
		{"other serial", strings.Replace(ok, "serial=talforge-longhorn", "serial=x", 1), `serial is "x"`},
	}
	for _, tc := range cases {
		cfg := map[string]string{}
		if tc.scsi1 != "" {
			cfg[SlotData] = tc.scsi1
		}

		err := keptDiskAttached(cfg, pk, 151, before)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
	}
}

// neighbour is a VM talforge must never touch, seeded next to the cluster under test.
type neighbour struct {
	vm   pvesim.SeedVM
	why  string
	want pvesim.VM // state right after seeding
}

// seedNeighbours places VMs of everyone but the cluster: foreign VMs named like its holders,
// other clusters' node VMs and holders (current and old tags, named like its holders, with
// data disks of the same size and serial), ambiguous VMs. Clusters with adversarial names are
// among the others.
func seedNeighbours(t *testing.T, srv *pvesim.Server, cluster string) []neighbour {
	t.Helper()

	data := func(id, n int) string {
		return fmt.Sprintf("local-lvm:vm-%d-disk-%d,backup=0,discard=on,serial=talforge-longhorn,size=100G,ssd=1", id, n)
	}

	var out []neighbour

	id := 800
	add := func(why, name, tags string, running bool, disk bool) {
		cfg := map[string]string{"name": name, "memory": "512"}
		if tags != "" {
			cfg["tags"] = tags
		}

		if disk {
			cfg[SlotData] = data(id, 0)
		}

		out = append(out, neighbour{vm: pvesim.SeedVM{ID: id, Config: cfg, Running: running}, why: why})
		id++
	}

	add("foreign VM named like a holder", "tazlab-cp-1-parked", "prod", true, true)
	add("foreign VM with talforge's generic tag", "tazlab-worker-1-parked", "talforge", false, true)

	for _, other := range append([]string{"other"}, adversarialNames...) {
		if other == cluster {
			continue
		}

		add("node VM of cluster "+other, "vm-of-"+other+"-1", "controlplane;talforge;"+OwnerTag(other), true, true)
		add("holder of cluster "+other, "tazlab-worker-1-parked", "talforge;"+HolderTag(other), false, true)

		if other != "parked" {
			// what talforge before the current tags wrote: the audit's cluster "parked" took these
			add("old-style holder of cluster "+other, "tazlab-cp-1-parked", "talforge;talforge-"+other+";talforge-parked", false, true)
			add("old-style node VM of cluster "+other, "vm-of-"+other+"-2", "talforge;talforge-"+other+";worker", true, true)
		}
	}

	add("old-style holder of a cluster named parked (ambiguous)", "tazlab-worker-1-parked", "talforge;talforge-parked", false, true)
	add("VM claimed by two clusters, this one among them", "tazlab-cp-1-twice", "talforge;"+OwnerTag(cluster)+";"+OwnerTag("zz-"+cluster), true, true)
	add("VM tagged as node and holder of this cluster", "tazlab-worker-1-parked", "talforge;"+OwnerTag(cluster)+";"+HolderTag(cluster), false, true)

	seeds := make([]pvesim.SeedVM, 0, len(out))
	for _, n := range out {
		seeds = append(seeds, n.vm)
	}

	srv.Seed(seeds...)

	for i := range out {
		out[i].want, _ = srv.VM(out[i].vm.ID)
	}

	return out
}

// assertUntouched checks every neighbour exists unchanged with its volumes, and that no
// changing request named it (as the VM or as a move target).
func assertUntouched(t *testing.T, srv *pvesim.Server, ns []neighbour) {
	t.Helper()

	vols := map[string]bool{}
	for _, v := range srv.Volumes() {
		vols[v.VolID] = true
	}

	ids := map[string]string{}

	for _, n := range ns {
		ids[strconv.Itoa(n.vm.ID)] = n.why

		got, ok := srv.VM(n.vm.ID)
		if !ok {
			t.Errorf("VM %d (%s) was deleted", n.vm.ID, n.why)
			continue
		}

		if !maps.Equal(got.Config, n.want.Config) || got.Running != n.want.Running {
			t.Errorf("VM %d (%s) changed:\n  before %v running %v\n  after  %v running %v", n.vm.ID, n.why, n.want.Config, n.want.Running, got.Config, got.Running)
		}

		if d := parseProp(n.want.Config[SlotData], "file")["file"]; d != "" && !vols[d] {
			t.Errorf("volume %s of VM %d (%s) is gone", d, n.vm.ID, n.why)
		}
	}

	for _, r := range srv.MutatingRequests() {
		parts := strings.Split(r.Path, "/")
		for _, p := range append(parts, r.Params["target-vmid"], r.Params["vmid"]) {
			if why, hit := ids[p]; hit {
				t.Errorf("%s %s %v touched VM %s (%s)", r.Method, r.Path, r.Params, p, why)
			}
		}
	}
}

// clusterEnv is the tazlab profile under another cluster name.
func clusterEnv(t *testing.T, name string) *env {
	t.Helper()

	e := newEnv(t, "tazlab")
	e.cluster.Metadata.Name = name
	e.refresh()

	return e
}

// TestDestructivePathsTouchOnlyOwnVMs drives every destructive path (provision and its
// re-attach, destroy, destroy --keep-data-disks as rebuild runs it, destroy
// --include-parked-disks) for a cluster named "parked" (the audit's case: its old owner tag
// was every cluster's holder tag) amid foreign VMs, other clusters' VMs and holders (current
// and old tags) and ambiguous VMs: only the cluster's own VMs change, and its kept disks come
// back to it.
func TestDestructivePathsTouchOnlyOwnVMs(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	e := clusterEnv(t, "parked")
	ns := seedNeighbours(t, e.srv, "parked")

	p := e.plan(ctx)
	if err := p.Err(); err != nil {
		t.Fatalf("plan: %v", err)
	}

	for _, v := range p.VMs {
		if v.Parked != nil {
			t.Fatalf("%s: plans to re-attach %s of VM %d, which is not this cluster's", v.Spec.Name, v.Parked.VolID, v.Parked.HolderVMID)
		}
	}

	if _, err := e.executor(Options{}).Apply(ctx, p); err != nil {
		t.Fatalf("provision: %v\n%s", err, e.events)
	}

	ids := func(items []DestroyItem, holders []VMResource) []int {
		var out []int
		for _, it := range items {
			out = append(out, it.VM.VMID)
		}

		for _, h := range holders {
			out = append(out, h.VMID)
		}

		sort.Ints(out)

		return out
	}

	// rebuild's destroy: keep the data disks
	dp, err := PlanDestroy(ctx, e.api, "parked", DestroyOptions{KeepDataDisks: true, IncludeParked: false})
	if err != nil {
		t.Fatalf("plan destroy --keep-data-disks: %v", err)
	}

	if got := ids(dp.Items, dp.Holders); fmt.Sprint(got) != "[151 161]" {
		t.Fatalf("destroy plan has VMs %v, want [151 161]", got)
	}

	// the VM of two clusters, the one tagged node and holder, and the old-style one whose
	// talforge-parked may mean this cluster
	if len(dp.Skipped) != 3 {
		t.Errorf("skipped %q, want the three ambiguous VMs", dp.Skipped)
	}

	kept := map[string]pvesim.Volume{}

	for _, v := range e.srv.Volumes() {
		if v.VMID == 151 || v.VMID == 161 {
			if v.Size == 100<<30 {
				kept[strconv.Itoa(v.VMID)] = v
			}
		}
	}

	if err := e.executor(Options{}).Destroy(ctx, dp); err != nil {
		t.Fatalf("destroy --keep-data-disks: %v\n%s", err, e.events)
	}

	// provision re-attaches this cluster's kept disks, not the look-alikes
	p = e.plan(ctx)
	for _, v := range p.VMs {
		if v.Parked == nil || v.Parked.HolderName != v.Spec.ParkedName() || v.Parked.HolderVMID >= 800 && v.Parked.HolderVMID < 900 {
			t.Fatalf("%s: re-attach plan %+v", v.Spec.Name, v.Parked)
		}
	}

	if _, err := e.executor(Options{}).Apply(ctx, p); err != nil {
		t.Fatalf("re-provision: %v\n%s", err, e.events)
	}

	for _, id := range []int{151, 161} {
		vm, _ := e.srv.VM(id)
		vol := volumeOf(e.srv, parseProp(vm.Config[SlotData], "file")["file"])
		if old := kept[strconv.Itoa(id)]; vol == nil || vol.CTime != old.CTime || vol.Size != old.Size || vol.VMID != id {
			t.Errorf("VM %d got back %+v, want its kept disk %+v", id, vol, old)
		}
	}

	// keep again, then delete the holders with the disks
	if dp, err = PlanDestroy(ctx, e.api, "parked", DestroyOptions{KeepDataDisks: true}); err != nil {
		t.Fatal(err)
	}

	if err := e.executor(Options{}).Destroy(ctx, dp); err != nil {
		t.Fatalf("destroy --keep-data-disks: %v\n%s", err, e.events)
	}

	if dp, err = PlanDestroy(ctx, e.api, "parked", DestroyOptions{IncludeParked: true}); err != nil {
		t.Fatal(err)
	}

	if len(dp.Items) != 0 || len(dp.Holders) != 2 {
		t.Fatalf("destroy --include-parked-disks plan: items %v holders %v", ids(dp.Items, nil), ids(nil, dp.Holders))
	}

	for _, h := range dp.Holders {
		if !strings.HasPrefix(h.Name, "tazlab-") || h.VMID >= 800 && h.VMID < 900 {
			t.Fatalf("holder %d %q is not this cluster's", h.VMID, h.Name)
		}
	}

	if err := e.executor(Options{}).Destroy(ctx, dp); err != nil {
		t.Fatalf("destroy --include-parked-disks: %v\n%s", err, e.events)
	}

	if owned := e.owned(); len(owned) != 0 {
		t.Errorf("left over: %v", owned)
	}

	assertUntouched(t, e.srv, ns)
}

// TestAdversarialNamesPlanOnlyOwnVMs: for every adversarial cluster name, amid the same
// neighbours, provision plans no re-attach and no conflict, and every destroy plan lists
// exactly the cluster's two VMs.
func TestAdversarialNamesPlanOnlyOwnVMs(t *testing.T) {
	t.Parallel()

	for _, name := range adversarialNames {
		t.Run(name, func(t *testing.T) {
			t.Parallel()

			ctx := context.Background()
			e := clusterEnv(t, name)
			ns := seedNeighbours(t, e.srv, name)

			p := e.plan(ctx)
			if err := p.Err(); err != nil {
				t.Fatalf("plan: %v", err)
			}

			for _, v := range p.VMs {
				if v.Parked != nil || v.Action != ActionCreate {
					t.Fatalf("%s: %s, re-attach %+v", v.Spec.Name, v.Action, v.Parked)
				}
			}

			if _, err := e.executor(Options{}).Apply(ctx, p); err != nil {
				t.Fatalf("provision: %v", err)
			}

			if p := e.plan(ctx); p.HasChanges() || len(p.Orphans) != 0 {
				t.Errorf("plan after provision: changes %v, orphans %v", p.HasChanges(), p.Orphans)
			}

			for _, o := range []DestroyOptions{{}, {KeepDataDisks: true}, {IncludeParked: true}} {
				dp, err := PlanDestroy(ctx, e.api, name, o)
				if err != nil {
					t.Fatalf("plan destroy %+v: %v", o, err)
				}

				var got []int
				for _, it := range dp.Items {
					got = append(got, it.VM.VMID)
				}

				for _, h := range dp.Holders {
					got = append(got, h.VMID)
				}

				if fmt.Sprint(got) != "[151 161]" {
					t.Errorf("destroy plan %+v lists VMs %v, want [151 161]", o, got)
				}
			}

			assertUntouched(t, e.srv, ns)
		})
	}
}

func volumeOf(srv *pvesim.Server, volid string) *pvesim.Volume {
	for _, v := range srv.Volumes() {
		if v.VolID == volid {
			return &v
		}
	}

	return nil
}

// TestOwnershipChangedAfterPlan: someone renames, retags or replaces a VM between the plan
// (and the confirmation prompt) and the execution: destroy refuses that VM and goes on with
// the others; nothing is stopped, moved or deleted on it.
func TestOwnershipChangedAfterPlan(t *testing.T) {
	t.Parallel()

	cases := []struct {
		name   string
		keep   bool
		change func(v *pvesim.VM)
		reason string
	}{
		{"renamed", false, func(v *pvesim.VM) { v.Config["name"] = "someone-elses" }, "the name changed"},
		{"retagged for another cluster", true, func(v *pvesim.VM) { v.Config["tags"] = "talforge;talforge.node.other;worker" }, "tagged for cluster other"},
		{"ownership tag removed", false, func(v *pvesim.VM) { v.Config["tags"] = "worker" }, "no ownership tag"},
		{"turned into a holder", true, func(v *pvesim.VM) { v.Config["tags"] = "talforge;talforge.parked.tazlab" }, "tagged as a data disk holder"},
		{"replaced by a foreign VM", true, func(v *pvesim.VM) {
			v.Config = map[string]string{"name": "tazlab-worker-1", "memory": "1024", "tags": "prod", SlotData: "local-lvm:vm-161-disk-7,size=100G"}
		}, "no ownership tag"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			ctx := context.Background()
			e := newEnv(t, "tazlab")

			if _, _, err := e.provision(ctx, Options{}); err != nil {
				t.Fatal(err)
			}

			dp, err := PlanDestroy(ctx, e.api, "tazlab", DestroyOptions{KeepDataDisks: tc.keep})
			if err != nil || len(dp.Items) != 2 {
				t.Fatalf("plan: %v, %+v", err, dp)
			}

			e.srv.Modify(161, tc.change)
			want, _ := e.srv.VM(161)

			e.srv.ResetLog()

			err = e.executor(Options{}).Destroy(ctx, dp)
			if !errors.Is(err, ErrNotOwned) || !strings.Contains(err.Error(), "VM 161") || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("destroy error %v, want ErrNotOwned for VM 161 (%s)", err, tc.reason)
			}

			got, ok := e.srv.VM(161)
			if !ok || !maps.Equal(got.Config, want.Config) || !got.Running {
				t.Errorf("VM 161 changed: exists %v, running %v\n  %v\n  want %v", ok, got.Running, got.Config, want.Config)
			}

			if _, ok := e.srv.VM(151); ok {
				t.Errorf("VM 151 (unchanged) was not destroyed")
			}

			for _, r := range e.srv.MutatingRequests() {
				if strings.Contains(r.Path, "/161") || r.Params["target-vmid"] == "161" {
					t.Errorf("request to the changed VM: %s %s %v", r.Method, r.Path, r.Params)
				}
			}
		})
	}
}

// TestOwnershipChangedDuringTheMove: the VM is retagged just before PVE processes the
// move_disk that would park its data disk (after talforge's own check): the config digest
// makes PVE refuse the move, the re-check then refuses the VM, and it keeps its disk.
func TestOwnershipChangedDuringTheMove(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	e := newEnv(t, "tazlab")

	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatal(err)
	}

	dp, err := PlanDestroy(ctx, e.api, "tazlab", DestroyOptions{KeepDataDisks: true, Nodes: []string{"tazlab-worker-1"}})
	if err != nil {
		t.Fatal(err)
	}

	disk := dp.Items[0].DataDisk
	h := e.srv.InjectFault(pvesim.Fault{Kind: pvesim.FaultActor, Method: "POST", Path: `/nodes/pve/qemu/161/move_disk`,
		Act: func() { e.srv.Modify(161, func(v *pvesim.VM) { v.Config["tags"] = "prod" }) }})

	err = e.executor(Options{}).Destroy(ctx, dp)
	if !errors.Is(err, ErrNotOwned) || h.Fired() != 1 {
		t.Fatalf("destroy error %v (actor fired %d), want ErrNotOwned", err, h.Fired())
	}

	vm, ok := e.srv.VM(161)
	if !ok || parseProp(vm.Config[SlotData], "file")["file"] != disk || volumeOf(e.srv, disk) == nil {
		t.Fatalf("VM 161 lost its data disk %s: exists %v, %v", disk, ok, vm.Config)
	}
}

// TestProvisionRefusesChangedVM: a VM retagged between provision's plan and its apply is not
// updated (nor started), the others are.
func TestProvisionRefusesChangedVM(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	e := newEnv(t, "tazlab")

	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatal(err)
	}

	e.cluster.Nodes[0].Memory, e.cluster.Nodes[1].Memory = 6144, 6144
	e.refresh()

	p := e.plan(ctx)
	e.srv.Modify(161, func(v *pvesim.VM) { v.Config["tags"] = "prod;worker" })

	_, err := e.executor(Options{}).Apply(ctx, p)
	if !errors.Is(err, ErrNotOwned) || !strings.Contains(err.Error(), "VM 161") {
		t.Fatalf("apply error %v, want ErrNotOwned for VM 161", err)
	}

	// memory waits for a restart of a running VM: it is a pending change
	if vm, _ := e.srv.VM(161); vm.Config["memory"] != "8192" || len(vm.Pending) != 0 || vm.Config["tags"] != "prod;worker" {
		t.Errorf("the retagged VM was changed: %v, pending %v", vm.Config, vm.Pending)
	}

	if vm, _ := e.srv.VM(151); vm.Pending["memory"] != "6144" {
		t.Errorf("VM 151 was not updated: memory %s, pending %v", vm.Config["memory"], vm.Pending)
	}
}

// keptEnv provisions tazlab and destroys it keeping the data disks; it returns the kept
// volumes by node.
func keptEnv(t *testing.T) (*env, map[string]pvesim.Volume) {
	t.Helper()

	ctx := context.Background()
	e := newEnv(t, "tazlab")

	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatal(err)
	}

	kept := map[string]pvesim.Volume{}

	for _, vm := range e.srv.VMs() {
		if v := volumeOf(e.srv, parseProp(vm.Config[SlotData], "file")["file"]); v != nil {
			kept[vm.Name()] = *v
		}
	}

	dp, err := PlanDestroy(ctx, e.api, "tazlab", DestroyOptions{KeepDataDisks: true})
	if err != nil {
		t.Fatal(err)
	}

	if err := e.executor(Options{}).Destroy(ctx, dp); err != nil {
		t.Fatal(err)
	}

	return e, kept
}

// holderOf returns the holder VM of a node and the volume it holds.
func holderOf(t *testing.T, srv *pvesim.Server, node string) (pvesim.VM, string) {
	t.Helper()

	for _, vm := range srv.VMs() {
		if vm.Name() == node+"-parked" {
			return vm, parseProp(vm.Config[SlotData], "file")["file"]
		}
	}

	t.Fatalf("no holder for %s", node)

	return pvesim.VM{}, ""
}

// TestReattachRetryWithForeignDisk: the first move_disk of a re-attach is lost (the
// connection drops before PVE sees it) while someone puts another disk on scsi1 of the new VM.
// The retry must not count that disk as the kept one: the holder keeps the kept disk and is
// not deleted.
func TestReattachRetryWithForeignDisk(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	e, kept := keptEnv(t)
	holder, keptVol := holderOf(t, e.srv, "tazlab-worker-1")

	p := e.plan(ctx)
	e.srv.InjectFault(pvesim.Fault{Kind: pvesim.FaultDropBefore, Method: "POST", Path: `/nodes/pve/qemu/` + strconv.Itoa(holder.ID) + `/move_disk`,
		Act: func() {
			e.srv.Modify(161, func(v *pvesim.VM) {
				v.Config[SlotData] = "local-lvm:vm-161-disk-5,backup=0,discard=on,serial=talforge-longhorn,size=100G,ssd=1"
			})
		}})

	_, err := e.executor(Options{}).Apply(ctx, p)
	if err == nil || !strings.Contains(err.Error(), "tazlab-worker-1") || !strings.Contains(err.Error(), "stays in holder VM "+strconv.Itoa(holder.ID)) {
		t.Fatalf("apply error %v, want the re-attach of tazlab-worker-1 refused", err)
	}

	h, ok := e.srv.VM(holder.ID)
	if !ok || parseProp(h.Config[SlotData], "file")["file"] != keptVol {
		t.Fatalf("holder %d lost the kept disk %s: exists %v, %v", holder.ID, keptVol, ok, h.Config)
	}

	if v := volumeOf(e.srv, keptVol); v == nil || v.CTime != kept["tazlab-worker-1"].CTime {
		t.Fatalf("kept volume %s: %+v", keptVol, v)
	}

	// the other node is unaffected
	if vm, _ := e.srv.VM(151); volumeOf(e.srv, parseProp(vm.Config[SlotData], "file")["file"]).CTime != kept["tazlab-cp-1"].CTime {
		t.Errorf("VM 151 did not get its kept disk back: %v", vm.Config)
	}
}

// TestReattachAnswerLost: the move_disk happens but its answer is lost; the retry recognises
// the kept disk on scsi1 (renamed to the new VM) and only then deletes the empty holder.
func TestReattachAnswerLost(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	e, kept := keptEnv(t)

	h := e.srv.InjectFault(pvesim.Fault{Kind: pvesim.FaultDropAfter, Method: "POST", Path: `/nodes/pve/qemu/\d+/move_disk`, Count: 2})

	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatalf("provision: %v\n%s", err, e.events)
	}

	if h.Fired() != 2 {
		t.Fatalf("fault fired %d times", h.Fired())
	}

	e.assertConverged()

	for name, old := range kept {
		vm := e.vmByName(name)
		if v := volumeOf(e.srv, parseProp(vm.Config[SlotData], "file")["file"]); v == nil || v.CTime != old.CTime || v.VMID != vm.ID {
			t.Errorf("%s: scsi1 %s is not its kept disk %+v", name, vm.Config[SlotData], old)
		}
	}
}

// TestReattachAcrossRuns: a run that creates the VM but cannot move the kept disk leaves it
// in the holder; the next run re-attaches it to the existing VM instead of allocating an empty
// data disk.
func TestReattachAcrossRuns(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	e, kept := keptEnv(t)
	holder, _ := holderOf(t, e.srv, "tazlab-cp-1")

	e.srv.InjectFault(pvesim.Fault{Kind: pvesim.FaultHTTPError, Method: "POST", Path: `/nodes/pve/qemu/` + strconv.Itoa(holder.ID) + `/move_disk`,
		Status: 500, Message: "storage migration failed", Count: -1})

	if _, _, err := e.provision(ctx, Options{}); err == nil {
		t.Fatalf("first run succeeded despite the failing move")
	}

	e.srv.ClearFaults()

	p := e.plan(ctx)
	if v := p.VMs[0]; v.Action != ActionUpdate || v.Parked == nil || v.Parked.HolderVMID != holder.ID {
		t.Fatalf("second plan for %s: %s, re-attach %+v", v.Spec.Name, v.Action, v.Parked)
	}

	if _, err := e.executor(Options{}).Apply(ctx, p); err != nil {
		t.Fatalf("second run: %v\n%s", err, e.events)
	}

	e.assertConverged()

	vm := e.vmByName("tazlab-cp-1")
	if v := volumeOf(e.srv, parseProp(vm.Config[SlotData], "file")["file"]); v == nil || v.CTime != kept["tazlab-cp-1"].CTime {
		t.Errorf("scsi1 %s is not the kept disk", vm.Config[SlotData])
	}

	n := 0

	for _, v := range e.srv.Volumes() {
		if v.Size == 100<<30 {
			n++
		}
	}

	if n != 2 {
		t.Errorf("%d data volumes, want the 2 kept ones", n)
	}
}

// TestOldTagsReadAndMigrated: VMs and holders tagged by talforge before the current tags are
// still the cluster's: provision moves the node VMs to the new tags and re-attaches kept disks
// from old-style holders.
func TestOldTagsReadAndMigrated(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	e, kept := keptEnv(t)

	for _, vm := range e.srv.VMs() {
		e.srv.Modify(vm.ID, func(v *pvesim.VM) { v.Config["tags"] = "talforge;talforge-tazlab;talforge-parked" })
	}

	p := e.plan(ctx)
	for _, v := range p.VMs {
		if v.Parked == nil {
			t.Fatalf("%s: no re-attach from the old-style holder", v.Spec.Name)
		}
	}

	if _, err := e.executor(Options{}).Apply(ctx, p); err != nil {
		t.Fatalf("re-provision: %v\n%s", err, e.events)
	}

	e.assertConverged()

	// node VMs with the old tags are found, and the tags are rewritten
	for _, id := range []int{151, 161} {
		e.srv.Modify(id, func(v *pvesim.VM) {
			v.Config["tags"] = strings.Replace(v.Config["tags"], "talforge.node.tazlab", "talforge-tazlab", 1)
		})
	}

	p = e.plan(ctx)

	var buf strings.Builder

	p.Print(&buf)

	if p.Err() != nil || !strings.Contains(buf.String(), "~ tags: controlplane;talforge;talforge-tazlab -> controlplane;talforge;talforge.node.tazlab") ||
		!strings.Contains(buf.String(), "carries the old ownership tag talforge-tazlab") {
		t.Fatalf("plan for old-style VMs (%v):\n%s", p.Err(), buf.String())
	}

	if _, err := e.executor(Options{}).Apply(ctx, p); err != nil {
		t.Fatal(err)
	}

	for name, old := range kept {
		vm := e.vmByName(name)
		if !strings.Contains(vm.Config["tags"], OwnerTag("tazlab")) || strings.Contains(vm.Config["tags"], "talforge-tazlab") {
			t.Errorf("%s tags %q", name, vm.Config["tags"])
		}

		if v := volumeOf(e.srv, parseProp(vm.Config[SlotData], "file")["file"]); v == nil || v.CTime != old.CTime {
			t.Errorf("%s: not its kept disk", name)
		}
	}
}

// TestOldTagsOfClusterParkedRefused: a cluster named "parked" provisioned by an older talforge
// carries talforge-parked, the old tag of every cluster's holders too. Its VMs are refused
// with a message naming each VM and what to do; nothing is changed.
func TestOldTagsOfClusterParkedRefused(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	e := clusterEnv(t, "parked")
	e.srv.Seed(
		pvesim.SeedVM{ID: 151, Config: map[string]string{"name": "tazlab-cp-1", "tags": "controlplane;talforge;talforge-parked"}, Running: true},
		pvesim.SeedVM{ID: 900, Config: map[string]string{"name": "tazlab-worker-1-parked", "tags": "talforge;talforge-parked",
			SlotData: "local-lvm:vm-900-disk-0,serial=talforge-longhorn,size=100G"}},
	)

	err := e.plan(ctx).Err()
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), `VM 151 "tazlab-cp-1"`) || !strings.Contains(err.Error(), "only the old tag talforge-parked") {
		t.Fatalf("plan error %v, want a conflict naming VM 151 and the ambiguous tag", err)
	}

	dp, err := PlanDestroy(ctx, e.api, "parked", DestroyOptions{IncludeParked: true})
	if err != nil || !dp.Empty() || len(dp.Skipped) != 2 || !strings.Contains(dp.Skipped[0], `VM 151 "tazlab-cp-1"`) ||
		!strings.Contains(dp.Skipped[1], `VM 900 "tazlab-worker-1-parked"`) {
		t.Fatalf("destroy plan %+v, %v", dp, err)
	}

	if m := mutating(e.srv); len(m) != 0 {
		t.Errorf("changes: %v", m)
	}
}

// TestRetryableAfterARecheck: a stale config digest and a disk caught between the two VMs of a
// move are retried (every attempt re-reads and re-checks first); a failed ownership check is
// not.
func TestRetryableAfterARecheck(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{&APIError{Status: 500, Message: "VM 950: detected modified configuration - file changed by other user? Try again."}, true},
		{&TaskError{ExitStatus: "VM 161: detected modified configuration - file changed by other user? Try again."}, true},
		{&TaskError{ExitStatus: "checksum mismatch (file change by other user?)"}, true},
		{fmt.Errorf("x: %w", errMoveInFlight), true},
		{&OwnershipError{VMID: 161, Reason: "the name changed"}, false},
		{fmt.Errorf("VM 161: %w", &OwnershipError{VMID: 161}), false},
	}
	for _, tc := range cases {
		if got := Retryable(tc.err); got != tc.want {
			t.Errorf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}

	if err := fmt.Errorf("x: %w", &OwnershipError{VMID: 1}); !errors.Is(err, ErrNotOwned) {
		t.Errorf("an OwnershipError is not ErrNotOwned")
	}
}
