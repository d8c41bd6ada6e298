package secrets

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/sopsfile"
)

const inputsProfile = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
talos: {version: v1.14.1}
network: {cidr: 10.0.0.0/24, gateway: 10.0.0.1, nameservers: [10.0.0.1]}
proxmox: {endpoint: "https://pve:8006/api2/json", node: pve, storage: local-lvm, tokenFile: secrets/proxmox.sops.yaml, defaults: {longhornDisk: 10G}}
nodes: [{name: cp-1, role: controlplane, ip: 10.0.0.2}]
longhorn:
  version: 1.10.2
  backup:
    target: s3://lab@eu-central-1/
    credentialsFile: secrets/aws-backup.sops.yaml
`

const (
	awsSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	pveSecret = "5ec12e7a-0c1d-4a4b-9d77-a1b2c3d4e5f6"
)

// inputsProject is a project whose profile names both secret input files, with plaintext in
// them, and an age identity that the project's .sops.yaml encrypts for.
func inputsProject(t *testing.T) (c *profile.Cluster, cfg *sopsfile.Config, awsPath, pvePath string) {
	t.Helper()

	root := t.TempDir()
	home := t.TempDir()

	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))

	for _, k := range []string{"SOPS_AGE_KEY", "SOPS_AGE_KEY_CMD", "SOPS_AGE_SSH_PRIVATE_KEY_FILE", "SOPS_AGE_SSH_PRIVATE_KEY_CMD", "SOPS_AGE_RECIPIENTS"} {
		t.Setenv(k, "")
		os.Unsetenv(k) // restored by t.Setenv's cleanup
	}

	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}

	keyFile := filepath.Join(home, "keys.txt")
	mustWrite(t, keyFile, id.String()+"\n")
	t.Setenv("SOPS_AGE_KEY_FILE", keyFile)

	if _, err := sopsfile.WriteCreationRules(root, []string{id.Recipient().String()}); err != nil {
		t.Fatal(err)
	}

	awsPath = filepath.Join(root, "secrets", "aws-backup.sops.yaml")
	pvePath = filepath.Join(root, "secrets", "proxmox.sops.yaml")

	mustWrite(t, awsPath, "AWS_ACCESS_KEY_ID: AKIAEXAMPLE\nAWS_SECRET_ACCESS_KEY: "+awsSecret+"\n")
	mustWrite(t, pvePath, "token: talforge@pve!provision="+pveSecret+"\n")

	profilePath := filepath.Join(root, "profiles", "lab.yaml")
	mustWrite(t, profilePath, inputsProfile)

	if c, err = profile.Load(profilePath); err != nil {
		t.Fatal(err)
	}

	if cfg, err = sopsfile.ProjectConfig(root); err != nil {
		t.Fatal(err)
	}

	return c, cfg, awsPath, pvePath
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()

	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCheckInputsRefusesPlaintext: plaintext secret input files are profile problems that name
// the file and the one command that encrypts it in place; once written with WriteInput they
// pass. Before the fix validate and generate accepted them.
func TestCheckInputsRefusesPlaintext(t *testing.T) {
	c, cfg, awsPath, pvePath := inputsProject(t)

	err := CheckInputs(c)

	var problems profile.Problems
	if !errors.As(err, &problems) || len(problems) != 2 {
		t.Fatalf("want two problems, got %v", err)
	}

	for i, want := range []struct{ field, path, kind string }{
		{"longhorn.backup.credentialsFile", awsPath, KindAWSBackup},
		{"proxmox.tokenFile", pvePath, KindProxmox},
	} {
		p := problems[i]
		if p.Field != want.field || !strings.Contains(p.Message, want.path+" is not SOPS-encrypted") {
			t.Errorf("problem %d: %+v", i, p)
		}

		if cmd := "talforge secret set " + want.kind + " -p " + c.File() + " < " + want.path; !strings.Contains(p.Hint, cmd) {
			t.Errorf("problem %d does not name %q: %s", i, cmd, p.Hint)
		}
	}

	if strings.Contains(err.Error(), awsSecret) || strings.Contains(err.Error(), pveSecret) {
		t.Errorf("the problems quote a secret: %v", err)
	}

	// Encrypt both in place.
	for _, p := range []string{awsPath, pvePath} {
		plain, _ := os.ReadFile(p)

		if wrote, err := WriteInput(cfg, p, plain); err != nil || !wrote {
			t.Fatalf("WriteInput %s: %v %v", p, wrote, err)
		}

		if back, err := sopsfile.DecryptFile(p); err != nil || string(back) != string(plain) {
			t.Errorf("%s decrypts to %q (%v), want %q", p, back, err, plain)
		}

		// The same secret again: nothing to write.
		if wrote, err := WriteInput(cfg, p, plain); err != nil || wrote {
			t.Errorf("WriteInput %s again: %v %v", p, wrote, err)
		}
	}

	if err := CheckInputs(c); err != nil {
		t.Errorf("encrypted inputs: %v", err)
	}

	// A secret pasted over the encrypted value by hand.
	enc, _ := os.ReadFile(pvePath)

	var edited []string
	for _, line := range strings.Split(string(enc), "\n") {
		if strings.HasPrefix(line, "token: ") {
			line = "token: talforge@pve!provision=" + pveSecret
		}

		edited = append(edited, line)
	}

	mustWrite(t, pvePath, strings.Join(edited, "\n"))

	err = CheckInputs(c)
	if !errors.As(err, &problems) || len(problems) != 1 || !strings.Contains(problems[0].Message, "keeps token in clear") ||
		!strings.Contains(problems[0].Hint, "talforge secret set proxmox -p "+c.File()) || strings.Contains(err.Error(), pveSecret) {
		t.Errorf("a value in clear: %v", err)
	}

	// WriteInput replaces the damaged file.
	if wrote, err := WriteInput(cfg, pvePath, []byte("token: talforge@pve!provision="+pveSecret+"\n")); err != nil || !wrote {
		t.Errorf("replacing a damaged file: %v %v", wrote, err)
	}

	if err := CheckInputs(c); err != nil {
		t.Errorf("after replacing: %v", err)
	}
}

// TestWriteInputNeverReplacesAForeignFile: a file encrypted for keys this machine does not hold
// stays as it is.
func TestWriteInputNeverReplacesAForeignFile(t *testing.T) {
	_, cfg, _, pvePath := inputsProject(t)

	other, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}

	foreign := filepath.Join(t.TempDir(), ".sops.yaml")
	mustWrite(t, foreign, string(sopsfile.CreationRules([]string{other.Recipient().String()})))

	theirs, err := sopsfile.OpenConfig(foreign)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := WriteInput(theirs, pvePath, []byte("token: a@pve!t=theirs\n")); err != nil {
		t.Fatal(err)
	}

	before, _ := os.ReadFile(pvePath)

	_, err = WriteInput(cfg, pvePath, []byte("token: a@pve!t=mine\n"))
	if !errors.Is(err, ErrForeignInput) || !strings.Contains(err.Error(), other.Recipient().String()) {
		t.Errorf("replacing a foreign file: %v", err)
	}

	if after, _ := os.ReadFile(pvePath); string(after) != string(before) {
		t.Error("a file this machine cannot read was replaced")
	}
}
