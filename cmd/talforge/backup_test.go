package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/longhorn/backupstore/util"

	"github.com/talforge/talforge/internal/testenv/lhdata"
	"github.com/talforge/talforge/internal/testenv/s3server"
	"github.com/talforge/talforge/pkg/backuptarget"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/sopsfile"
)

const backupCLIProfile = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: bkcli}
talos: {version: v1.14.1, allowSchedulingOnControlPlanes: true}
network: {cidr: 192.168.1.0/24, gateway: 192.168.1.1, nameservers: [192.168.1.1]}
nodes:
  - {name: cp-1, role: controlplane, ip: 192.168.1.51, longhornDisk: 50G}
  - {name: w-1, role: worker, ip: 192.168.1.61, longhornDisk: 50G}
longhorn:
  version: 1.10.2
  backup:
    target: s3://talforge-cli@us-east-1/bkcli/
    credentialsFile: secrets/aws-backup.sops.yaml
  volumes:
    - {name: data, namespace: db, claim: data, size: 1Gi}
    - {name: cache, namespace: db, claim: cache, size: 1Gi}
`

// TestBackupCommands drives `backup list`, `backup verify` and `validate --online` against a
// real S3 server, with backups in Longhorn's layout made by Longhorn's library and a user
// holding exactly the IAM policy talforge writes for the profile.
func TestBackupCommands(t *testing.T) {
	// lhdata's backups log through logrus' standard logger before a command quiets it.
	backuptarget.QuietLogs()
	root := t.TempDir()
	t.Chdir(root)
	useThrowawayAgeKey(t, root)
	profilePath := filepath.Join(root, "profiles", "bkcli.yaml")
	writeProjectFile(t, profilePath, backupCLIProfile)
	// Loading checks that the credentials file exists; its content comes once the server runs.
	writeProjectFile(t, filepath.Join(root, "secrets", "aws-backup.sops.yaml"), "placeholder\n")
	c, err := profile.Load(profilePath)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := longhorn.IAMPolicy(c)
	if err != nil {
		t.Fatal(err)
	}
	actions, err := s3server.ActionsFromIAMPolicy(policy, "talforge-cli")
	if err != nil {
		t.Fatal(err)
	}
	user := s3server.NewUser("longhorn", actions...)
	srv := s3server.Start(t, s3server.Options{Users: []s3server.User{user}, Buckets: []string{"talforge-cli"}})
	creds := srv.Credentials(user)
	writeCreds := func(secret string) {
		t.Helper()
		plain := fmt.Sprintf("AWS_ACCESS_KEY_ID: %s\nAWS_SECRET_ACCESS_KEY: %s\nAWS_ENDPOINTS: %s\n", user.AccessKey, secret, srv.Endpoint)
		if _, err := sopsfile.WriteFile(filepath.Join(root, "secrets", "aws-backup.sops.yaml"), []byte(plain)); err != nil {
			t.Fatal(err)
		}
	}
	writeCreds(user.SecretKey)

	// db/data: a volume from before a rebuild and the one after it; one volume whose
	// backups name no claim.
	const target = "s3://talforge-cli@us-east-1/bkcli/"
	st := lhdata.New(t.TempDir())
	blk := func(b byte) []byte { return bytes.Repeat([]byte{b}, 2<<20) }
	backup := func(vol, name string, labels map[string]string, data []byte) {
		t.Helper()
		if !st.Exists(vol) {
			if err := st.Create(vol, 8<<20); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Write(vol, 0, data); err != nil {
			t.Fatal(err)
		}
		if err := st.Snapshot(vol, "snap-"+name); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Backup(t.Context(), creds, target, vol, "snap-"+name, name, labels); err != nil {
			t.Fatal(err)
		}
	}
	claimOf := func(pv string) map[string]string {
		ks := backuptarget.KubernetesStatus{Namespace: "db", PVCName: "data", PVName: pv, PVStatus: "Bound"}
		return map[string]string{backuptarget.KubernetesStatusLabel: ks.Label()}
	}
	backup("pvc-before", "backup-before", claimOf("pvc-before"), blk('1'))
	backup("pvc-after", "backup-after", claimOf("pvc-after"), blk('2'))
	backup("loose", "backup-loose", nil, blk('3'))

	bk := func(args ...string) talforgeRun {
		t.Helper()
		r := talforge(t, append(args, "-p", profilePath)...)
		if strings.Contains(r.out+r.errOut, user.SecretKey) {
			t.Errorf("%v printed the secret key", args)
		}
		if strings.Contains(r.out+r.errOut, "level=") {
			t.Errorf("%v let backupstore's logrus lines through:\n%s", args, r)
		}
		return r
	}
	expect := func(r talforgeRun, code int, wants ...string) {
		t.Helper()
		if r.code != code {
			t.Fatalf("exit %d, want %d\n%s", r.code, code, r)
		}
		for _, w := range wants {
			if !strings.Contains(r.out+r.errOut, w) {
				t.Errorf("output lacks %q\n%s", w, r)
			}
		}
	}

	r := bk("backup", "list")
	t.Log(r)
	expect(r, exitOK, "3 backup volume(s)", "volume pvc-after", "backup-before", "db/data", "backup-loose")

	r = bk("backup", "verify")
	t.Log(r)
	expect(r, exitOK, "checked 3 volume(s), 3 backup(s), 3 block(s)", "no problems")
	// The newest backup of db/data is the one after the rebuild; db/cache has none.
	if !linesMatch(r.out, "db/data", "backup-after", "pvc-after") || !linesMatch(r.out, "db/cache", "none") ||
		!linesMatch(r.out, "(no claim label)", "backup-loose", "loose") {
		t.Errorf("per-claim table:\n%s", r.out)
	}

	r = bk("backup", "verify", "--output", "json")
	expect(r, exitOK)
	var doc struct {
		OK       bool `json:"ok"`
		Volumes  int  `json:"volumes"`
		Problems []backuptarget.Problem
		Claims   []struct {
			Namespace, Claim string
			Declared         bool
			Latest           *backuptarget.Backup
		} `json:"claims"`
	}
	if err := json.Unmarshal([]byte(r.out), &doc); err != nil {
		t.Fatalf("--output json: %v\n%s", err, r.out)
	}
	if !doc.OK || doc.Volumes != 3 || len(doc.Claims) != 2 || doc.Claims[0].Latest == nil || doc.Claims[0].Latest.Name != "backup-after" || doc.Claims[1].Latest != nil {
		t.Errorf("json = %+v", doc)
	}

	// Damage: a corrupted block is found only by reading it; a deleted one by any verify.
	admin := srv.Client(srv.AdminAccessKey, srv.AdminSecretKey)
	blockKey := func(vol string, data []byte) string {
		t.Helper()
		sum := util.GetChecksum(data)
		out, err := admin.ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String("talforge-cli"), Prefix: aws.String("bkcli/backupstore/volumes/")})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range out.Contents {
			if k := aws.ToString(o.Key); strings.HasSuffix(k, "/"+vol+"/blocks/"+sum[:2]+"/"+sum[2:4]+"/"+sum+".blk") {
				return k
			}
		}
		t.Fatalf("no block %s of %s in the bucket", sum, vol)
		return ""
	}
	corrupt := blockKey("pvc-after", blk('2'))
	obj, err := admin.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String("talforge-cli"), Key: aws.String(corrupt)})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(obj.Body)
	obj.Body.Close()
	data[len(data)/2] ^= 0xff
	if _, err := admin.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String("talforge-cli"), Key: aws.String(corrupt), Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	expect(bk("backup", "verify"), exitOK, "no problems")
	sumAfter := util.GetChecksum(blk('2'))
	r = bk("backup", "verify", "--read-data", "--volume", "pvc-after")
	expect(r, exitFailure, "checked 1 volume(s)", "1 problem(s)", "volume pvc-after backup backup-after block "+sumAfter+": block-corrupt")

	gone := blockKey("pvc-before", blk('1'))
	if _, err := admin.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String("talforge-cli"), Key: aws.String(gone)}); err != nil {
		t.Fatal(err)
	}
	r = bk("backup", "verify")
	t.Log(r)
	expect(r, exitFailure, "volume pvc-before backup backup-before block "+util.GetChecksum(blk('1'))+": block-missing", "error: 1 problem(s)")

	// validate --online runs the preflight with the profile's credentials.
	r = bk("validate", "--online")
	t.Log(r)
	expect(r, exitOK, "online: delete", "works with the credentials in secrets/aws-backup.sops.yaml", "GetBucketLocation: AccessDenied")
	writeCreds(strings.Repeat("w", 40))
	r = bk("validate", "--online")
	t.Log(r)
	expect(r, exitFailure, `preflight step "authentication" failed`, "SignatureDoesNotMatch")
	r = bk("backup", "list")
	expect(r, exitFailure, "SignatureDoesNotMatch")
}

// linesMatch reports whether one line of out holds every word.
func linesMatch(out string, words ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		ok := true
		for _, w := range words {
			if !strings.Contains(line, w) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
