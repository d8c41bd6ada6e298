package e2e

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/talforge/talforge/internal/testenv/s3server"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
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
	// S3User is the project's own S3 identity, whose keys are in the credentials file. Its
	// Policy is exactly what `talforge iam-policy` prints for the profile
	// (longhorn.IAMPolicy), attached as is, so the server refuses every request that policy
	// does not allow; nil when the profile has no longhorn.backup (the user may then do
	// nothing).
	S3User s3server.User
	// AWSSecret is the secret access key in the encrypted credentials file (S3User's).
	AWSSecret string
}

// credentialsPath is where Project writes the S3 credentials, relative to the project root;
// test profiles name it as longhorn.backup.credentialsFile.
const credentialsPath = "secrets/aws-backup.sops.yaml"

// Project writes a project for the profile text (PVEURL and RepoURL replaced): an age
// identity of its own (HOME and SOPS_AGE_KEY_FILE point into the project), .sops.yaml, the
// SOPS-encrypted Proxmox token (secrets/proxmox.sops.yaml), the emulator's CA (pve-ca.pem)
// and the S3 credentials (secrets/aws-backup.sops.yaml, the keys of Longhorn's credential
// Secret with the server's endpoint). It creates, on the S3 server, the buckets the
// profile's s3:// URLs name and an S3 user of the project's own holding exactly the IAM
// policy talforge writes for the profile, as a real account would be set up following
// `talforge iam-policy`: a policy too tight for Longhorn's backupstore or for talforge's
// own bucket checks fails the test instead of passing on a broad test user.
//
// The profile must be valid (it is loaded with pkg/profile to derive the policy).
func (e *Env) Project(t testing.TB, name, profileText string) *Project {
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
	p := &Project{Root: root, Profile: filepath.Join(root, "profiles", name+".yaml")}
	text := strings.NewReplacer(PVEURL, e.PVE.URL(), RepoURL, e.Repo.URL).Replace(profileText)
	if err := e.createBuckets(t.Context(), text); err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string][]byte{p.Profile: []byte(text), filepath.Join(root, "pve-ca.pem"): e.PVE.CACertPEM()} {
		writeFile(t, path, data)
	}
	if err := os.MkdirAll(filepath.Join(root, "secrets"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := sopsfile.WriteFile(filepath.Join(root, "secrets", "proxmox.sops.yaml"), []byte("token: "+TokenID+"="+TokenSecret+"\n")); err != nil {
		t.Fatal(err)
	}

	policy, err := projectPolicy(t, p.Profile, filepath.Join(root, credentialsPath))
	if err != nil {
		t.Fatalf("e2e: project %s: %v", name, err)
	}
	// One server serves every Env of a package: the user name must be new on it.
	p.S3User, err = e.S3.AddUser(t.Context(), "project-"+name+"-"+strings.ToLower(rand.Text()[:8]), policy)
	if err != nil {
		t.Fatalf("e2e: project %s: %v", name, err)
	}
	p.AWSSecret = p.S3User.SecretKey
	creds := ""
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINTS"} {
		creds += fmt.Sprintf("%s: %q\n", k, e.S3.Credentials(p.S3User)[k])
	}
	if _, err := sopsfile.WriteFile(filepath.Join(root, credentialsPath), []byte(creds)); err != nil {
		t.Fatal(err)
	}
	return p
}

// projectPolicy loads the profile at path and returns the IAM policy `talforge iam-policy`
// prints for it (nil without longhorn.backup). Loading checks that
// longhorn.backup.credentialsFile exists, yet its content needs the user this policy is
// for: an empty stand-in at creds (credentialsPath) is there during the load only.
func projectPolicy(t testing.TB, path, creds string) ([]byte, error) {
	writeFile(t, creds, nil)
	c, err := profile.Load(path)
	if rmErr := os.Remove(creds); rmErr != nil {
		return nil, rmErr
	}
	if err != nil {
		return nil, fmt.Errorf("load profile: %w", err)
	}
	if c.Longhorn == nil || c.Longhorn.Backup == nil {
		return nil, nil
	}
	if filepath.Clean(c.Resolve(c.Longhorn.Backup.CredentialsFile)) != filepath.Clean(creds) {
		return nil, errors.New("longhorn.backup.credentialsFile must be " + credentialsPath + ", where Project writes the credentials")
	}
	return longhorn.IAMPolicy(c)
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
