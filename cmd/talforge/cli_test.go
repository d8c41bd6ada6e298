package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
)

// talforgeRun is the outcome of one in-process `talforge` invocation.
type talforgeRun struct {
	code        int
	out, errOut string
}

func (r talforgeRun) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%sstderr:\n%s", r.code, r.out, r.errOut)
}

// talforge runs the CLI in-process with the test's working directory and environment.
func talforge(t *testing.T, args ...string) talforgeRun {
	t.Helper()

	var out, errOut bytes.Buffer

	code := run(t.Context(), args, streams{in: strings.NewReader(""), out: &out, errOut: &errOut})

	return talforgeRun{code: code, out: out.String(), errOut: errOut.String()}
}

// cliProject makes a temp directory the working directory and the only place talforge and sops
// look for keys and profiles. It returns the directory and the age identity path.
func cliProject(t *testing.T) (dir, keyFile string) {
	t.Helper()

	dir = t.TempDir()
	t.Chdir(dir)

	// Not sops' default location under XDG_CONFIG_HOME: sops reads that file as well as
	// $SOPS_AGE_KEY_FILE, and a test that swaps keys must be able to take one away.
	keyFile = filepath.Join(dir, "age", "keys.txt")

	t.Setenv("HOME", filepath.Join(dir, "home"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "home", ".config"))
	t.Setenv("SOPS_AGE_KEY_FILE", keyFile)
	t.Setenv("TALFORGE_PROFILE", "")

	// sops treats a set-but-empty variable as configured, so these must be unset.
	for _, k := range []string{"SOPS_AGE_KEY", "SOPS_AGE_KEY_CMD", "SOPS_AGE_SSH_PRIVATE_KEY_FILE", "SOPS_AGE_SSH_PRIVATE_KEY_CMD"} {
		t.Setenv(k, "")
		os.Unsetenv(k) // restored by t.Setenv's cleanup
	}

	return dir, keyFile
}

// cliProfile is a valid two-node cluster; CPS is replaced by extra control planes.
const cliProfile = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
talos: {version: v1.14.1, allowSchedulingOnControlPlanes: true}
network: {cidr: 192.168.1.0/24, gateway: 192.168.1.1, nameservers: [192.168.1.1]}
nodes:
  - {name: cp-1, role: controlplane, ip: 192.168.1.51}
  - {name: w-1, role: worker, ip: 192.168.1.61}
`

func writeProjectFile(t *testing.T, path, content string) {
	t.Helper()

	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fileStamp is a file's content and mtime: what "nothing was rewritten" compares.
type fileStamp struct {
	data  string
	mtime time.Time
	mode  fs.FileMode
}

func stamps(t *testing.T, root string) map[string]fileStamp {
	t.Helper()

	out := map[string]fileStamp{}

	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}

		info, err := d.Info()
		if err != nil {
			return err
		}

		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}

		rel, _ := filepath.Rel(root, path)
		out[filepath.ToSlash(rel)] = fileStamp{data: string(data), mtime: info.ModTime(), mode: info.Mode()}

		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	return out
}

func assertSameStamps(t *testing.T, what string, before, after map[string]fileStamp) {
	t.Helper()

	for p, a := range after {
		b, ok := before[p]

		switch {
		case !ok:
			t.Errorf("%s created %s", what, p)
		case b.data != a.data:
			t.Errorf("%s changed %s", what, p)
		case !b.mtime.Equal(a.mtime):
			t.Errorf("%s rewrote %s (mtime %v → %v)", what, p, b.mtime, a.mtime)
		case b.mode != a.mode:
			t.Errorf("%s changed the mode of %s", what, p)
		}
	}

	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("%s removed %s", what, p)
		}
	}
}

// backdate sets every file under root to an hour ago, so that a rewrite shows in its mtime even
// on filesystems with coarse timestamps.
func backdate(t *testing.T, root string) {
	t.Helper()

	old := time.Now().Add(-time.Hour).Truncate(time.Second)

	err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}

		return os.Chtimes(path, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestExitCodes drives each command through run() and checks the exit code the shell sees and
// what the user is told.
func TestExitCodes(t *testing.T) {
	tests := []struct {
		name string
		// setup prepares the project (cwd); it may run talforge itself.
		setup func(t *testing.T, dir string)
		args  []string
		code  int
		// out and errOut must contain these.
		out, errOut []string
	}{
		{
			name: "version",
			args: []string{"version"},
			code: exitOK,
			out:  []string{"talforge ", "defaults: Talos v1.14.1, Kubernetes v1.37.0, Longhorn 1.11.3"},
		},
		{
			name: "schema",
			args: []string{"schema"},
			code: exitOK,
			out:  []string{`"$id": "https://talforge.dev/schemas/cluster-v1alpha1.json"`},
		},
		{
			name:  "validate ok",
			setup: func(t *testing.T, dir string) { writeProjectFile(t, "profiles/lab.yaml", cliProfile) },
			args:  []string{"validate", "-p", "profiles/lab.yaml"},
			code:  exitOK,
			out:   []string{"profiles/lab.yaml: valid", "cluster lab, 1 control plane(s), 1 worker(s), Talos v1.14.1 (contract v1.14)"},
		},
		{
			name:  "validate finds the only profile without -p",
			setup: func(t *testing.T, dir string) { writeProjectFile(t, "profiles/lab.yaml", cliProfile) },
			args:  []string{"validate"},
			code:  exitOK,
			out:   []string{"profiles/lab.yaml: valid"},
		},
		{
			name:  "generate ok",
			setup: func(t *testing.T, dir string) { writeProjectFile(t, "profiles/lab.yaml", cliProfile) },
			args:  []string{"generate", "-p", "profiles/lab.yaml"},
			code:  exitOK,
			out:   []string{"clusters/lab: ", " written, 0 unchanged, 0 removed"},
			errOut: []string{
				"created age identity", "public key: age1",
				"created the Talos secrets bundle",
			},
		},
		{
			name: "validate invalid profile",
			setup: func(t *testing.T, dir string) {
				writeProjectFile(t, "profiles/lab.yaml", strings.Replace(cliProfile, "ip: 192.168.1.61", "ip: 192.168.2.61", 1))
			},
			args:   []string{"validate", "-p", "profiles/lab.yaml"},
			code:   exitInvalid,
			errOut: []string{"error: profiles/lab.yaml:8:", "nodes[1].ip: 192.168.2.61 is outside network.cidr 192.168.1.0/24"},
		},
		{
			name: "generate invalid profile",
			setup: func(t *testing.T, dir string) {
				writeProjectFile(t, "profiles/lab.yaml", strings.Replace(cliProfile, "role: worker", "role: wroker", 1))
			},
			args:   []string{"generate", "-p", "profiles/lab.yaml"},
			code:   exitInvalid,
			errOut: []string{`nodes[1].role: expected controlplane or worker, got "wroker"`},
		},
		{
			name: "generate with a patch that breaks machinery validation",
			setup: func(t *testing.T, dir string) {
				writeProjectFile(t, "patches/legacy.yaml", "cluster:\n  apiServer:\n    extraArgs:\n      audit-log-maxage: \"30\"\n")
				writeProjectFile(t, "profiles/lab.yaml", cliProfile+"patches: {controlplane: [patches/legacy.yaml]}\n")
			},
			args:   []string{"generate", "-p", "profiles/lab.yaml"},
			code:   exitInvalid,
			errOut: []string{"node cp-1: patch patches/legacy.yaml: makes the machine config invalid"},
		},
		{
			name:   "missing profile file",
			args:   []string{"validate", "-p", "profiles/nope.yaml"},
			code:   exitInvalid,
			errOut: []string{"profiles/nope.yaml: cannot read profile", "check the path given with -p/--profile"},
		},
		{
			name:   "unknown flag",
			args:   []string{"generate", "--ouput", "x"},
			code:   exitInvalid,
			errOut: []string{"unknown flag: --ouput"},
		},
		{
			name:   "init with a bad name",
			args:   []string{"init", "Home_Lab"},
			code:   exitInvalid,
			errOut: []string{"init takes one cluster name: lowercase letters, digits and '-'"},
		},
		{
			name:   "init without a name",
			args:   []string{"init"},
			code:   exitInvalid,
			errOut: []string{"init takes one cluster name"},
		},
		{
			name: "no -p with several profiles",
			setup: func(t *testing.T, dir string) {
				writeProjectFile(t, "profiles/lab.yaml", cliProfile)
				writeProjectFile(t, "profiles/other.yaml", strings.Replace(cliProfile, "name: lab", "name: other", 1))
			},
			args:   []string{"validate"},
			code:   exitInvalid,
			errOut: []string{"which profile? pass -p profiles/<name>.yaml"},
		},
		{
			name:   "no -p and no profiles",
			args:   []string{"generate"},
			code:   exitInvalid,
			errOut: []string{"which profile? pass -p profiles/<name>.yaml"},
		},
		{
			name: "undecryptable secrets bundle",
			setup: func(t *testing.T, dir string) {
				writeProjectFile(t, "profiles/lab.yaml", cliProfile)

				if r := talforge(t, "generate", "-p", "profiles/lab.yaml"); r.code != exitOK {
					t.Fatalf("first generate: %v", r)
				}

				// From now on only another key is at hand.
				other := filepath.Join(dir, "other-keys.txt")
				id, err := age.GenerateX25519Identity()
				if err != nil {
					t.Fatal(err)
				}

				writeProjectFile(t, other, id.String()+"\n")
				t.Setenv("SOPS_AGE_KEY_FILE", other)
			},
			args:   []string{"generate", "-p", "profiles/lab.yaml"},
			code:   exitFailure,
			errOut: []string{"cannot decrypt clusters/lab/secrets.sops.yaml: none of your keys opens it", "sops updatekeys"},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := cliProject(t)

			if tt.setup != nil {
				tt.setup(t, dir)
			}

			before := stamps(t, dir)

			r := talforge(t, tt.args...)
			if r.code != tt.code {
				t.Errorf("talforge %s: exit %d, want %d\n%v", strings.Join(tt.args, " "), r.code, tt.code, r)
			}

			for _, want := range tt.out {
				if !strings.Contains(r.out, want) {
					t.Errorf("stdout lacks %q\n%v", want, r)
				}
			}

			for _, want := range tt.errOut {
				if !strings.Contains(r.errOut, want) {
					t.Errorf("stderr lacks %q\n%v", want, r)
				}
			}

			if tt.code != exitOK {
				if !strings.HasPrefix(r.errOut, "error: ") && !strings.Contains(r.errOut, "\nerror: ") {
					t.Errorf("a failure is not reported as an error\n%v", r)
				}

				assertSameStamps(t, "a failed run", before, stamps(t, dir))
			}
		})
	}
}

// TestSchemaCommand checks that `talforge schema` prints one valid JSON Schema document that
// yaml-language-server can use: $schema, $id, and the Node definition with every node field.
func TestSchemaCommand(t *testing.T) {
	cliProject(t)

	r := talforge(t, "schema")
	if r.code != exitOK {
		t.Fatalf("%v", r)
	}

	var schema struct {
		Schema string `json:"$schema"`
		ID     string `json:"$id"`
		Ref    string `json:"$ref"`
		Defs   map[string]struct {
			Type                 string                     `json:"type"`
			Required             []string                   `json:"required"`
			AdditionalProperties *bool                      `json:"additionalProperties"`
			Properties           map[string]json.RawMessage `json:"properties"`
		} `json:"$defs"`
		Properties map[string]json.RawMessage `json:"properties"`
	}

	if err := json.Unmarshal([]byte(r.out), &schema); err != nil {
		t.Fatalf("schema is not JSON: %v\n%s", err, r.out)
	}

	if !json.Valid([]byte(r.out)) {
		t.Fatal("output is not a single JSON document")
	}

	if schema.ID != "https://talforge.dev/schemas/cluster-v1alpha1.json" {
		t.Errorf("$id = %q", schema.ID)
	}

	if !strings.Contains(schema.Schema, "json-schema.org") {
		t.Errorf("$schema = %q", schema.Schema)
	}

	for _, top := range []string{"apiVersion", "kind", "metadata", "talos", "network", "proxmox", "nodes", "patches", "longhorn"} {
		if _, ok := schema.Properties[top]; !ok {
			t.Errorf("top-level property %s missing", top)
		}
	}

	node, ok := schema.Defs["Node"]
	if !ok {
		t.Fatalf("no Node definition in $defs")
	}

	// Node inlines its VM size: the schema must list those fields on the node itself, or
	// editors flag `memory:` on a node as an error.
	for _, p := range []string{"name", "role", "ip", "mac", "vmid", "pveNode", "cores", "memory", "disk", "longhornDisk", "installDisk", "interface"} {
		if _, ok := node.Properties[p]; !ok {
			t.Errorf("Node has no property %s", p)
		}
	}

	if node.AdditionalProperties == nil || *node.AdditionalProperties {
		t.Error("Node allows additional properties; talforge rejects unknown keys")
	}

	if strings.Join(node.Required, ",") != "name,role,ip" {
		t.Errorf("Node requires %v, want name, role, ip", node.Required)
	}

	var role struct {
		Enum []string `json:"enum"`
	}

	if err := json.Unmarshal(node.Properties["role"], &role); err != nil || strings.Join(role.Enum, ",") != "controlplane,worker" {
		t.Errorf("Node.role has no controlplane/worker enum: %s", node.Properties["role"])
	}
}

// TestValidateWarnsOnEvenControlPlanes: two control planes are valid but give no etcd fault
// tolerance over one; validate passes and says so on stderr.
func TestValidateWarnsOnEvenControlPlanes(t *testing.T) {
	cliProject(t)
	writeProjectFile(t, "profiles/lab.yaml", strings.Replace(cliProfile, "name: w-1, role: worker", "name: cp-2, role: controlplane", 1))

	r := talforge(t, "validate", "-p", "profiles/lab.yaml")
	if r.code != exitOK {
		t.Fatalf("%v", r)
	}

	for _, want := range []string{"warning: ", "nodes: 2 control planes: an even number adds no etcd fault tolerance over 1", "use 1, 3 or 5 control planes"} {
		if !strings.Contains(r.errOut, want) {
			t.Errorf("stderr lacks %q\n%v", want, r)
		}
	}

	if !strings.Contains(r.out, "2 control plane(s), 0 worker(s)") {
		t.Errorf("stdout:\n%v", r)
	}
}

var agePublicKeyRE = regexp.MustCompile(`age public key: (age1[0-9a-z]+)`)

// TestInit: `talforge init NAME` creates the age identity (0600), .sops.yaml for it and a
// starter profile that validates; a second run keeps all three byte for byte.
func TestInit(t *testing.T) {
	dir, keyFile := cliProject(t)

	r := talforge(t, "init", "homelab")
	if r.code != exitOK {
		t.Fatalf("%v", r)
	}

	m := agePublicKeyRE.FindStringSubmatch(r.out)
	if m == nil {
		t.Fatalf("init printed no public key\n%v", r)
	}

	pub := m[1]

	info, err := os.Stat(keyFile)
	if err != nil {
		t.Fatalf("no identity at $SOPS_AGE_KEY_FILE: %v", err)
	}

	if info.Mode().Perm() != 0o600 {
		t.Errorf("identity mode %v, want 0600", info.Mode().Perm())
	}

	keyData, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}

	ids, err := age.ParseIdentities(bytes.NewReader(keyData))
	if err != nil || len(ids) != 1 {
		t.Fatalf("identity file does not hold one age identity: %v", err)
	}

	if got := ids[0].(*age.X25519Identity).Recipient().String(); got != pub {
		t.Errorf("printed public key %s, identity's is %s", pub, got)
	}

	if strings.Contains(r.out+r.errOut, "AGE-SECRET-KEY-") {
		t.Error("init printed the private key")
	}

	rules, err := os.ReadFile(filepath.Join(dir, ".sops.yaml"))
	if err != nil {
		t.Fatalf("no .sops.yaml: %v", err)
	}

	if !strings.Contains(string(rules), "age: "+pub) || !strings.Contains(string(rules), "creation_rules:") {
		t.Errorf(".sops.yaml has no creation rule for %s:\n%s", pub, rules)
	}

	prof, err := os.ReadFile(filepath.Join(dir, "profiles", "homelab.yaml"))
	if err != nil {
		t.Fatalf("no starter profile: %v", err)
	}

	if !strings.Contains(string(prof), "name: homelab") || strings.Contains(string(prof), "NAME") {
		t.Errorf("starter profile is not filled in for homelab:\n%s", prof)
	}

	if v := talforge(t, "validate", "-p", "profiles/homelab.yaml"); v.code != exitOK {
		t.Errorf("the starter profile does not validate\n%v", v)
	}

	backdate(t, dir)
	before := stamps(t, dir)

	again := talforge(t, "init", "homelab")
	if again.code != exitOK {
		t.Fatalf("second init: %v", again)
	}

	if !strings.Contains(again.out, "age public key: "+pub) {
		t.Errorf("second init printed another key\n%v", again)
	}

	if !strings.Contains(again.out, "profiles/homelab.yaml exists: left as it is") {
		t.Errorf("second init did not say it kept the profile\n%v", again)
	}

	if strings.Contains(again.errOut, "created age identity") || strings.Contains(again.errOut, "wrote .sops.yaml") {
		t.Errorf("second init claims to have created something\n%v", again)
	}

	assertSameStamps(t, "a second init", before, stamps(t, dir))
}

// TestGenerateTwice: the second generate of an unchanged profile writes nothing — every mtime
// stays — and says "0 written".
func TestGenerateTwice(t *testing.T) {
	dir, _ := cliProject(t)
	writeProjectFile(t, "profiles/lab.yaml", cliProfile)

	first := talforge(t, "generate", "-p", "profiles/lab.yaml")
	if first.code != exitOK {
		t.Fatalf("first generate: %v", first)
	}

	for _, f := range []string{"secrets.sops.yaml", "nodes/cp-1.yaml.enc", "nodes/w-1.yaml.enc", "talosconfig.sops.yaml", "talforge.lock.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, "clusters", "lab", f)); err != nil {
			t.Errorf("first generate did not write %s: %v", f, err)
		}
	}

	backdate(t, dir)
	before := stamps(t, dir)

	second := talforge(t, "generate", "-p", "profiles/lab.yaml")
	if second.code != exitOK {
		t.Fatalf("second generate: %v", second)
	}

	if !strings.Contains(second.out, "clusters/lab: 0 written, ") || !strings.Contains(second.out, " 0 removed") {
		t.Errorf("second generate does not report 0 written\n%v", second)
	}

	if strings.Contains(second.out, "  wrote ") {
		t.Errorf("second generate lists written files\n%v", second)
	}

	assertSameStamps(t, "a second generate", before, stamps(t, dir))
}

// sopsCLI returns the standard sops CLI ($TALFORGE_SOPS, else on PATH); without one the test
// skips, unless TALFORGE_REQUIRE_SOPS=1.
func sopsCLI(t *testing.T) string {
	t.Helper()

	if path := os.Getenv("TALFORGE_SOPS"); path != "" {
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("TALFORGE_SOPS=%s: %v", path, err)
		}

		return path
	}

	if path, err := exec.LookPath("sops"); err == nil {
		return path
	}

	if os.Getenv("TALFORGE_REQUIRE_SOPS") == "1" {
		t.Fatal("no sops CLI on PATH or at $TALFORGE_SOPS, and TALFORGE_REQUIRE_SOPS=1")
	}

	t.Skip("no sops CLI (set TALFORGE_SOPS or put sops on PATH)")

	return ""
}

// TestGeneratedFilesOpenWithSOPSCLI: what `talforge generate` encrypts opens with the standard
// sops CLI and the identity generate created — the bundle, the talosconfig and a node's config,
// which decrypts to the exact bytes talforge records in the lockfile.
func TestGeneratedFilesOpenWithSOPSCLI(t *testing.T) {
	bin := sopsCLI(t)
	dir, _ := cliProject(t)
	writeProjectFile(t, "profiles/lab.yaml", cliProfile)

	if r := talforge(t, "generate", "-p", "profiles/lab.yaml"); r.code != exitOK {
		t.Fatalf("generate: %v", r)
	}

	decrypt := func(rel string) []byte {
		t.Helper()

		cmd := exec.Command(bin, "-d", rel)
		cmd.Dir = dir

		var stderr bytes.Buffer
		cmd.Stderr = &stderr

		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("sops -d %s: %v\n%s", rel, err, stderr.String())
		}

		return out
	}

	bundle := string(decrypt("clusters/lab/secrets.sops.yaml"))
	for _, want := range []string{"cluster:", "secrets:", "trustdinfo:", "certs:"} {
		if !strings.Contains(bundle, want) {
			t.Errorf("decrypted bundle lacks %q", want)
		}
	}

	if tc := string(decrypt("clusters/lab/talosconfig.sops.yaml")); !strings.Contains(tc, "context: lab") || !strings.Contains(tc, "192.168.1.51") {
		t.Errorf("decrypted talosconfig:\n%s", tc)
	}

	node := decrypt("clusters/lab/nodes/cp-1.yaml.enc")
	if !strings.Contains(string(node), "type: controlplane") || !strings.Contains(string(node), "hostname: cp-1") {
		t.Errorf("decrypted cp-1 config is not cp-1's machine config:\n%s", node)
	}

	lock, err := os.ReadFile(filepath.Join(dir, "clusters", "lab", "talforge.lock.yaml"))
	if err != nil {
		t.Fatal(err)
	}

	sum := sha256.Sum256(node)
	if !strings.Contains(string(lock), "configDigest: sha256:"+hex.EncodeToString(sum[:])) {
		t.Errorf("sops -d of cp-1's config is not the config talforge recorded in the lockfile:\n%s", lock)
	}
}

// TestTalosconfigRenew: talosconfig says when the client certificate expires and writes a
// 0600 copy; --renew mints another certificate from the bundle, stored re-encrypted, and the
// next generate keeps it (the lockfile knows it).
func TestTalosconfigRenew(t *testing.T) {
	dir, _ := cliProject(t)
	writeProjectFile(t, "profiles/lab.yaml", cliProfile)
	if res := talforge(t, "generate", "-p", "profiles/lab.yaml"); res.code != exitOK {
		t.Fatalf("generate: %v", res)
	}
	first := filepath.Join(dir, "first.yaml")
	res := talforge(t, "talosconfig", "-p", "profiles/lab.yaml", "--out", first)
	if res.code != exitOK || !strings.Contains(res.out, "talosconfig of cluster lab: client certificate expires on ") {
		t.Fatalf("talosconfig: %v", res)
	}
	if info, err := os.Stat(first); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("talosconfig --out: %v, %v", info, err)
	}
	renewed := filepath.Join(dir, "renewed.yaml")
	if res := talforge(t, "talosconfig", "-p", "profiles/lab.yaml", "--renew", "--out", renewed); res.code != exitOK || !strings.Contains(res.out, "talosconfig.sops.yaml") {
		t.Fatalf("talosconfig --renew: %v", res)
	}
	crt := func(path string) string {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := clientconfig.FromBytes(data)
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Contexts["lab"].Crt
	}
	if a, b := crt(first), crt(renewed); a == "" || a == b {
		t.Errorf("--renew kept the client certificate")
	}
	if res := talforge(t, "generate", "-p", "profiles/lab.yaml"); res.code != exitOK || !strings.Contains(res.out, "clusters/lab: 0 written") {
		t.Errorf("generate after --renew: %v", res)
	}
}
