package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/talforge/talforge/pkg/sopsfile"
)

// Placeholders Project replaces in a profile.
const (
	PVEURL  = "{{PVE_URL}}"
	RepoURL = "{{REPO_URL}}"
)

// Project is a temporary talforge project.
type Project struct {
	// Root is the project directory (profiles/, secrets/, clusters/).
	Root string
	// Profile is the profile's path.
	Profile string
	// AWSSecret is the secret access key in the encrypted credentials file (Env.S3User's).
	AWSSecret string
}

// Project writes a project for the profile text (PVEURL and RepoURL replaced): an age
// identity of its own (HOME and SOPS_AGE_KEY_FILE point into the project), .sops.yaml, the
// SOPS-encrypted Proxmox token (secrets/proxmox.sops.yaml), the S3 server's credentials
// for Env.S3User with its endpoint (secrets/aws-backup.sops.yaml, the keys of Longhorn's
// credential Secret) and the emulator's CA (pve-ca.pem); and it creates, on the S3 server,
// the buckets the profile's s3:// URLs name.
func (e *Env) Project(t testing.TB, name, profile string) *Project {
	t.Helper()
	root := t.TempDir()
	t.Setenv("HOME", root)
	t.Setenv("SOPS_AGE_KEY_FILE", filepath.Join(root, "age-keys.txt"))
	t.Setenv("SOPS_AGE_KEY", "")
	t.Setenv("TALFORGE_PROFILE", "")
	t.Setenv("TALFORGE_PVE_TOKEN", "")
	id, err := sopsfile.EnsureIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sopsfile.WriteCreationRules(root, []string{id.Recipient}); err != nil {
		t.Fatal(err)
	}
	p := &Project{Root: root, Profile: filepath.Join(root, "profiles", name+".yaml"), AWSSecret: e.S3User.SecretKey}
	text := strings.NewReplacer(PVEURL, e.PVE.URL(), RepoURL, e.Repo.URL).Replace(profile)
	if err := e.createBuckets(t.Context(), text); err != nil {
		t.Fatal(err)
	}
	creds := ""
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINTS"} {
		creds += fmt.Sprintf("%s: %q\n", k, e.S3Credentials()[k])
	}
	for path, data := range map[string][]byte{p.Profile: []byte(text), filepath.Join(root, "pve-ca.pem"): e.PVE.CACertPEM()} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for path, plain := range map[string]string{
		"secrets/proxmox.sops.yaml":    "token: " + TokenID + "=" + TokenSecret + "\n",
		"secrets/aws-backup.sops.yaml": creds,
	} {
		full := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := sopsfile.WriteFile(full, []byte(plain)); err != nil {
			t.Fatal(err)
		}
	}
	return p
}
