// Adopted VMs: hand-made VMs that talforge takes over by their VMID and MAC, adding only its
// ownership tags, and changing only cores, memory and disk sizes when the profile does.

package proxmox

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/talforge/talforge/internal/testenv/pvesim"
	"github.com/talforge/talforge/pkg/profile"
)

// handMadeMACs are the NICs of the hand-made VMs 151 (tazlab-cp-1) and 161 (tazlab-worker-1).
var handMadeMACs = map[int]string{151: "BC:24:11:AA:00:01", 161: "BC:24:11:AA:00:02"}

// handMade is how a person makes a Talos VM in the PVE GUI: own name and tags, firewall on the
// NIC, iothread on the disk, no cloud-init drive, another CPU type and SCSI controller; the
// worker has 2 sockets × 2 cores and PVE 8.1's memory property string. Sizes match tazlab's
// profile (4 vCPUs, 8192 MiB, 40G + 100G).
func handMade(vmid int) pvesim.SeedVM {
	name, sockets, cores, memory := "talos-cp-a", "1", "4", "8192"
	if vmid == 161 {
		name, sockets, cores, memory = "talos-worker-a", "2", "2", "current=8192"
	}

	disk := func(n int) string { return "local-lvm:vm-" + strconv.Itoa(vmid) + "-disk-" + strconv.Itoa(n) }

	return pvesim.SeedVM{ID: vmid, Node: "pve", Running: true, Config: map[string]string{
		"name": name, "tags": "k8s;talos", "ostype": "l26", "cpu": "x86-64-v2-AES", "sockets": sockets, "cores": cores,
		"memory": memory, "scsihw": "virtio-scsi-single", "boot": "order=scsi0;ide2", "ide2": "none,media=cdrom",
		"scsi0": disk(0) + ",iothread=1,size=40G", "scsi1": disk(1) + ",iothread=1,size=100G",
		"net0": "virtio=" + handMadeMACs[vmid] + ",bridge=vmbr0,firewall=1", "agent": "1",
	}}
}

// adoptedEnv is tazlab with both nodes adopted (nodes[].adopted: {}) and their hand-made VMs.
func adoptedEnv(t *testing.T) *env {
	t.Helper()

	e := newEnv(t, "tazlab")

	for i := range e.cluster.Nodes {
		n := &e.cluster.Nodes[i]
		n.Adopted, n.MAC = &profile.AdoptedVM{}, strings.ToLower(handMadeMACs[n.VMID])
	}

	e.refresh()
	e.srv.Seed(handMade(151), handMade(161))

	return e
}

// configUpdates are the config updates (POST .../config) of the request log, with their
// parameters.
func configUpdates(srv *pvesim.Server) []pvesim.RequestRecord {
	var out []pvesim.RequestRecord

	for _, r := range srv.MutatingRequests() {
		if strings.HasSuffix(r.Path, "/config") {
			out = append(out, r)
		}
	}

	return out
}

// TestAdoptHandMadeVMs: a hand-made cluster's plan shows only the tag additions; apply sends
// one config update per VM with the tags alone, which keeps everything else of the VM; the
// next plan is clean.
func TestAdoptHandMadeVMs(t *testing.T) {
	e := adoptedEnv(t)
	ctx := context.Background()
	before := map[int]map[string]string{}

	for _, id := range []int{151, 161} {
		vm, _ := e.srv.VM(id)
		before[id] = vm.Config
	}

	p := e.plan(ctx)
	if err := p.Err(); err != nil {
		t.Fatalf("plan: %v", err)
	}

	if len(p.ISOs) != 0 || len(p.Findings) != 0 || len(p.Orphans) != 0 {
		t.Errorf("plan has ISOs %v, findings %v, orphans %v; want none for adopted VMs", p.ISOs, p.Findings, p.Orphans)
	}

	roles := map[string]string{"tazlab-cp-1": "controlplane", "tazlab-worker-1": "worker"}

	for _, v := range p.VMs {
		want := []string{"talforge", "talforge.node.tazlab", roles[v.Spec.Name]}
		if !v.Adopts() || !slices.Equal(v.AddTags, want) || !slices.Equal(v.Set.Keys(), []string{"tags"}) || len(v.Resize) != 0 || len(v.Delete) != 0 || v.NeedsStart() {
			t.Errorf("%s: action %s, adds %v, sets %v, resizes %v, deletes %v, start %v; want only the tags %v",
				v.Spec.Name, v.Action, v.AddTags, v.Set, v.Resize, v.Delete, v.NeedsStart(), want)
		}
	}

	var out bytes.Buffer
	p.Print(&out)

	for _, want := range []string{
		"~ tazlab-cp-1 (VMID 151 on pve): adopt: tags +talforge, +talforge.node.tazlab, +controlplane (k8s, talos kept)\n",
		"~ tazlab-worker-1 (VMID 161 on pve): adopt: tags +talforge, +talforge.node.tazlab, +worker (k8s, talos kept)\n",
		`# the VM keeps its name "talos-cp-a"`,
		"Plan: 0 to create, 2 to adopt, 0 to update, 0 to start, 0 unchanged.",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan output lacks %q:\n%s", want, out.String())
		}
	}

	e.srv.ResetLog()

	res, err := e.executor(Options{}).Apply(ctx, p)
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, summary(e.srv))
	}

	if m := mutating(e.srv); len(m) != 2 {
		t.Errorf("mutating requests %v, want one config update per VM", m)
	}

	for _, r := range configUpdates(e.srv) {
		if keys := slices.Sorted(maps.Keys(r.Params)); !slices.Equal(keys, []string{"digest", "tags"}) || r.Params["digest"] == "" {
			t.Errorf("%s %s sent %v, want only tags and the digest", r.Method, r.Path, r.Params)
		}
	}

	for _, r := range res.VMs {
		if r.Action != ActionUpdate || r.Started || r.Err != nil {
			t.Errorf("result %+v", r)
		}
	}

	for id, cfg := range before {
		vm, _ := e.srv.VM(id)
		after := maps.Clone(vm.Config)

		if tags := splitTags(after["tags"]); !ParseOwnership(tags).Is(KindNode, "tazlab") || !slices.Contains(tags, "k8s") || !slices.Contains(tags, "talos") {
			t.Errorf("VM %d tags %q: want k8s, talos and the ownership tag", id, after["tags"])
		}

		delete(after, "tags")
		delete(after, "digest")
		delete(cfg, "tags")
		delete(cfg, "digest")

		if !maps.Equal(after, cfg) {
			t.Errorf("VM %d changed beyond its tags:\nbefore %v\nafter  %v", id, cfg, after)
		}
	}

	e.srv.ResetLog()

	again := e.plan(ctx)
	if err := again.Err(); err != nil || again.HasChanges() {
		var b bytes.Buffer
		again.Print(&b)
		t.Errorf("second plan: err %v, changes %v:\n%s", err, again.HasChanges(), b.String())
	}

	if m := mutating(e.srv); len(m) != 0 {
		t.Errorf("planning sent %v", m)
	}
}

// TestAdoptedConflicts: a VM is adopted only when its VMID, PVE node and MAC say it is the
// node's and no other cluster owns it; otherwise nothing is sent to it and nothing created for
// its node, while the other node's VM is adopted in the same run, and the run fails naming it.
func TestAdoptedConflicts(t *testing.T) {
	cases := []struct {
		name   string
		modify func(v *pvesim.VM) // on VM 151; nil: the profile names VM 152, which does not exist
		want   string
	}{
		{"VMID reused by another VM", func(v *pvesim.VM) {
			v.Config["name"], v.Config["net0"] = "build-box", "virtio=BC:24:11:FF:FF:01,bridge=vmbr0"
		}, "no NIC with its MAC bc:24:11:aa:00:01"},
		{"another cluster's tag", func(v *pvesim.VM) { v.Config["tags"] = "k8s;talforge;talforge.node.other" }, "tagged as a node VM of cluster other"},
		{"ambiguous tags", func(v *pvesim.VM) { v.Config["tags"] = "talforge.node.tazlab;talforge.parked.tazlab" }, "its tags are ambiguous"},
		{"a holder of this cluster", func(v *pvesim.VM) { v.Config["tags"] = "talforge.parked.tazlab" }, "tagged as a data disk holder of cluster tazlab"},
		{"missing VM", nil, "does not exist: talforge never creates an adopted node's VM"},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			e := adoptedEnv(t)
			ctx := context.Background()

			if tc.modify == nil {
				e.cluster.Nodes[0].VMID = 152
				e.refresh()
			} else if !e.srv.Modify(151, tc.modify) {
				t.Fatal("no VM 151")
			}

			before, _ := e.srv.VM(151)
			p := e.plan(ctx)

			err := p.Err()
			if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("plan error %v, want a conflict saying %q", err, tc.want)
			}

			for _, v := range p.VMs {
				if v.Action == ActionCreate {
					t.Errorf("%s planned for creation", v.Spec.Name)
				}
			}

			e.srv.ResetLog()

			res, err := e.executor(Options{}).Apply(ctx, p)
			if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("apply error %v, want a conflict saying %q", err, tc.want)
			}

			node := e.cluster.Nodes[0].Name
			if m := touching(e.srv, node, 151, 152); len(m) != 0 {
				t.Errorf("requests for the node in conflict: %v", m)
			}

			for _, r := range e.srv.MutatingRequests() {
				if r.Method == "POST" && strings.HasSuffix(r.Path, "/qemu") {
					t.Errorf("a VM was created: %v", r.Params)
				}
			}

			// The other node is independent: its VM is adopted (tags) in this run.
			for _, r := range res.VMs {
				if (r.Err != nil) != (r.Name == node) {
					t.Errorf("VM %s: error %v", r.Name, r.Err)
				}
			}

			if other, _ := e.srv.VM(161); !strings.Contains(other.Config["tags"], OwnerTag(e.cluster.Metadata.Name)) {
				t.Errorf("the other node's VM was not adopted in the same run: tags %q", other.Config["tags"])
			}

			if after, ok := e.srv.VM(151); tc.modify != nil && (!ok || !maps.Equal(after.Config, before.Config)) {
				t.Errorf("VM 151 changed: %v -> %v", before.Config, after.Config)
			}
		})
	}
}

// TestAdoptedVMChangedAfterPlan: the update re-checks the VM right before it is sent: a VM
// whose NIC changed is not touched; a tag its owner added meanwhile is kept.
func TestAdoptedVMChangedAfterPlan(t *testing.T) {
	cases := []struct {
		name    string
		modify  func(v *pvesim.VM)
		wantErr error
	}{
		{"NIC replaced", func(v *pvesim.VM) { v.Config["net0"] = "virtio=BC:24:11:FF:FF:01,bridge=vmbr0" }, ErrNotOwned},
		{"renamed", func(v *pvesim.VM) { v.Config["name"] = "someone-else" }, ErrNotOwned},
		{"tag added by its owner", func(v *pvesim.VM) { v.Config["tags"] = "k8s;prod;talos" }, nil},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			e := adoptedEnv(t)
			ctx := context.Background()
			p := e.plan(ctx)

			e.srv.Modify(151, tc.modify)
			e.srv.ResetLog()

			_, err := e.executor(Options{}).Apply(ctx, p)

			vm, _ := e.srv.VM(151)

			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("apply error %v, want %v", err, tc.wantErr)
				}

				for _, r := range e.srv.MutatingRequests() {
					if strings.Contains(r.Path, "/151/") {
						t.Errorf("request to the changed VM: %s %s %v", r.Method, r.Path, r.Params)
					}
				}
			case err != nil:
				t.Fatalf("apply: %v", err)
			case !strings.Contains(vm.Config["tags"], "prod") || !ParseOwnership(vm.Tags()).Is(KindNode, "tazlab"):
				t.Errorf("tags %q: want the owner's prod kept and the ownership tag added", vm.Config["tags"])
			}
		})
	}
}

// TestAdoptedSizes: cores, memory and disk sizes changed in the profile reach an adopted VM in
// one config update (with the tags, if they are still missing) and resizes; nothing else is
// sent.
func TestAdoptedSizes(t *testing.T) {
	cases := []struct {
		name  string
		first bool // the tags are still missing
		edit  func(n *profile.Node)
		// what VM 151 (sockets 1) and 161 (2 sockets) get sent
		want151, want161 map[string]string
		resize           []string
	}{
		{
			name:    "cores and memory",
			edit:    func(n *profile.Node) { n.Cores, n.Memory = 6, 12288 },
			want151: map[string]string{"cores": "6", "memory": "12288"},
			want161: map[string]string{"cores": "3", "memory": "12288"},
		},
		{
			name:    "odd vCPUs on two sockets",
			edit:    func(n *profile.Node) { n.Cores = 3 },
			want151: map[string]string{"cores": "3"},
			want161: map[string]string{"cores": "3", "sockets": "1"},
		},
		{
			name:    "disks grow, never shrink",
			edit:    func(n *profile.Node) { n.Disk, n.LonghornDisk = "50G", "80G" },
			want151: map[string]string{}, want161: map[string]string{},
			resize: []string{"scsi0 50G", "scsi0 50G"},
		},
		{
			name:    "with the adoption",
			first:   true,
			edit:    func(n *profile.Node) { n.Memory = 16384 },
			want151: map[string]string{"memory": "16384", "tags": "k8s;talos;talforge;talforge.node.tazlab;controlplane"},
			want161: map[string]string{"memory": "16384", "tags": "k8s;talos;talforge;talforge.node.tazlab;worker"},
		},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()

			e := adoptedEnv(t)
			ctx := context.Background()

			if !tc.first {
				if _, _, err := e.provision(ctx, Options{}); err != nil {
					t.Fatalf("adopting: %v", err)
				}
			}

			for i := range e.cluster.Nodes {
				tc.edit(&e.cluster.Nodes[i])
			}

			e.refresh()
			e.srv.ResetLog()

			p, _, err := e.provision(ctx, Options{})
			if err != nil {
				t.Fatalf("provision: %v\n%s", err, summary(e.srv))
			}

			for _, v := range p.VMs {
				if v.Adopts() != tc.first {
					t.Errorf("%s: adopts %v, want %v", v.Spec.Name, v.Adopts(), tc.first)
				}
			}

			sent := map[string]map[string]string{}

			var resized []string

			for _, r := range e.srv.MutatingRequests() {
				switch {
				case strings.HasSuffix(r.Path, "/config"):
					if sent[r.Path] != nil {
						t.Errorf("second config update of %s", r.Path)
					}

					ps := maps.Clone(r.Params)
					delete(ps, "digest")
					sent[r.Path] = ps
				case strings.HasSuffix(r.Path, "/resize"):
					resized = append(resized, r.Params["disk"]+" "+r.Params["size"])
				default:
					t.Errorf("unexpected request %s %s %v", r.Method, r.Path, r.Params)
				}
			}

			for path, want := range map[string]map[string]string{"/nodes/pve/qemu/151/config": tc.want151, "/nodes/pve/qemu/161/config": tc.want161} {
				if got := sent[path]; len(want) == 0 && got != nil || len(want) > 0 && !maps.Equal(got, want) {
					t.Errorf("%s: sent %v, want %v", path, got, want)
				}
			}

			if !slices.Equal(resized, tc.resize) {
				t.Errorf("resized %v, want %v", resized, tc.resize)
			}

			if again := e.plan(ctx); again.HasChanges() {
				var b bytes.Buffer
				again.Print(&b)
				t.Errorf("plan after the change is not clean:\n%s", b.String())
			}
		})
	}
}

// TestDestroySkipsAdoptedVMs: once tagged, adopted VMs are the cluster's, but destroy leaves
// them alone unless asked to include them (by node name or all of them).
func TestDestroySkipsAdoptedVMs(t *testing.T) {
	e := adoptedEnv(t)
	ctx := context.Background()

	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatalf("adopting: %v", err)
	}

	adopted := AdoptedVMs(e.cluster)

	cases := []struct {
		name  string
		opts  DestroyOptions
		items []int
	}{
		{"default", DestroyOptions{Adopted: adopted}, nil},
		{"by node name", DestroyOptions{Adopted: adopted, Nodes: []string{"tazlab-cp-1"}}, nil},
		{"included, one node", DestroyOptions{Adopted: adopted, IncludeAdopted: true, Nodes: []string{"tazlab-cp-1"}}, []int{151}},
		{"included", DestroyOptions{Adopted: adopted, IncludeAdopted: true}, []int{151, 161}},
	}

	for _, tc := range cases {
		dp, err := PlanDestroy(ctx, e.api, "tazlab", tc.opts)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}

		var items []int
		for _, it := range dp.Items {
			items = append(items, it.VM.VMID)
		}

		slices.Sort(items)

		if !slices.Equal(items, tc.items) {
			t.Errorf("%s: destroys %v, want %v", tc.name, items, tc.items)
		}

		if len(tc.items) == 0 && (len(dp.Skipped) == 0 || !strings.Contains(strings.Join(dp.Skipped, "\n"), "is the adopted VM of node tazlab-cp-1 and is left alone")) {
			t.Errorf("%s: skipped %q, want the adopted VMs named", tc.name, dp.Skipped)
		}
	}

	e.srv.ResetLog()

	dp, err := PlanDestroy(ctx, e.api, "tazlab", DestroyOptions{Adopted: adopted})
	if err != nil {
		t.Fatal(err)
	}

	if err := e.executor(Options{}).Destroy(ctx, dp); err != nil {
		t.Fatal(err)
	}

	if m := mutating(e.srv); len(m) != 0 {
		t.Errorf("destroy without --include-adopted sent %v", m)
	}

	for _, id := range []int{151, 161} {
		if vm, ok := e.srv.VM(id); !ok || !vm.Running {
			t.Errorf("adopted VM %d was touched (exists %v)", id, ok)
		}
	}
}

// TestDiffAdopted covers what the emulator cases do not: defaults PVE leaves out of a config,
// sizes that only grow, and recorded slots that hold no disk.
func TestDiffAdopted(t *testing.T) {
	spec := func(slots profile.AdoptedVM, cores, mem, osGiB, dataGiB int) VMSpec {
		n := profile.Node{Name: "w-1", Role: profile.RoleWorker, Adopted: &slots}
		n.Cores, n.Memory = cores, mem

		return VMSpec{Node: n, Name: n.Name, OSDiskGiB: osGiB, DataDiskGiB: dataGiB}
	}
	tagged := "talforge;talforge.node.lab;worker"

	cases := []struct {
		name   string
		spec   VMSpec
		cfg    map[string]string
		set    Params
		resize map[string]int
		notes  string
		errs   string
	}{
		{"PVE defaults: 1 core, 512 MiB", spec(profile.AdoptedVM{}, 1, 512, 0, 0), map[string]string{"tags": tagged}, Params{}, map[string]int{}, "", ""},
		{"tags in another case", spec(profile.AdoptedVM{}, 1, 512, 0, 0), map[string]string{"tags": "Talforge;TALFORGE.NODE.LAB;Worker"}, Params{}, map[string]int{}, "", ""},
		{"memory property string", spec(profile.AdoptedVM{}, 1, 4096, 0, 0), map[string]string{"tags": tagged, "memory": "current=2048"}, Params{"memory": "4096"}, map[string]int{}, "", ""},
		{"own slots grow", spec(profile.AdoptedVM{OSDisk: "virtio0", LonghornDisk: "sata1"}, 1, 512, 40, 100),
			map[string]string{"tags": tagged, "virtio0": "ssd:vm-1-disk-0,size=32G", "sata1": "ssd:vm-1-disk-1,size=100G", "scsi0": "ssd:vm-1-disk-2,size=1G"},
			Params{}, map[string]int{"virtio0": 40}, "", ""},
		{"larger disk is kept", spec(profile.AdoptedVM{}, 1, 512, 20, 0), map[string]string{"tags": tagged, "scsi0": "ssd:vm-1-disk-0,size=32G"}, Params{}, map[string]int{}, "disks never shrink", ""},
		{"slot without a disk", spec(profile.AdoptedVM{}, 1, 512, 20, 50), map[string]string{"tags": tagged, "scsi0": "ssd:vm-1-disk-0,size=32G"}, Params{}, map[string]int{}, "disks never shrink", "no disk in scsi1"},
		{"slot with a CD-ROM", spec(profile.AdoptedVM{OSDisk: "ide2"}, 1, 512, 20, 0), map[string]string{"tags": tagged, "ide2": "local:iso/talos.iso,media=cdrom"}, Params{}, map[string]int{}, "", "CD-ROM"},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, add := diffAdopted("lab", tc.spec, tc.cfg)

			if len(add) != 0 || !maps.Equal(d.set, tc.set) {
				t.Errorf("adds %v, sets %v; want no tags, %v", add, d.set, tc.set)
			}

			if !maps.Equal(d.resize, tc.resize) {
				t.Errorf("resizes %v, want %v", d.resize, tc.resize)
			}

			if notes := strings.Join(d.notes, "\n"); tc.notes != "" && !strings.Contains(notes, tc.notes) || tc.notes == "" && notes != "" {
				t.Errorf("notes %q, want %q", notes, tc.notes)
			}

			if errs := strings.Join(d.errs, "\n"); tc.errs != "" && !strings.Contains(errs, tc.errs) || tc.errs == "" && errs != "" {
				t.Errorf("errors %q, want %q", errs, tc.errs)
			}
		})
	}
}

// TestAdoptedStoppedVMStarted: a stopped adopted VM is adopted, then started like any node VM,
// the start re-checking it as the adopted VM it is (its own name, its MAC).
func TestAdoptedStoppedVMStarted(t *testing.T) {
	e := adoptedEnv(t)
	ctx := context.Background()
	e.srv.Modify(161, func(v *pvesim.VM) { v.Running = false })

	p, res, err := e.provision(ctx, Options{})
	if err != nil {
		t.Fatalf("provision: %v\n%s", err, summary(e.srv))
	}

	var out bytes.Buffer
	p.Print(&out)
	t.Log(out.String())

	if !strings.Contains(out.String(), "~ tazlab-worker-1 (VMID 161 on pve): adopt: tags +talforge, +talforge.node.tazlab, +worker (k8s, talos kept)\n      > will be started (it is stopped)\n") {
		t.Errorf("plan output lacks the adoption and the start of VM 161:\n%s", out.String())
	}

	if vm, _ := e.srv.VM(161); !vm.Running || !res.VMs[1].Started {
		t.Errorf("VM 161 running %v, started %v", vm.Running, res.VMs[1].Started)
	}

	var starts []string

	for _, r := range e.srv.MutatingRequests() {
		if strings.HasSuffix(r.Path, "/status/start") {
			starts = append(starts, r.Path)
		}
	}

	if !slices.Equal(starts, []string{"/nodes/pve/qemu/161/status/start"}) {
		t.Errorf("starts %v, want VM 161 only", starts)
	}
}
