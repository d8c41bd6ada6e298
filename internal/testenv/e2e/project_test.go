package e2e

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/sirupsen/logrus"
	"gopkg.in/yaml.v3"

	"github.com/talforge/talforge/internal/testenv/lhdata"
	"github.com/talforge/talforge/internal/testenv/s3server"
	"github.com/talforge/talforge/pkg/backuptarget"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/sopsfile"
)

var lab Shared

func TestMain(m *testing.M) {
	// backupstore logs every config it loads at info level; keep its warnings (a lock it
	// could not remove) and failures readable.
	logrus.SetLevel(logrus.WarnLevel)
	os.Exit(lab.Run(m))
}

// policyProfile backs up under a path of the bucket, so the policy is scoped to it.
const policyProfile = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: pol}
talos: {version: v1.14.1, allowSchedulingOnControlPlanes: true}
network: {cidr: 127.0.74.0/24, gateway: 127.0.74.1, nameservers: [127.0.74.1]}
proxmox:
  endpoint: {{PVE_URL}}
  tokenFile: secrets/proxmox.sops.yaml
  caFile: pve-ca.pem
  node: pve
  storage: local-lvm
  defaults: {cores: 2, memory: 4096, disk: 20G, longhornDisk: 10G}
nodes:
  - {name: pol-cp-1, role: controlplane, ip: 127.0.74.11}
longhorn:
  version: 1.10.2
  repoURL: {{REPO_URL}}
  replicaCount: 1
  backup:
    target: s3://pol-longhorn@eu-central-1/cluster-a/
    credentialsFile: secrets/aws-backup.sops.yaml
    credentialSecret: aws-backup-secret
`

// TestProjectUserHoldsTalforgePolicy: the credentials file Project writes holds the keys of
// a user with exactly talforge's IAM policy, and the server enforces it on Longhorn's own
// backupstore library: with that policy a backup, its restore and its deletion work; the
// same policy without s3:PutObject cannot back up, without s3:DeleteObject cannot delete a
// backup.
func TestProjectUserHoldsTalforgePolicy(t *testing.T) {
	env := lab.Start(t, Options{})
	proj := env.Project(t, "pol", policyProfile)
	ctx := t.Context()

	c, err := profile.Load(proj.Profile)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := longhorn.IAMPolicy(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(proj.S3User.Policy, policy) {
		t.Errorf("project user's policy:\n%s\nwant what talforge iam-policy prints:\n%s", proj.S3User.Policy, policy)
	}
	plain, err := sopsfile.DecryptFile(filepath.Join(proj.Root, credentialsPath))
	if err != nil {
		t.Fatal(err)
	}
	var creds backuptarget.Credentials
	if err := yaml.Unmarshal(plain, &creds); err != nil {
		t.Fatal(err)
	}
	if creds["AWS_ACCESS_KEY_ID"] != proj.S3User.AccessKey || creds["AWS_SECRET_ACCESS_KEY"] != proj.AWSSecret ||
		creds["AWS_ACCESS_KEY_ID"] == env.S3User.AccessKey || creds["AWS_ENDPOINTS"] != env.S3.Endpoint {
		t.Fatalf("credentials file holds %s at %s, want the project user's %s at %s (not the Env's %s)",
			creds["AWS_ACCESS_KEY_ID"], creds["AWS_ENDPOINTS"], proj.S3User.AccessKey, env.S3.Endpoint, env.S3User.AccessKey)
	}
	target := c.Longhorn.Backup.Target
	data := lhdata.New(t.TempDir())
	// withVolume gives a volume of two blocks with distinct data and a snapshot "snap".
	withVolume := func(t *testing.T, vol string) []byte {
		t.Helper()
		want := bytes.Repeat([]byte(vol), 2*int(lhdata.BlockSize)/len(vol)+1)[:2*lhdata.BlockSize]
		for _, err := range []error{data.Create(vol, 2*lhdata.BlockSize), data.Write(vol, 0, want), data.Snapshot(vol, "snap")} {
			if err != nil {
				t.Fatal(err)
			}
		}
		return want
	}
	// userWithout adds a user holding talforge's policy minus one action.
	userWithout := func(t *testing.T, action string) backuptarget.Credentials {
		t.Helper()
		p, err := s3server.PolicyWithoutAction(policy, action)
		if err != nil {
			t.Fatal(err)
		}
		u, err := env.S3.AddUser(ctx, "pol-without-"+strings.TrimPrefix(action, "s3:")+"-"+strings.ToLower(rand.Text()[:6]), p)
		if err != nil {
			t.Fatal(err)
		}
		return env.S3.Credentials(u)
	}
	// The subtests use volumes of their own: backupstore locks per volume.
	t.Run("talforge's policy backs up, restores and deletes", func(t *testing.T) {
		t.Parallel()
		want := withVolume(t, "vol-ok")
		url, err := data.Backup(ctx, creds, target, "vol-ok", "snap", "backup-ok", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := data.Restore(ctx, creds, url, "vol-ok-restored"); err != nil {
			t.Fatal(err)
		}
		if got, err := data.ReadAll("vol-ok-restored"); err != nil || !bytes.Equal(got, want) {
			t.Errorf("restored data differs from the backed-up data (err %v)", err)
		}
		if err := lhdata.DeleteBackup(ctx, creds, url); err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(listBackups(t, creds, target), func(b lhdata.StoredBackup) bool { return b.URL == url }) {
			t.Errorf("backup %s still listed after its deletion", url)
		}
		// Only the target's path: the policy grants nothing on the rest of the bucket.
		cl := env.S3.Client(creds["AWS_ACCESS_KEY_ID"], creds["AWS_SECRET_ACCESS_KEY"])
		_, err = cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("pol-longhorn"), Key: aws.String("cluster-b/x"), Body: strings.NewReader("x")})
		if s3server.ErrorCode(err) != "AccessDenied" {
			t.Errorf("PutObject outside the target's path: err = %v, want AccessDenied", err)
		}
	})
	t.Run("without s3:PutObject a backup fails", func(t *testing.T) {
		t.Parallel()
		withVolume(t, "vol-no-put")
		_, err := data.Backup(ctx, userWithout(t, "s3:PutObject"), target, "vol-no-put", "snap", "backup-no-put", nil)
		if err == nil || !strings.Contains(err.Error(), "AccessDenied") {
			t.Errorf("backup without s3:PutObject: err = %v, want AccessDenied", err)
		}
		if slices.ContainsFunc(listBackups(t, creds, target), func(b lhdata.StoredBackup) bool { return b.Volume == "vol-no-put" }) {
			t.Error("a backup without s3:PutObject left a backup in the store")
		}
	})
	t.Run("without s3:DeleteObject a backup deletion fails", func(t *testing.T) {
		t.Parallel()
		withVolume(t, "vol-no-delete")
		url, err := data.Backup(ctx, creds, target, "vol-no-delete", "snap", "backup-no-delete", nil)
		if err != nil {
			t.Fatal(err)
		}
		noDelete := userWithout(t, "s3:DeleteObject")
		err = lhdata.DeleteBackup(ctx, noDelete, url)
		// The S3 driver logs the AccessDenied of each DeleteObject and returns only the keys
		// it could not delete (backupstore s3/s3_service.go DeleteObjects).
		if err == nil || !strings.Contains(err.Error(), "failed to delete objects") || !strings.Contains(err.Error(), "backup_backup-no-delete.cfg") {
			t.Errorf("backup deletion without s3:DeleteObject: err = %v, want the backup's config not deleted", err)
		}
		if !slices.ContainsFunc(listBackups(t, creds, target), func(b lhdata.StoredBackup) bool { return b.URL == url }) {
			t.Errorf("backup %s gone after a refused deletion", url)
		}
		// And the cause is the policy: the same user's DeleteObject of that config is denied.
		cl := env.S3.Client(noDelete["AWS_ACCESS_KEY_ID"], noDelete["AWS_SECRET_ACCESS_KEY"])
		list, err := cl.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("pol-longhorn"), Prefix: aws.String("cluster-a/")})
		if err != nil {
			t.Fatal(err)
		}
		cfg := ""
		for _, o := range list.Contents {
			if strings.HasSuffix(aws.ToString(o.Key), "/backup_backup-no-delete.cfg") {
				cfg = aws.ToString(o.Key)
			}
		}
		if _, err := cl.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("pol-longhorn"), Key: aws.String(cfg)}); cfg == "" || s3server.ErrorCode(err) != "AccessDenied" {
			t.Errorf("DeleteObject %q without s3:DeleteObject: err = %v, want AccessDenied", cfg, err)
		}
	})
}

func listBackups(t *testing.T, creds backuptarget.Credentials, target string) []lhdata.StoredBackup {
	t.Helper()
	got, err := lhdata.ListBackups(t.Context(), creds, target)
	if err != nil {
		t.Fatal(err)
	}
	return got
}
