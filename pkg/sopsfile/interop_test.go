package sopsfile_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/talforge/talforge/pkg/sopsfile"
)

// sopsBinary returns the standard sops CLI: $TALFORGE_SOPS, else `sops` on PATH. Without one the
// interop tests skip, unless TALFORGE_REQUIRE_SOPS=1 (CI), where a missing CLI is a failure.
// Build it with: GOBIN=$HOME/.cache/talforge/bin go install github.com/getsops/sops/v3/cmd/sops@v3.13.3
func sopsBinary(t *testing.T) string {
	t.Helper()

	if path := os.Getenv("TALFORGE_SOPS"); path != "" {
		// Named explicitly: a wrong path is a broken setup, not a reason to skip.
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("TALFORGE_SOPS=%s: %v", path, err)
		}

		return path
	}

	if path, err := exec.LookPath("sops"); err == nil {
		return path
	}

	msg := "no sops CLI (set TALFORGE_SOPS or put sops on PATH; build it with `go install github.com/getsops/sops/v3/cmd/sops@v3.13.3`)"
	if os.Getenv("TALFORGE_REQUIRE_SOPS") == "1" {
		t.Fatal(msg + ", and TALFORGE_REQUIRE_SOPS=1")
	}

	t.Skip(msg)

	return ""
}

// keyring is an isolated SOPS setup: a project directory with .sops.yaml creation rules for
// one age identity, which is the only key sops or talforge can find.
type keyring struct {
	dir       string
	keyFile   string
	recipient string
}

func newKeyring(t *testing.T) *keyring {
	t.Helper()

	dir := t.TempDir()
	home := t.TempDir()

	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))

	// sops treats a set-but-empty variable as configured, so these must be unset.
	for _, k := range []string{"SOPS_AGE_KEY", "SOPS_AGE_KEY_CMD", "SOPS_AGE_SSH_PRIVATE_KEY_FILE", "SOPS_AGE_SSH_PRIVATE_KEY_CMD", "SOPS_AGE_RECIPIENTS"} {
		t.Setenv(k, "")
		os.Unsetenv(k) // restored by t.Setenv's cleanup
	}

	k := &keyring{dir: dir, keyFile: filepath.Join(home, "keys.txt")}
	k.recipient = newIdentity(t, k.keyFile)
	t.Setenv("SOPS_AGE_KEY_FILE", k.keyFile)

	k.writeRules(t, k.recipient)

	return k
}

// newIdentity writes a new age identity to path and returns its recipient.
func newIdentity(t *testing.T, path string) string {
	t.Helper()

	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(path, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	return id.Recipient().String()
}

func (k *keyring) writeRules(t *testing.T, recipients ...string) {
	t.Helper()

	if err := os.WriteFile(filepath.Join(k.dir, sopsfile.ConfigFileName), sopsfile.CreationRules(recipients), 0o644); err != nil {
		t.Fatal(err)
	}
}

// sops runs the sops CLI in the project directory.
func (k *keyring) sops(t *testing.T, bin string, args ...string) []byte {
	t.Helper()

	cmd := exec.Command(bin, args...)
	cmd.Dir = k.dir

	var stderr bytes.Buffer
	cmd.Stderr = &stderr

	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sops %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}

	return out
}

// interopFiles are plaintexts in the form sops itself emits (YAML indented by 4, sequences
// indented), so both directions can be compared byte for byte: a YAML file encrypted value by
// value and a machine config encrypted whole.
var interopFiles = []struct {
	name  string
	plain string
}{
	{
		name: "secrets.sops.yaml",
		plain: `# Talos secrets bundle (test data)
cluster:
    id: 4k1DQ0dYc2JEYkpUcWl3
    secret: c2VjcmV0LXZhbHVlLW9mLTMyLWJ5dGVz
trustdinfo:
    token: abcdef.0123456789abcdef
certs:
    etcd:
        crt: LS0tLS1CRUdJTi1DRVJU
        key: LS0tLS1CRUdJTi1LRVk=
endpoints:
    - 192.168.1.51
    - 192.168.1.52
ports:
    - 6443
    - 50000
enabled: true
`,
	},
	{
		name: "cp-1.yaml.enc",
		// Whole-file (binary) encryption keeps every byte: comments, odd spacing, no final newline.
		plain: "version: v1alpha1 # machine config\n\tdebug:   false\nmachine:\n  token: abc.def\n  ca: {crt: x, key: y}\n---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostname: cp-1",
	},
}

// TestSOPSCLIDecryptsWhatTalforgeWrites: files written by sopsfile.WriteFile open with
// `sops -d` to exactly the plaintext talforge was given.
func TestSOPSCLIDecryptsWhatTalforgeWrites(t *testing.T) {
	bin := sopsBinary(t)

	for _, f := range interopFiles {
		t.Run(f.name, func(t *testing.T) {
			k := newKeyring(t)
			path := filepath.Join(k.dir, f.name)

			wrote, err := sopsfile.WriteFile(path, []byte(f.plain))
			if err != nil || !wrote {
				t.Fatalf("WriteFile: wrote=%v err=%v", wrote, err)
			}

			enc, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}

			if bytes.Contains(enc, []byte("c2VjcmV0LXZhbHVlLW9mLTMyLWJ5dGVz")) || bytes.Contains(enc, []byte("abc.def")) {
				t.Fatalf("the encrypted file holds a secret in plaintext:\n%s", enc)
			}

			if got := k.sops(t, bin, "-d", f.name); string(got) != f.plain {
				t.Errorf("sops -d %s:\n%q\nwant\n%q", f.name, got, f.plain)
			}

			// The CLI's own view of the metadata: encrypted for our recipient.
			if got := k.sops(t, bin, "filestatus", f.name); !strings.Contains(string(got), `"encrypted":true`) {
				t.Errorf("sops filestatus %s: %s", f.name, got)
			}

			if !bytes.Contains(enc, []byte(k.recipient)) {
				t.Errorf("%s does not name recipient %s", f.name, k.recipient)
			}
		})
	}
}

// TestTalforgeDecryptsWhatSOPSCLIWrites: files encrypted with `sops encrypt --age` open with
// sopsfile.DecryptFile to exactly the plaintext, and talforge treats them as up to date.
func TestTalforgeDecryptsWhatSOPSCLIWrites(t *testing.T) {
	bin := sopsBinary(t)

	for _, f := range interopFiles {
		t.Run(f.name, func(t *testing.T) {
			k := newKeyring(t)
			path := filepath.Join(k.dir, f.name)

			if err := os.WriteFile(path, []byte(f.plain), 0o600); err != nil {
				t.Fatal(err)
			}

			enc := k.sops(t, bin, "encrypt", "--age", k.recipient, f.name)

			if err := os.WriteFile(path, enc, 0o644); err != nil {
				t.Fatal(err)
			}

			got, err := sopsfile.DecryptFile(path)
			if err != nil {
				t.Fatalf("DecryptFile: %v", err)
			}

			if string(got) != f.plain {
				t.Errorf("DecryptFile:\n%q\nwant\n%q", got, f.plain)
			}

			// A CLI-encrypted file with the same content for the same recipient is current:
			// talforge must not churn it.
			backdate(t, path)
			before := stat(t, path)

			wrote, err := sopsfile.WriteFile(path, []byte(f.plain))
			if err != nil {
				t.Fatalf("WriteFile over the CLI's file: %v", err)
			}

			if wrote {
				t.Error("WriteFile rewrote a CLI-encrypted file holding the same plaintext")
			}

			assertSameFile(t, path, before)
		})
	}
}

type fileStat struct {
	data  []byte
	mtime time.Time
	mode  fs.FileMode
}

func stat(t *testing.T, path string) fileStat {
	t.Helper()

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}

	return fileStat{data: data, mtime: info.ModTime(), mode: info.Mode()}
}

func assertSameFile(t *testing.T, path string, before fileStat) {
	t.Helper()

	after := stat(t, path)

	if !bytes.Equal(before.data, after.data) {
		t.Errorf("%s changed", path)
	}

	if !before.mtime.Equal(after.mtime) {
		t.Errorf("%s was rewritten: mtime %v → %v", path, before.mtime, after.mtime)
	}
}

// backdate moves a file's mtime an hour back so that a rewrite cannot hide in the same tick.
func backdate(t *testing.T, path string) {
	t.Helper()

	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

// TestWriteFileRewritesOnlyOnChange: SOPS output is randomised, so WriteFile must leave a file
// alone (bytes and mtime) when its plaintext and recipients are unchanged, and rewrite it when
// either changes.
func TestWriteFileRewritesOnlyOnChange(t *testing.T) {
	for _, f := range interopFiles {
		t.Run(f.name, func(t *testing.T) {
			k := newKeyring(t)
			path := filepath.Join(k.dir, f.name)

			if wrote, err := sopsfile.WriteFile(path, []byte(f.plain)); err != nil || !wrote {
				t.Fatalf("first WriteFile: wrote=%v err=%v", wrote, err)
			}

			if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o644 {
				t.Errorf("encrypted file mode: %v %v, want 0644", info.Mode().Perm(), err)
			}

			backdate(t, path)
			before := stat(t, path)

			// Same plaintext: nothing written.
			wrote, err := sopsfile.WriteFile(path, []byte(f.plain))
			if err != nil {
				t.Fatal(err)
			}

			if wrote {
				t.Error("WriteFile reported a write for unchanged plaintext")
			}

			assertSameFile(t, path, before)

			// Different plaintext: rewritten, and it decrypts to the new content.
			changed := strings.Replace(f.plain, "192.168.1.52", "192.168.1.53", 1)
			if changed == f.plain {
				changed = f.plain + "\n# changed\n"
			}

			if wrote, err := sopsfile.WriteFile(path, []byte(changed)); err != nil || !wrote {
				t.Fatalf("WriteFile with new plaintext: wrote=%v err=%v", wrote, err)
			}

			if got, err := sopsfile.DecryptFile(path); err != nil || string(got) != changed {
				t.Errorf("after a change DecryptFile = %q, %v; want %q", got, err, changed)
			}

			if after := stat(t, path); after.mtime.Equal(before.mtime) {
				t.Error("changed plaintext did not update the file's mtime")
			}

			// A new recipient in .sops.yaml: rewritten for both keys, same plaintext.
			backdate(t, path)
			before = stat(t, path)

			secondKey := filepath.Join(t.TempDir(), "second.txt")
			second := newIdentity(t, secondKey)
			k.writeRules(t, k.recipient, second)

			if wrote, err := sopsfile.WriteFile(path, []byte(changed)); err != nil || !wrote {
				t.Fatalf("WriteFile after a recipient was added: wrote=%v err=%v", wrote, err)
			}

			enc, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}

			if bytes.Equal(enc, before.data) || !bytes.Contains(enc, []byte(second)) || !bytes.Contains(enc, []byte(k.recipient)) {
				t.Errorf("after adding %s the file is not encrypted for both recipients:\n%s", second, enc)
			}

			// The new recipient alone can open it.
			t.Setenv("SOPS_AGE_KEY_FILE", secondKey)

			if got, err := sopsfile.DecryptFile(path); err != nil || string(got) != changed {
				t.Errorf("the added recipient cannot decrypt: %q, %v", got, err)
			}

			// And once rewritten, the same rules and plaintext leave it alone again.
			backdate(t, path)
			before = stat(t, path)

			if wrote, err := sopsfile.WriteFile(path, []byte(changed)); err != nil || wrote {
				t.Errorf("third WriteFile: wrote=%v err=%v, want no write", wrote, err)
			}

			assertSameFile(t, path, before)

			// No temp files left behind by atomic writes.
			entries, err := os.ReadDir(k.dir)
			if err != nil {
				t.Fatal(err)
			}

			for _, e := range entries {
				if e.Name() != f.name && e.Name() != sopsfile.ConfigFileName {
					t.Errorf("stray file %s in the directory", e.Name())
				}
			}
		})
	}
}

// TestWriteFileRefusesWhatItCannotRead: an existing file talforge cannot decrypt is never
// overwritten, and the error says who can open it — also when .sops.yaml already lists the
// reader's key (a teammate added themselves, but nobody has run `sops updatekeys` yet).
func TestWriteFileRefusesWhatItCannotRead(t *testing.T) {
	for _, rulesListReader := range []bool{false, true} {
		name := "rules unchanged"
		if rulesListReader {
			name = "rules list the reader"
		}

		t.Run(name, func(t *testing.T) {
			k := newKeyring(t)
			path := filepath.Join(k.dir, "secrets.sops.yaml")

			if _, err := sopsfile.WriteFile(path, []byte("a: b\n")); err != nil {
				t.Fatal(err)
			}

			backdate(t, path)
			before := stat(t, path)

			// Another user, whose key is not a recipient of the file.
			other := filepath.Join(t.TempDir(), "other.txt")
			otherRecipient := newIdentity(t, other)
			t.Setenv("SOPS_AGE_KEY_FILE", other)

			if rulesListReader {
				k.writeRules(t, k.recipient, otherRecipient)
			}

			wrote, err := sopsfile.WriteFile(path, []byte("a: c\n"))

			var de *sopsfile.DecryptError
			if !errors.As(err, &de) {
				t.Errorf("want a *sopsfile.DecryptError, got %T: %v (wrote=%v)", err, err, wrote)
			} else {
				for _, want := range []string{"cannot decrypt " + path, k.recipient, "sops updatekeys"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error lacks %q: %v", want, err)
					}
				}
			}

			assertSameFile(t, path, before)
		})
	}
}
