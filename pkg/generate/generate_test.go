package generate

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"go.yaml.in/yaml/v4"

	"github.com/talforge/talforge/pkg/gitops"
	"github.com/talforge/talforge/pkg/secrets"
	"github.com/talforge/talforge/pkg/sopsfile"
)

const homelab = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: home}
talos: {version: v1.14.1, allowSchedulingOnControlPlanes: true}
network: {cidr: 192.168.1.0/24, gateway: 192.168.1.1, nameservers: [1.1.1.1]}
proxmox: {endpoint: "https://pve:8006/api2/json", node: pve, storage: local-lvm, defaults: {longhornDisk: 100G}}
nodes:
  - {name: cp-1, role: controlplane, ip: 192.168.1.51}
  - {name: w-1, role: worker, ip: 192.168.1.61}
  - {name: w-2, role: worker, ip: 192.168.1.62}
patches: {all: [patches/common.yaml]}
longhorn: {replicaCount: 2}
`

// project makes a project directory with the profile and an age key of its own.
func project(t *testing.T, profileText string) (dir, profilePath string) {
	t.Helper()

	dir = t.TempDir()
	t.Setenv("SOPS_AGE_KEY_FILE", filepath.Join(dir, "age", "keys.txt"))
	t.Setenv("SOPS_AGE_KEY", "")
	os.Unsetenv("SOPS_AGE_KEY")
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache")) // the records of reuse.go

	mustWrite(t, filepath.Join(dir, "patches", "common.yaml"), "apiVersion: v1alpha1\nkind: TimeSyncConfig\nntp:\n  servers: [time.cloudflare.com]\n")
	profilePath = filepath.Join(dir, "profiles", "home.yaml")
	mustWrite(t, profilePath, profileText)

	return dir, profilePath
}

func run(t *testing.T, path string) *Result {
	t.Helper()

	res, err := Run(context.Background(), Options{Profile: path})
	if err != nil {
		t.Fatal(err)
	}

	return res
}

// snapshot records every file's bytes and mtime under dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()

	out := map[string]string{}

	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}

		data, _ := os.ReadFile(p)
		st, _ := d.Info()
		rel, _ := filepath.Rel(dir, p)
		out[rel] = st.ModTime().Format(time.RFC3339Nano) + "\x00" + string(data)

		return nil
	})

	return out
}

func TestGenerateWritesEverythingOnceThenNothing(t *testing.T) {
	dir, path := project(t, homelab)
	out := filepath.Join(dir, "clusters", "home")

	res := run(t, path)

	if !res.BundleCreated {
		t.Error("the first run did not create the secrets bundle")
	}

	want := []string{".gitignore", "nodes.redacted.yaml", "nodes/cp-1.yaml.enc", "nodes/w-1.yaml.enc", "nodes/w-2.yaml.enc",
		"schematic.yaml", "secrets.sops.yaml", "talforge.lock.yaml", "talosconfig.sops.yaml"}
	got := slices.Clone(res.Files.Written)
	slices.Sort(got)

	if !slices.Equal(got, want) {
		t.Fatalf("written = %v\nwant      %v", got, want)
	}

	for _, f := range []string{".sops.yaml", "age/keys.txt"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s was not created: %v", f, err)
		}
	}

	if st, _ := os.Stat(filepath.Join(dir, "age/keys.txt")); st.Mode().Perm() != 0o600 {
		t.Errorf("age identity mode %v, want 0600", st.Mode().Perm())
	}

	before := snapshot(t, dir)

	time.Sleep(10 * time.Millisecond)

	res = run(t, path)
	if res.Files.Changed() {
		t.Fatalf("a second run with no change wrote %v removed %v", res.Files.Written, res.Files.Removed)
	}

	after := snapshot(t, dir)
	for f := range before {
		if before[f] != after[f] {
			t.Errorf("%s changed (bytes or mtime) on a no-change run", f)
		}
	}

	// The node configs decrypt (whole file) to configs machinery loads and validates, and
	// their digests are what the lockfile says.
	lock := readLock(filepath.Join(out, LockFile))

	for _, n := range []string{"cp-1", "w-1", "w-2"} {
		plain, err := sopsfile.DecryptFile(filepath.Join(out, NodeConfigFile(n)))
		if err != nil {
			t.Fatal(err)
		}

		if _, err := configloader.NewFromBytes(plain); err != nil {
			t.Errorf("%s: machinery cannot load the decrypted config: %v", n, err)
		}

		if digest(plain) != lock.nodeDigest(n) {
			t.Errorf("%s: decrypted config does not match the lockfile digest", n)
		}
	}
}

// No plaintext secret from the bundle appears anywhere under clusters/.
func TestNoPlaintextSecretUnderClusters(t *testing.T) {
	dir, path := project(t, homelab)
	run(t, path)

	out := filepath.Join(dir, "clusters", "home")

	plain, err := sopsfile.DecryptFile(filepath.Join(out, secrets.FileName))
	if err != nil {
		t.Fatal(err)
	}

	// Every string value of the bundle longer than 16 characters is secret material (keys,
	// tokens, encryption secrets), a certificate or the public cluster ID; none of the secrets
	// may appear in clear.
	var bundle map[string]any
	if err := yaml.Unmarshal(plain, &bundle); err != nil {
		t.Fatal(err)
	}

	var values []string

	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k == "crt" || k == "id" {
					continue
				}

				walk(x)
			}
		case string:
			if len(v) > 16 {
				values = append(values, v)
			}
		}
	}
	walk(bundle)

	if len(values) < 8 {
		t.Fatalf("only %d secret values found in the bundle", len(values))
	}

	var files []gitops.File

	filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}

		data, _ := os.ReadFile(p)
		for _, v := range values {
			if bytes.Contains(data, []byte(v)) {
				t.Errorf("%s holds a plaintext secret of the bundle", p)
			}
		}

		files = append(files, gitops.File{Path: p, Data: data, Secret: strings.HasSuffix(p, ".sops.yaml") || strings.HasSuffix(p, ".enc")})

		return nil
	})

	if err := gitops.CheckLeaks(files); err != nil {
		t.Error(err)
	}

	redacted, _ := os.ReadFile(filepath.Join(out, RedactedFile))
	if !bytes.Contains(redacted, []byte("token: '******'")) || !bytes.Contains(redacted, []byte("hostname: w-2")) {
		t.Errorf("the redacted view lacks redacted secrets or node settings")
	}
}

func TestSecretsBundleIsNeverReplaced(t *testing.T) {
	dir, path := project(t, homelab)
	run(t, path)

	out := filepath.Join(dir, "clusters", "home")
	bundle, _ := os.ReadFile(filepath.Join(out, secrets.FileName))
	cfg1, _ := sopsfile.DecryptFile(filepath.Join(out, NodeConfigFile("cp-1")))

	// Lose everything but the bundle: the re-run uses the same secrets, so the configs are
	// byte-identical.
	for _, f := range []string{"nodes", RedactedFile, LockFile, TalosconfigFile} {
		os.RemoveAll(filepath.Join(out, f))
	}

	res := run(t, path)
	if res.BundleCreated {
		t.Fatal("the bundle was created again")
	}

	if now, _ := os.ReadFile(filepath.Join(out, secrets.FileName)); !bytes.Equal(now, bundle) {
		t.Fatal("the secrets bundle file changed")
	}

	cfg2, _ := sopsfile.DecryptFile(filepath.Join(out, NodeConfigFile("cp-1")))
	if !bytes.Equal(cfg1, cfg2) {
		t.Error("same profile and same secrets gave a different config")
	}

	// A bundle that cannot be decrypted is an error, never a reason to make a new one.
	other := filepath.Join(dir, "other-key.txt")
	t.Setenv("SOPS_AGE_KEY_FILE", other)

	if _, err := sopsfile.EnsureIdentity(); err != nil {
		t.Fatal(err)
	}

	if _, err := Run(context.Background(), Options{Profile: path}); err == nil || !strings.Contains(err.Error(), "cannot decrypt") {
		t.Fatalf("with another key: %v", err)
	}

	if now, _ := os.ReadFile(filepath.Join(out, secrets.FileName)); !bytes.Equal(now, bundle) {
		t.Fatal("the secrets bundle file changed after a failed decrypt")
	}
}

func TestProfileChangeRewritesOnlyWhatChanged(t *testing.T) {
	_, path := project(t, homelab)
	run(t, path)

	// A new nameserver changes every node's config, not the talosconfig or schematic.
	mustWrite(t, path, strings.Replace(homelab, "nameservers: [1.1.1.1]", "nameservers: [1.1.1.1, 9.9.9.9]", 1))

	res := run(t, path)
	want := []string{"nodes.redacted.yaml", "nodes/cp-1.yaml.enc", "nodes/w-1.yaml.enc", "nodes/w-2.yaml.enc", "talforge.lock.yaml"}

	if !slices.Equal(res.Files.Written, want) {
		t.Errorf("written = %v, want %v", res.Files.Written, want)
	}

	// Dropping a node removes its config; the others stay as they are.
	mustWrite(t, path, strings.Replace(strings.Replace(homelab, "nameservers: [1.1.1.1]", "nameservers: [1.1.1.1, 9.9.9.9]", 1),
		"  - {name: w-2, role: worker, ip: 192.168.1.62}\n", "", 1))

	res = run(t, path)
	if !slices.Equal(res.Files.Removed, []string{"nodes/w-2.yaml.enc"}) {
		t.Errorf("removed = %v", res.Files.Removed)
	}

	if slices.Contains(res.Files.Written, "nodes/w-1.yaml.enc") {
		t.Error("an unchanged node's config was rewritten")
	}
}

func TestRecipientChangeReencrypts(t *testing.T) {
	dir, path := project(t, homelab)
	run(t, path)

	// A teammate joins: a second recipient in .sops.yaml re-encrypts every encrypted file.
	id, _ := sopsfile.EnsureIdentity()
	other := filepath.Join(t.TempDir(), "k.txt")
	t.Setenv("SOPS_AGE_KEY_FILE", other)

	mate, _ := sopsfile.EnsureIdentity()
	t.Setenv("SOPS_AGE_KEY_FILE", id.Path)

	mustWrite(t, filepath.Join(dir, ".sops.yaml"), string(sopsfile.CreationRules([]string{id.Recipient, mate.Recipient})))

	res := run(t, path)
	for _, f := range []string{"nodes/cp-1.yaml.enc", "talosconfig.sops.yaml"} {
		if !slices.Contains(res.Files.Written, f) {
			t.Errorf("%s was not re-encrypted for the new recipient", f)
		}
	}

	// The teammate can now decrypt.
	t.Setenv("SOPS_AGE_KEY_FILE", other)

	if _, err := sopsfile.DecryptFile(filepath.Join(dir, "clusters/home", NodeConfigFile("w-1"))); err != nil {
		t.Error(err)
	}
}

func TestCommit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}

	dir, path := project(t, homelab)

	// Outside a repository --commit is refused before anything is written.
	if _, err := Run(context.Background(), Options{Profile: path, Commit: true}); err == nil || !strings.Contains(err.Error(), "not inside a Git repository") {
		t.Fatalf("outside a repository: %v", err)
	}

	if _, err := os.Stat(filepath.Join(dir, "clusters")); err == nil {
		t.Fatal("files were written although --commit could not commit")
	}

	for _, kv := range [][2]string{{"GIT_AUTHOR_NAME", "t"}, {"GIT_AUTHOR_EMAIL", "t@e.x"}, {"GIT_COMMITTER_NAME", "t"}, {"GIT_COMMITTER_EMAIL", "t@e.x"}} {
		t.Setenv(kv[0], kv[1])
	}

	if out, err := exec.Command("git", "-C", dir, "init", "-q").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}

	res, err := Run(context.Background(), Options{Profile: path, Commit: true})
	if err != nil || !res.Committed {
		t.Fatalf("commit: %v", err)
	}

	msg, _ := exec.Command("git", "-C", dir, "log", "-1", "--format=%B").Output()
	if !strings.Contains(string(msg), "talforge: generate home (profile "+res.Lock.ProfileDigest+")") {
		t.Errorf("commit message %q does not name the profile digest", msg)
	}

	if res, err := Run(context.Background(), Options{Profile: path, Commit: true}); err != nil || res.Committed {
		t.Errorf("a no-change run committed: %v", err)
	}
}

// TestImportedBundle: a running cluster's bundle (talforge import) is stored as the cluster's,
// the configs carry its identity, and once one is stored another is refused, nothing written.
func TestImportedBundle(t *testing.T) {
	dir, path := project(t, homelab)

	contract, err := config.ParseContractFromVersion("v1.14.1")
	if err != nil {
		t.Fatal(err)
	}

	live, err := secrets.New(contract)
	if err != nil {
		t.Fatal(err)
	}

	res, err := Run(context.Background(), Options{Profile: path, Bundle: live})
	if err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "clusters", "home")

	stored, err := secrets.Load(filepath.Join(out, secrets.FileName))
	if err != nil || !res.BundleCreated {
		t.Fatalf("stored bundle: %v, created %v", err, res.BundleCreated)
	}

	if stored.Cluster.ID != live.Cluster.ID || stored.Cluster.Secret != live.Cluster.Secret || !bytes.Equal(stored.Certs.OS.Key, live.Certs.OS.Key) ||
		stored.Secrets.SecretboxEncryptionSecret != live.Secrets.SecretboxEncryptionSecret {
		t.Error("the stored bundle is not the imported one")
	}

	cfg, err := sopsfile.DecryptFile(filepath.Join(out, NodeConfigFile("cp-1")))
	if err != nil || !bytes.Contains(cfg, []byte(live.Cluster.ID)) {
		t.Errorf("cp-1's config does not carry the imported cluster id: %v", err)
	}

	before := snapshot(t, dir)

	other, err := secrets.New(contract)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := Run(context.Background(), Options{Profile: path, Bundle: other}); !errors.Is(err, secrets.ErrExists) {
		t.Fatalf("a second import: %v, want ErrExists", err)
	}

	if after := snapshot(t, dir); !maps.Equal(before, after) {
		t.Error("a refused import changed files")
	}
}
