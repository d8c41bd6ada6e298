// Destructive paths and plans touch only the cluster's own VMs, among neighbours chosen to
// look like them.

package proxmox

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/talforge/talforge/internal/testenv/pvesim"
)

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
