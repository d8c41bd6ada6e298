package generate

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"

	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/secrets"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// sopsProject is project() with HOME isolated too: sops also reads keys from
// ~/.config/sops/age/keys.txt, and these tests take keys away.
func sopsProject(t *testing.T, profileText string) (dir, profilePath string) {
	t.Helper()

	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))

	return project(t, profileText)
}

// newKey makes an age identity file outside the project and returns its path and recipient,
// leaving SOPS_AGE_KEY_FILE as it was.
func newKey(t *testing.T) (path, recipient string) {
	t.Helper()

	keep := os.Getenv("SOPS_AGE_KEY_FILE")
	path = filepath.Join(t.TempDir(), "keys.txt")
	t.Setenv("SOPS_AGE_KEY_FILE", path)

	id, err := sopsfile.EnsureIdentity()
	if err != nil {
		t.Fatal(err)
	}

	t.Setenv("SOPS_AGE_KEY_FILE", keep)

	return path, id.Recipient
}

// recipientsOf returns the age recipients of a SOPS file, from its metadata (YAML or, for
// whole-file *.enc, JSON, which YAML reads too).
func recipientsOf(t *testing.T, path string) []string {
	t.Helper()

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	var doc struct {
		SOPS struct {
			Age []struct {
				Recipient string `yaml:"recipient"`
			} `yaml:"age"`
		} `yaml:"sops"`
	}

	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}

	var out []string
	for _, a := range doc.SOPS.Age {
		out = append(out, a.Recipient)
	}

	slices.Sort(out)

	return out
}

// encryptedFiles lists the SOPS files of an output directory.
func encryptedFiles(t *testing.T, out string) []string {
	t.Helper()

	var files []string

	for _, pattern := range []string{"*.sops.yaml", "nodes/*.enc"} {
		m, _ := filepath.Glob(filepath.Join(out, pattern))
		files = append(files, m...)
	}

	if len(files) < 4 {
		t.Fatalf("only %v encrypted in %s", files, out)
	}

	return files
}

// TestRecipientsComeFromTheProjectNotTheOutput: a .sops.yaml planted above --out decides
// nothing; the project's own does, or the one --sops-config names. Before the fix every file
// was encrypted for the planted file's recipient.
func TestRecipientsComeFromTheProjectNotTheOutput(t *testing.T) {
	dir, path := sopsProject(t, homelab)

	planted := t.TempDir()
	_, attacker := newKey(t)
	mustWrite(t, filepath.Join(planted, sopsfile.ConfigFileName), string(sopsfile.CreationRules([]string{attacker})))

	out := filepath.Join(planted, "out", "home")

	res, err := Run(context.Background(), Options{Profile: path, OutDir: out})
	if err != nil {
		t.Fatal(err)
	}

	for _, f := range encryptedFiles(t, out) {
		if got := recipientsOf(t, f); !slices.Equal(got, []string{res.Identity.Recipient}) {
			t.Errorf("%s is encrypted for %v, want the project's %s", f, got, res.Identity.Recipient)
		}
	}

	if _, err := os.Stat(filepath.Join(dir, sopsfile.ConfigFileName)); err != nil {
		t.Errorf("the project's .sops.yaml was not written: %v", err)
	}

	// An explicit configuration names the recipients, wherever the output is.
	_, mate := newKey(t)
	team := filepath.Join(t.TempDir(), "team.sops.yaml")
	mustWrite(t, team, string(sopsfile.CreationRules([]string{res.Identity.Recipient, mate})))

	if _, err := Run(context.Background(), Options{Profile: path, OutDir: out, SOPSConfig: team}); err != nil {
		t.Fatal(err)
	}

	want := slices.Sorted(slices.Values([]string{res.Identity.Recipient, mate}))
	for _, f := range encryptedFiles(t, out) {
		if got := recipientsOf(t, f); !slices.Equal(got, want) {
			t.Errorf("with --sops-config %s is encrypted for %v, want %v", f, got, want)
		}
	}

	if _, err := Run(context.Background(), Options{Profile: path, OutDir: out, SOPSConfig: filepath.Join(planted, "missing.yaml")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing --sops-config: %v", err)
	}
}

// TestRecipientChangeReencryptsTheBundle: a teammate's key added to .sops.yaml reaches the
// secrets bundle and the stored kubeconfig, whose plaintext stays byte for byte; a second run
// changes nothing. Before the fix the bundle stayed encrypted for the old recipients only.
func TestRecipientChangeReencryptsTheBundle(t *testing.T) {
	dir, path := sopsProject(t, homelab)
	out := filepath.Join(dir, "clusters", "home")
	bundlePath := filepath.Join(out, secrets.FileName)
	kubeconfigPath := filepath.Join(out, kubeconfigFile)

	res := run(t, path)

	cfg, err := sopsfile.ProjectConfig(dir)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := cfg.WriteFile(kubeconfigPath, []byte("apiVersion: v1\nkind: Config\nusers: [{name: admin, user: {token: abc}}]\n")); err != nil {
		t.Fatal(err)
	}

	bundleBefore, err := sopsfile.DecryptFile(bundlePath)
	if err != nil {
		t.Fatal(err)
	}

	kubeBefore, _ := sopsfile.DecryptFile(kubeconfigPath)

	mateKey, mate := newKey(t)
	mustWrite(t, filepath.Join(dir, ".sops.yaml"), string(sopsfile.CreationRules([]string{res.Identity.Recipient, mate})))

	res = run(t, path)

	for _, f := range []string{secrets.FileName, kubeconfigFile} {
		if !slices.Contains(res.Files.Written, f) {
			t.Errorf("%s was not re-encrypted (written: %v)", f, res.Files.Written)
		}
	}

	t.Setenv("SOPS_AGE_KEY_FILE", mateKey)

	for f, before := range map[string][]byte{bundlePath: bundleBefore, kubeconfigPath: kubeBefore} {
		after, err := sopsfile.DecryptFile(f)
		if err != nil {
			t.Errorf("the new recipient cannot open %s: %v", f, err)

			continue
		}

		if !bytes.Equal(after, before) {
			t.Errorf("%s changed:\n%s\n---\n%s", f, before, after)
		}
	}

	if _, err := secrets.Load(bundlePath); err != nil {
		t.Errorf("the re-encrypted bundle does not load: %v", err)
	}

	// Nothing left to do: neither file is rewritten again.
	t.Setenv("SOPS_AGE_KEY_FILE", filepath.Join(dir, "age", "keys.txt"))

	past := time.Now().Add(-time.Hour)
	for _, f := range []string{bundlePath, kubeconfigPath} {
		os.Chtimes(f, past, past)
	}

	res = run(t, path)
	if slices.Contains(res.Files.Written, secrets.FileName) || slices.Contains(res.Files.Written, kubeconfigFile) {
		t.Errorf("an unchanged recipient list rewrote: %v", res.Files.Written)
	}

	for _, f := range []string{bundlePath, kubeconfigPath} {
		if st, _ := os.Stat(f); !st.ModTime().Equal(past) {
			t.Errorf("%s was rewritten", f)
		}
	}
}

// TestBundleThisMachineCannotReadIsNeverReplaced: a bundle encrypted for someone else stays
// byte for byte, whatever .sops.yaml now says, and generate fails saying who can open it.
func TestBundleThisMachineCannotReadIsNeverReplaced(t *testing.T) {
	dir, path := sopsProject(t, homelab)
	out := filepath.Join(dir, "clusters", "home")
	bundlePath := filepath.Join(out, secrets.FileName)

	// The bundle as a teammate wrote it, for their key only.
	theirKey, theirs := newKey(t)
	mine := filepath.Join(dir, "age", "keys.txt")

	t.Setenv("SOPS_AGE_KEY_FILE", theirKey)
	mustWrite(t, filepath.Join(dir, ".sops.yaml"), string(sopsfile.CreationRules([]string{theirs})))
	run(t, path)

	t.Setenv("SOPS_AGE_KEY_FILE", mine)

	id, err := sopsfile.EnsureIdentity()
	if err != nil {
		t.Fatal(err)
	}

	mustWrite(t, filepath.Join(dir, ".sops.yaml"), string(sopsfile.CreationRules([]string{theirs, id.Recipient})))

	before, _ := os.ReadFile(bundlePath)

	_, err = Run(context.Background(), Options{Profile: path})

	var de *sopsfile.DecryptError
	if !errors.As(err, &de) || !slices.Contains(de.Recipients, theirs) {
		t.Errorf("want a DecryptError naming %s, got %v", theirs, err)
	}

	if after, _ := os.ReadFile(bundlePath); !bytes.Equal(after, before) {
		t.Error("a bundle this machine cannot decrypt was replaced")
	}
}

// TestPlaintextSecretInputIsRefused: a secret input file in clear stops generate before it
// writes anything, naming the file and the command that encrypts it. Before the fix generate
// succeeded.
func TestPlaintextSecretInputIsRefused(t *testing.T) {
	const secret = "5ec12e7a-0c1d-4a4b-9d77-a1b2c3d4e5f6"

	dir, path := sopsProject(t, strings.Replace(homelab, "storage: local-lvm,", "storage: local-lvm, tokenFile: secrets/proxmox.sops.yaml,", 1))
	tokenFile := filepath.Join(dir, "secrets", "proxmox.sops.yaml")
	mustWrite(t, tokenFile, "token: talforge@pve!provision="+secret+"\n")

	_, err := Run(context.Background(), Options{Profile: path})

	var problems profile.Problems
	if !errors.As(err, &problems) {
		t.Fatalf("want profile problems, got %v", err)
	}

	msg := err.Error()
	for _, want := range []string{"proxmox.tokenFile", tokenFile + " is not SOPS-encrypted", "talforge secret set proxmox -p " + path + " < " + tokenFile} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}

	if strings.Contains(msg, secret) {
		t.Errorf("the error quotes the secret: %s", msg)
	}

	if _, err := os.Stat(filepath.Join(dir, "clusters")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("generate wrote output although an input is in clear: %v", err)
	}
}
