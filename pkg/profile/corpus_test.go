package profile_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/talforge/talforge/pkg/profile"
)

// corpusDir holds the bad-input corpus: one broken profile per file, each starting with
// "# expect: <fragment>" lines (every fragment must appear in the error) and optionally
// "# line: N" (the line the first problem must point at). Relative paths in these profiles
// resolve against this directory, so helper files (patches/, secrets/) live beside them.
const corpusDir = "testdata/invalid"

// minCorpus is the size the foundation issue asks for, with room for every semantic rule.
const minCorpus = 45

type corpusCase struct {
	file    string
	expects []string
	line    int
}

// readCorpus parses the header comments of every corpus file.
func readCorpus(t *testing.T) []corpusCase {
	t.Helper()

	return readCorpusDir(t, corpusDir)
}

// readCorpusDir parses the header comments of every *.yaml file in dir.
func readCorpusDir(t *testing.T, dir string) []corpusCase {
	t.Helper()

	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}

	var cases []corpusCase

	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}

		c := corpusCase{file: f}

		for _, l := range strings.Split(string(data), "\n") {
			if !strings.HasPrefix(l, "#") {
				break
			}

			switch body := strings.TrimSpace(strings.TrimPrefix(l, "#")); {
			case strings.HasPrefix(body, "expect:"):
				c.expects = append(c.expects, strings.TrimSpace(strings.TrimPrefix(body, "expect:")))
			case strings.HasPrefix(body, "line:"):
				if c.line, err = strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(body, "line:"))); err != nil {
					t.Fatalf("%s: bad '# line:' header: %v", f, err)
				}
			}
		}

		if len(c.expects) == 0 {
			t.Fatalf("%s: no '# expect:' header: every corpus file must say what the error contains", f)
		}

		cases = append(cases, c)
	}

	return cases
}

func TestCorpusSize(t *testing.T) {
	if n := len(readCorpus(t)); n < minCorpus {
		t.Errorf("the bad-input corpus has %d files, want at least %d", n, minCorpus)
	}
}

// TestCorpus loads every broken profile and checks that it is rejected with a Problems error
// that names the file, says what is wrong (every expected fragment) and points at the line.
func TestCorpus(t *testing.T) {
	for _, tc := range readCorpus(t) {
		t.Run(strings.TrimSuffix(filepath.Base(tc.file), ".yaml"), func(t *testing.T) {
			c, err := profile.Load(tc.file)
			if err == nil {
				t.Fatalf("Load accepted a broken profile (cluster %q)", c.Metadata.Name)
			}

			var ps profile.Problems
			if !errors.As(err, &ps) {
				t.Fatalf("error is a %T, want profile.Problems: %v", err, err)
			}

			if len(ps) == 0 {
				t.Fatal("empty Problems returned as an error")
			}

			msg := err.Error()

			if !strings.Contains(msg, tc.file) {
				t.Errorf("error does not name the file %s:\n%s", tc.file, msg)
			}

			for _, want := range tc.expects {
				if !strings.Contains(msg, want) {
					t.Errorf("error lacks %q:\n%s", want, msg)
				}
			}

			if tc.line > 0 && ps[0].Line != tc.line {
				t.Errorf("first problem is at line %d, want %d:\n%s", ps[0].Line, tc.line, msg)
			}

			for _, p := range ps {
				if p.File != tc.file {
					t.Errorf("problem names file %q, want %q: %s", p.File, tc.file, p)
				}

				if p.Hint == "" {
					t.Errorf("problem says nothing about how to fix it: %s", p)
				}
			}
		})
	}
}

// TestAllProblemsReported checks that Load reports every independent mistake of a profile, not
// only the first: a user fixes them all in one pass.
func TestAllProblemsReported(t *testing.T) {
	tests := []struct {
		name    string
		profile string
		want    []string
	}{
		{
			name: "structure",
			profile: `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lab, labels: {a: b}}
talos: {verison: v1.14.1, allowSchedulingOnControlPlanes: maybe}
network: {cidr: 192.168.1.0/24, gateway: 192.168.1.1, nameservers: 1.1.1.1}
proxmox: {endpoint: "https://pve:8006/api2/json", node: pve, storage: local-lvm, vlan: ten}
nodes:
  - {name: cp-1, role: controlplane, ip: 192.168.1.51, memory: 4G}
  - {name: w-1, role: worker, ip: 192.168.1.61, ip: 192.168.1.62}
`,
			want: []string{
				`:3:23: metadata.labels: unknown key "labels"`,
				`:4:9: talos.verison: unknown key "verison" (fix: did you mean "version"?)`,
				`:4:59: talos.allowSchedulingOnControlPlanes: expected true or false, got "maybe"`,
				`:5:68: network.nameservers: expected a list, got "1.1.1.1"`,
				`:6:88: proxmox.vlan: expected a whole number, got "ten"`,
				`:8:64: nodes[0].memory: expected a whole number, got "4G"`,
				`:9:49: nodes[1].ip: key "ip" is repeated (first set at line 9)`,
			},
		},
		{
			name: "semantics",
			profile: `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
talos: {version: v1.14.1, kubernetes: v1.38.0, extentions: [siderolabs/iscsi-tools]}
network: {cidr: 192.168.1.0/24, gateway: 10.0.0.1, vip: 192.168.1.51}
proxmox: {endpoint: "https://pve:8006/api2/json", node: pve, storage: local-lvm, vlan: 5000, cpu: kvm64}
nodes:
  - {name: cp-1, role: controlplane, ip: 192.168.1.51, vmid: 101}
  - {name: w-1, role: worker, ip: 192.168.1.300, memory: 512, vmid: 101}
  - {name: w-2, role: boss, ip: 192.168.1.63, disk: 5G}
longhorn:
  replicaCount: 2
  backup:
    target: s3://lab-backups/
    credentialsFile: secrets/aws-backup.sops.yaml
    recurringJobs:
      - {name: nightly, task: backup, cron: "0 3 * *", retain: 7}
`,
			want: []string{
				`:4:48: talos.extentions: unknown key "extentions" (fix: did you mean "extensions"?)`,
				`:4:27: talos.kubernetes: version of Kubernetes 1.38.0 is too new to be used with Talos 1.14.1`,
				`:5:33: network.gateway: 10.0.0.1 is outside network.cidr 192.168.1.0/24`,
				`:5:52: network.vip: 192.168.1.51 is also nodes[0].ip`,
				`:9:31: nodes[1].ip: "192.168.1.300" is not an IPv4 address`,
				`:9:63: nodes[1].vmid: VMID 101 is also used by nodes[0]`,
				`:10:17: nodes[2].role: expected controlplane or worker, got "boss"`,
				`:6:82: proxmox.vlan: 5000 is not a VLAN tag`,
				`:6:94: proxmox.cpu: CPU type "kvm64" lacks the x86-64-v2 instructions`,
				`:9:50: nodes[1].memory: 512 MiB is below what Talos can run in`,
				`:10:47: nodes[2].disk: 5G is below Talos' minimum of 10 GiB`,
				`:11:1: longhorn: Longhorn is enabled but no node has a longhornDisk`,
				`:14:5: longhorn.backup.target: "s3://lab-backups/" is not of the form s3://bucket@region/[path/]`,
				`:17:39: longhorn.backup.recurringJobs[0].cron: "0 3 * *" has 4 fields, want 5`,
			},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(corpusDir, "many-mistakes.yaml") // resolves secrets/ against the corpus

			_, err := profile.Parse(path, []byte(tt.profile))

			var ps profile.Problems
			if !errors.As(err, &ps) {
				t.Fatalf("want profile.Problems, got %T: %v", err, err)
			}

			if len(ps) != len(tt.want) {
				t.Errorf("got %d problems, want %d:\n%v", len(ps), len(tt.want), err)
			}

			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, path+w) {
					t.Errorf("error lacks %q:\n%s", path+w, msg)
				}
			}

			if !strings.HasPrefix(msg, strconv.Itoa(len(tt.want))+" problems:\n") {
				t.Errorf("error does not start with the problem count %d:\n%s", len(tt.want), msg)
			}
		})
	}
}

// TestOneMistakeOneProblem checks that a single mistake is reported once, on the field the
// user wrote: not again on every node that inherits it, nor on a value talforge derived from
// it (a MAC derived from a duplicated node name).
func TestOneMistakeOneProblem(t *testing.T) {
	const head = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
network: {cidr: 192.168.1.0/24, gateway: 192.168.1.1}
`

	tests := []struct {
		name, profile, want string
	}{
		{
			name: "duplicate node name",
			profile: head + `nodes:
  - {name: cp-1, role: controlplane, ip: 192.168.1.51}
  - {name: cp-1, role: worker, ip: 192.168.1.61}
`,
			want: ":7:6: nodes[1].name: name cp-1 is also used by nodes[0]",
		},
		{
			name: "bad default disk",
			profile: head + `proxmox:
  endpoint: https://pve:8006/api2/json
  node: pve
  storage: local-lvm
  defaults: {disk: 4G}
nodes:
  - {name: cp-1, role: controlplane, ip: 192.168.1.51}
  - {name: w-1, role: worker, ip: 192.168.1.61}
  - {name: w-2, role: worker, ip: 192.168.1.62}
`,
			want: ":9:14: proxmox.defaults.disk: 4G is below Talos' minimum of 10 GiB",
		},
		{
			name: "bad default memory",
			profile: head + `proxmox:
  endpoint: https://pve:8006/api2/json
  node: pve
  storage: local-lvm
  defaults: {memory: 512}
nodes:
  - {name: cp-1, role: controlplane, ip: 192.168.1.51}
  - {name: w-1, role: worker, ip: 192.168.1.61}
`,
			want: ":9:14: proxmox.defaults.memory: 512 MiB is below what Talos can run in",
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "lab.yaml")

			_, err := profile.Parse(path, []byte(tt.profile))

			var ps profile.Problems
			if !errors.As(err, &ps) {
				t.Fatalf("want profile.Problems, got %T: %v", err, err)
			}

			if len(ps) != 1 || !strings.Contains(ps[0].String(), path+tt.want) {
				t.Errorf("want exactly one problem %q, got %d:\n%v", path+tt.want, len(ps), err)
			}
		})
	}
}

// TestMergeKeys: YAML merge keys (`<<: *anchor`), which yaml.v3 decodes and homelab profiles
// use to share node settings, are not unknown keys.
func TestMergeKeys(t *testing.T) {
	const text = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
network: {cidr: 192.168.1.0/24, gateway: 192.168.1.1, vip: 192.168.1.50}
nodes:
  - &cp {name: cp-1, role: controlplane, ip: 192.168.1.51, memory: 8192}
  - {<<: *cp, name: cp-2, ip: 192.168.1.52}
  - {<<: *cp, name: cp-3, ip: 192.168.1.53}
`

	c, err := profile.Parse(filepath.Join(t.TempDir(), "lab.yaml"), []byte(text))
	if err != nil {
		t.Fatalf("a profile with merge keys does not load:\n%v", err)
	}

	if len(c.ControlPlanes()) != 3 || c.Nodes[2].Memory != 8192 || c.Nodes[2].Name != "cp-3" {
		t.Errorf("merged nodes: %+v", c.Nodes)
	}
}
