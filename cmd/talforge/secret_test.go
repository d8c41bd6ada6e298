package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/talforge/talforge/pkg/sopsfile"
)

// talforgeIn is talforge with standard input.
func talforgeIn(t *testing.T, stdin string, args ...string) talforgeRun {
	t.Helper()

	var out, errOut bytes.Buffer

	code := run(t.Context(), args, streams{in: strings.NewReader(stdin), out: &out, errOut: &errOut})

	return talforgeRun{code: code, out: out.String(), errOut: errOut.String()}
}

// secretProfile names both secret input files.
const secretProfile = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
talos: {version: v1.14.1, allowSchedulingOnControlPlanes: true}
network: {cidr: 192.168.1.0/24, gateway: 192.168.1.1, nameservers: [192.168.1.1]}
proxmox: {endpoint: "https://pve:8006/api2/json", node: pve, storage: local-lvm, tokenFile: secrets/proxmox.sops.yaml, defaults: {longhornDisk: 10G}}
nodes:
  - {name: cp-1, role: controlplane, ip: 192.168.1.51}
  - {name: w-1, role: worker, ip: 192.168.1.61}
longhorn:
  version: 1.10.2
  backup: {target: "s3://lab@eu-central-1/", credentialsFile: secrets/aws-backup.sops.yaml}
`

const (
	cliPVESecret = "5ec12e7a-0c1d-4a4b-9d77-a1b2c3d4e5f6"
	cliAWSSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)

// noSecret fails when a run printed a secret, or a long piece of one.
func noSecret(t *testing.T, r talforgeRun) {
	t.Helper()

	for _, s := range []string{cliPVESecret, cliAWSSecret} {
		for i := 0; i+8 <= len(s); i += 4 {
			if strings.Contains(r.out+r.errOut, s[i:i+8]) {
				t.Fatalf("the output holds a secret:\n%s", r)
			}
		}
	}
}

// assertEncrypted checks that path is SOPS-encrypted, every value, and decrypts to plain.
func assertEncrypted(t *testing.T, path, plain string) {
	t.Helper()

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	if clear, err := sopsfile.ClearValues(path, data); err != nil || len(clear) > 0 {
		t.Errorf("%s: in clear %v (%v)", path, clear, err)
	}

	if got, err := sopsfile.DecryptFile(path); err != nil || string(got) != plain {
		t.Errorf("%s decrypts to %q (%v), want %q", path, got, err, plain)
	}
}

// TestSecretSet: `secret set` writes both secret input files encrypted from standard input,
// with no sops CLI and no plaintext file; validate and generate refuse a plaintext one and
// name the command that fixes it, which does. Before the fix validate and generate accepted
// plaintext with exit 0.
func TestSecretSet(t *testing.T) {
	dir, _ := cliProject(t)
	writeProjectFile(t, "profiles/lab.yaml", secretProfile)

	tokenFile := filepath.Join(dir, "secrets", "proxmox.sops.yaml")
	credsFile := filepath.Join(dir, "secrets", "aws-backup.sops.yaml")
	profilePath := filepath.Join("profiles", "lab.yaml")

	// Neither file exists yet: the profile does not load, and secret set still finds where
	// they go.
	r := talforgeIn(t, "talforge@pve!provision="+cliPVESecret+"\n", "secret", "set", "proxmox", "-p", profilePath)
	if r.code != exitOK || !strings.Contains(r.out, "wrote "+filepath.Join("secrets", "proxmox.sops.yaml")) || !strings.Contains(r.out, "talforge@pve!provision") {
		t.Fatalf("secret set proxmox:\n%s", r)
	}

	noSecret(t, r)
	assertEncrypted(t, tokenFile, "token: talforge@pve!provision="+cliPVESecret+"\n")

	if _, err := os.Stat(filepath.Join(dir, ".sops.yaml")); err != nil {
		t.Errorf("no project .sops.yaml: %v", err)
	}

	creds := "AWS_ACCESS_KEY_ID: AKIAEXAMPLE\nAWS_SECRET_ACCESS_KEY: " + cliAWSSecret + "\n"

	r = talforgeIn(t, creds, "secret", "set", "aws-backup", "-p", profilePath)
	if r.code != exitOK || !strings.Contains(r.out, "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY") {
		t.Fatalf("secret set aws-backup:\n%s", r)
	}

	noSecret(t, r)
	assertEncrypted(t, credsFile, creds)

	if r = talforge(t, "validate", "-p", profilePath); r.code != exitOK {
		t.Fatalf("validate with encrypted inputs:\n%s", r)
	}

	// The same secret again: nothing written.
	r = talforgeIn(t, "token: talforge@pve!provision="+cliPVESecret+"\n", "secret", "set", "proxmox", "-p", profilePath)
	if r.code != exitOK || !strings.Contains(r.out, "unchanged") {
		t.Errorf("secret set with the same token:\n%s", r)
	}

	// A token written in clear, as docs/proxmox.md used to say.
	plain := "token: talforge@pve!provision=" + cliPVESecret + "\n"
	writeProjectFile(t, tokenFile, plain)

	fix := "talforge secret set proxmox -p " + profilePath + " < " + filepath.Join("secrets", "proxmox.sops.yaml")

	for _, cmd := range [][]string{{"validate", "-p", profilePath}, {"generate", "-p", profilePath}} {
		r = talforge(t, cmd...)
		if r.code != exitInvalid || !strings.Contains(r.errOut, filepath.Join("secrets", "proxmox.sops.yaml")+" is not SOPS-encrypted") || !strings.Contains(r.errOut, fix) {
			t.Errorf("%s with a plaintext token file: want exit 3 naming the file and %q\n%s", cmd[0], fix, r)
		}

		noSecret(t, r)
	}

	if _, err := os.Stat(filepath.Join(dir, "clusters")); err == nil {
		t.Error("generate wrote output although an input is in clear")
	}

	// The command the error names, literally: the plaintext file on standard input.
	f, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}

	if r = talforgeIn(t, string(f), "secret", "set", "proxmox", "-p", profilePath); r.code != exitOK {
		t.Fatalf("the fix the error names:\n%s", r)
	}

	assertEncrypted(t, tokenFile, plain)

	if r = talforge(t, "validate", "-p", profilePath); r.code != exitOK {
		t.Errorf("validate after the fix:\n%s", r)
	}
}

// TestSecretSetRefusesBadInput: malformed input is exit 3, quotes no secret, and leaves the
// file as it was.
func TestSecretSetRefusesBadInput(t *testing.T) {
	dir, _ := cliProject(t)
	writeProjectFile(t, "profiles/lab.yaml", secretProfile)

	profilePath := filepath.Join("profiles", "lab.yaml")
	tokenFile := filepath.Join(dir, "secrets", "proxmox.sops.yaml")

	cases := []struct {
		name, kind, stdin, want string
	}{
		{"trailing =", "proxmox", "talforge@pve!provision=" + cliPVESecret + "=\n", "stray '='"},
		{"space for =", "proxmox", "talforge@pve!provision " + cliPVESecret + "=\n", "contains a space"},
		{"empty", "proxmox", "\n", "standard input is empty"},
		{"token mapping with more", "proxmox", "token: a@pve!t=" + cliPVESecret + "\nother: x\n", "not `token: USER@REALM!TOKENID=SECRET` alone"},
		{"aws secret as a key", "aws-backup", cliAWSSecret + ": x\nAWS_ACCESS_KEY_ID: AKIAEXAMPLE\n", "not shown"},
		{"aws secret key upper-case only", "aws-backup", "AWS_ACCESS_KEY_ID: AKIAEXAMPLE\nWJALRXUTNFEMIK7MDENGBPXRFICYEXAMPLEKEY: x\n", "the key is not shown"},
		{"aws not yaml", "aws-backup", "AWS_SECRET_ACCESS_KEY=" + cliAWSSecret + "\n", "not a YAML mapping"},
		{"aws missing key", "aws-backup", "AWS_SECRET_ACCESS_KEY: " + cliAWSSecret + "\n", "AWS_ACCESS_KEY_ID"},
		{"aws trailing space", "aws-backup", "AWS_ACCESS_KEY_ID: AKIAEXAMPLE\nAWS_SECRET_ACCESS_KEY: \"" + cliAWSSecret + " \"\n", "whitespace"},
		{"unknown kind", "vault", "x\n", "unknown secret"},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := talforgeIn(t, tc.stdin, "secret", "set", tc.kind, "-p", profilePath)
			if r.code != exitInvalid || !strings.Contains(r.errOut, tc.want) {
				t.Errorf("want exit 3 saying %q:\n%s", tc.want, r)
			}

			noSecret(t, r)

			if strings.Contains(r.errOut, "WJALRXUTNFEMIK7MDENG") {
				t.Errorf("a key that may be a secret is quoted:\n%s", r)
			}

			if _, err := os.Stat(tokenFile); err == nil {
				t.Error("a file was written from bad input")
			}
		})
	}
}
