// Ownership tags: parsing, collisions between cluster names, and the old tag scheme.

package proxmox

import (
	"context"
	"errors"
	"regexp"
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
