package profile

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/invopop/jsonschema"
)

func TestExampleProfiles(t *testing.T) {
	for _, tc := range []struct {
		file                   string
		nodes, cps, lhNodes    int
		replicas               int
		endpoint, talos, k8s   string
		longhornVersion, agent string
	}{
		{"tazlab.yaml", 2, 1, 2, 2, "https://192.168.1.51:6443", "v1.14.1", "v1.37.0", "1.10.2", "yes"},
		{"ha.yaml", 6, 3, 3, 3, "https://10.20.0.10:6443", "v1.14.1", "v1.37.0", "1.11.3", "yes"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			c, err := Load(filepath.Join("..", "..", "profiles", tc.file))
			if err != nil {
				t.Fatal(err)
			}

			if len(c.Warnings) != 0 {
				t.Errorf("warnings: %v", c.Warnings)
			}

			if len(c.Nodes) != tc.nodes || len(c.ControlPlanes()) != tc.cps || len(c.LonghornNodes()) != tc.lhNodes {
				t.Errorf("nodes %d/%d/%d", len(c.Nodes), len(c.ControlPlanes()), len(c.LonghornNodes()))
			}

			if c.Longhorn.ReplicaCount != tc.replicas || c.Longhorn.Version != tc.longhornVersion {
				t.Errorf("longhorn %d %s", c.Longhorn.ReplicaCount, c.Longhorn.Version)
			}

			if got := c.ControlPlaneEndpoint(); got != tc.endpoint {
				t.Errorf("endpoint %s, want %s", got, tc.endpoint)
			}

			if c.Talos.Version != tc.talos || c.Talos.Kubernetes != tc.k8s {
				t.Errorf("versions %s %s", c.Talos.Version, c.Talos.Kubernetes)
			}
		})
	}
}

func TestTazlabMirrorsTheReferenceHomelab(t *testing.T) {
	c, err := Load("../../profiles/tazlab.yaml")
	if err != nil {
		t.Fatal(err)
	}

	b := c.Longhorn.Backup
	if b.Target != "s3://tazlab-longhorn@eu-central-1/" || len(b.RecurringJobs) != 1 {
		t.Fatalf("backup: %+v", b)
	}

	j := b.RecurringJobs[0]
	if j.Name != "nightly-s3-backup" || j.Cron != "0 3 * * *" || j.Retain != 7 || j.Task != "backup" || len(j.Groups) != 1 || j.Groups[0] != "traefik-only" {
		t.Errorf("recurring job: %+v", j)
	}

	sc := c.Longhorn.StorageClasses[0]
	if sc.Name != "longhorn-traefik-backup" || sc.ReclaimPolicy != "Retain" || sc.Replicas != 2 {
		t.Errorf("storage class: %+v", sc)
	}

	if !c.Talos.AllowSchedulingOnControlPlanes || len(c.Workers()) != 1 {
		t.Error("tazlab has one schedulable control plane and one worker")
	}
}

func TestDefaults(t *testing.T) {
	_, err := Parse("p.yaml", []byte(`apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: d}
network: {cidr: 10.0.0.0/24, gateway: 10.0.0.1}
proxmox: {endpoint: "https://pve:8006/api2/json", node: pve, storage: local-lvm, defaults: {longhornDisk: 20G}}
nodes: [{name: a, role: controlplane, ip: 10.0.0.2}]
longhorn: {backup: {target: "s3://b@r/", credentialsFile: p.yaml, recurringJobs: [{name: j, task: backup, cron: "@daily", retain: 1}]}}
`))
	if err == nil {
		t.Fatal("a cron descriptor is not a 5-field expression")
	}

	c, err := Parse("p.yaml", []byte(`apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: d}
network: {cidr: 10.0.0.0/24, gateway: 10.0.0.1}
proxmox: {endpoint: "https://pve:8006/api2/json", node: pve, storage: local-lvm, defaults: {longhornDisk: 20G}}
nodes: [{name: a, role: controlplane, ip: 10.0.0.2}]
longhorn: {}
`))
	if err != nil {
		t.Fatal(err)
	}

	n := c.Nodes[0]
	for got, want := range map[string]string{
		c.Talos.Version: DefaultTalosVersion, c.Talos.Kubernetes: "v1.37.0", c.Longhorn.Version: DefaultLonghornVersion,
		c.Proxmox.CPU: "host", c.Proxmox.Bridge: "vmbr0", c.Proxmox.ISOStorage: "local", n.Disk: DefaultDisk,
		n.PVENode: "pve", n.InstallDisk: "/dev/sda", n.LonghornDisk: "20G", c.Longhorn.RepoURL: DefaultLonghornRepoURL,
	} {
		if got != want {
			t.Errorf("default %q, want %q", got, want)
		}
	}

	if n.Cores != DefaultCores || n.Memory != DefaultMemory || c.Longhorn.ReplicaCount != 1 || !*c.Proxmox.QemuGuestAgent {
		t.Errorf("defaults: %+v", n)
	}
}

func TestDefaultKubernetesIsSupportedByItsTalos(t *testing.T) {
	for minor, k8s := range defaultKubernetesVersions {
		talos := "v" + minor + ".0"
		text := `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: d}
talos: {version: ` + talos + `}
network: {cidr: 10.0.0.0/24, gateway: 10.0.0.1}
nodes: [{name: a, role: controlplane, ip: 10.0.0.2}]
`

		c, err := Parse("p.yaml", []byte(text))
		if err != nil {
			t.Errorf("Talos %s with its default Kubernetes %s: %v", talos, k8s, err)

			continue
		}

		if c.Talos.Kubernetes != k8s {
			t.Errorf("Talos %s defaults to Kubernetes %s, want %s", talos, c.Talos.Kubernetes, k8s)
		}
	}
}

func TestDeriveMAC(t *testing.T) {
	a := DeriveMAC("tazlab", "cp-1")
	if a != DeriveMAC("tazlab", "cp-1") {
		t.Fatal("not deterministic")
	}

	if a == DeriveMAC("tazlab", "cp-2") || a == DeriveMAC("other", "cp-1") {
		t.Fatal("different nodes or clusters share a MAC")
	}

	mac, err := net.ParseMAC(a)
	if err != nil {
		t.Fatal(err)
	}

	if mac[0]&0x02 == 0 || mac[0]&0x01 != 0 {
		t.Errorf("%s is not a locally administered unicast address", a)
	}
}

func TestCron(t *testing.T) {
	for expr, ok := range map[string]bool{
		"0 3 * * *": true, "*/15 0-6 1,15 jan-mar mon-fri": true, "30 2 * * 0": true,
		"0 3 * *": false, "0 3 * * * *": false, "61 * * * *": false, "0 24 * * *": false, "0 0 0 * *": false,
		"0 0 * 13 *": false, "0 0 * * 7": false, "*/0 * * * *": false, "5-1 * * * *": false, "a * * * *": false,
	} {
		if err := validateCron(expr); (err == nil) != ok {
			t.Errorf("%q: err = %v, want ok=%v", expr, err, ok)
		}
	}
}

func TestSizes(t *testing.T) {
	for s, want := range map[string]int{"40G": 40, "40Gi": 40, "40GiB": 40, "1T": 1024, "2048M": 2} {
		if got, err := SizeGiB(s); err != nil || got != want {
			t.Errorf("%s = %d, %v; want %d", s, got, err, want)
		}
	}

	for _, s := range []string{"", "40", "40GB?", "1.5G", "1500M", "-1G", "G"} {
		if _, err := SizeGiB(s); err == nil {
			t.Errorf("%q parsed as a whole GiB size", s)
		}
	}
}

// The committed schema file is what `talforge schema` prints.
func TestSchemaFileIsCurrent(t *testing.T) {
	got, err := JSONSchema()
	if err != nil {
		t.Fatal(err)
	}

	want, err := os.ReadFile("../../schemas/cluster-v1alpha1.json")
	if err != nil {
		t.Fatal(err)
	}

	if !bytes.Equal(append(got, '\n'), want) {
		t.Error("schemas/cluster-v1alpha1.json is stale: run `make schema`")
	}

	var s jsonschema.Schema
	if err := json.Unmarshal(got, &s); err != nil {
		t.Fatal(err)
	}

	node := s.Definitions["Node"]
	if node == nil || node.AdditionalProperties == nil || len(node.Required) != 3 {
		t.Fatalf("Node definition: %+v", node)
	}

	if p, ok := node.Properties.Get("longhornDisk"); !ok || p.Description == "" {
		t.Error("inline VM size fields lack their documentation")
	}
}

// The field documentation compiled into the binary matches the doc comments.
func TestCommentsAreGenerated(t *testing.T) {
	var r jsonschema.Reflector
	if err := r.AddGoComments("github.com/talforge/talforge/pkg/profile", "."); err != nil {
		t.Fatal(err)
	}

	for k, v := range r.CommentMap {
		if fieldComments()[k] != v {
			t.Fatalf("zz_generated_comments.go is stale at %s: run `go generate ./pkg/profile`", k)
		}
	}
}
