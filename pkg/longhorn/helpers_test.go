package longhorn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/talforge/talforge/pkg/profile"
)

// baseProfile is a valid two-node profile with Longhorn, backups, a recurring job in the
// default group and an extra StorageClass and volume in group "critical".
const baseProfile = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lhtest}
network: {cidr: 10.0.0.0/24, gateway: 10.0.0.1, nameservers: [10.0.0.1]}
nodes:
  - {name: cp-1, role: controlplane, ip: 10.0.0.11, longhornDisk: 50G}
  - {name: w-1, role: worker, ip: 10.0.0.21, longhornDisk: 50G}
longhorn:
  version: VERSION
  replicaCount: 2
  backup:
    target: s3://tazlab-longhorn@eu-central-1/
    credentialsFile: secrets/aws-backup.sops.yaml
    pollInterval: 5m
    recurringJobs:
      - {name: nightly, task: backup, cron: "0 3 * * *", retain: 7, concurrency: 2, groups: [default, critical], parameters: {full-backup-interval: "7"}}
      - {name: weekly-trim, task: filesystem-trim, cron: "0 4 * * 0", groups: [critical]}
  storageClasses:
    - {name: longhorn-retain, reclaimPolicy: Retain, replicas: 2, recurringJobGroups: [critical]}
  volumes:
    - {name: traefik, namespace: traefik, size: 1Gi, recurringJobGroups: [critical]}
`

// project is a temporary talforge project: root/profiles/lhtest.yaml and
// root/secrets/aws-backup.sops.yaml.
type project struct {
	root, profilePath, credsPath string
}

// newProject writes a project whose profile is baseProfile at version, edited by the
// replacements (old, new pairs), with credentials (nil: an empty placeholder file).
func newProject(t testing.TB, version string, creds []byte, replace ...string) *project {
	t.Helper()
	root := t.TempDir()
	p := &project{root: root, profilePath: filepath.Join(root, "profiles", "lhtest.yaml"), credsPath: filepath.Join(root, "secrets", "aws-backup.sops.yaml")}
	text := strings.ReplaceAll(baseProfile, "VERSION", version)
	for i := 0; i+1 < len(replace); i += 2 {
		if !strings.Contains(text, replace[i]) {
			t.Fatalf("profile has no %q to replace", replace[i])
		}
		text = strings.ReplaceAll(text, replace[i], replace[i+1])
	}
	for path, data := range map[string][]byte{p.profilePath: []byte(text), p.credsPath: creds} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func (p *project) load(t testing.TB) *profile.Cluster {
	t.Helper()
	c, err := profile.Load(p.profilePath)
	if err != nil {
		t.Fatalf("load profile: %v", err)
	}
	return c
}

func loadProfile(t testing.TB, version string, replace ...string) *profile.Cluster {
	t.Helper()
	return newProject(t, version, nil, replace...).load(t)
}

// fixtureDir returns ../shared/fixtures/longhorn relative to the module root, or skips.
func fixtureDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("skipping: go.mod not found above the test directory")
		}
		dir = parent
	}
	fx := filepath.Join(dir, "..", "shared", "fixtures", "longhorn")
	if _, err := os.Stat(fx); err != nil {
		t.Skipf("skipping: upstream Longhorn fixtures not found at %s (they live outside the repository)", fx)
	}
	return fx
}

func mustRead(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustWrite(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
