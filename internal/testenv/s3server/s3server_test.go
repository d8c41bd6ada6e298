package s3server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
)

const bucket = "longhorn-backups"

// Users of the shared server. backupUser and scopedUser hold the SeaweedFS actions of
// what `talforge iam-policy` writes for a target at the bucket root and under
// cluster-a/; policyUser has that policy attached as is, noDeleteUser the same minus
// s3:DeleteObject; nobody has no grant at all.
var (
	backupUser   = NewUser("longhorn")
	scopedUser   = NewUser("longhorn-scoped")
	policyUser   = NewUser("longhorn-policy")
	noDeleteUser = NewUser("longhorn-no-delete")
	readOnlyUser = NewUser("reader", "Read:"+bucket, "List:"+bucket)
	nobody       = NewUser("nobody")
	shared       Shared
)

func TestMain(m *testing.M) {
	if err := setUpUsers(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared.Options = Options{
		Users:   []User{backupUser, scopedUser, policyUser, noDeleteUser, readOnlyUser, nobody},
		Buckets: []string{bucket},
		Region:  "eu-central-1",
	}
	os.Exit(shared.Run(m))
}

func setUpUsers() error {
	root, err := talforgePolicy("s3://" + bucket + "@eu-central-1/")
	if err != nil {
		return err
	}
	if backupUser.Actions, err = ActionsFromIAMPolicy(root, bucket); err != nil {
		return err
	}
	scoped, err := talforgePolicy("s3://" + bucket + "@eu-central-1/cluster-a/")
	if err != nil {
		return err
	}
	if scopedUser.Actions, err = ActionsFromIAMPolicy(scoped, bucket); err != nil {
		return err
	}
	policyUser.Policy = root
	noDeleteUser.Policy, err = PolicyWithoutAction(root, "s3:DeleteObject")
	return err
}

// talforgePolicy is the IAM policy talforge writes for a backup target.
func talforgePolicy(target string) ([]byte, error) {
	return longhorn.IAMPolicy(&profile.Cluster{Longhorn: &profile.Longhorn{Backup: &profile.LonghornBackup{Target: target}}})
}

// talforgeActions is ActionsFromIAMPolicy of the policy talforge writes for target.
func talforgeActions(target string) ([]string, error) {
	policy, err := talforgePolicy(target)
	if err != nil {
		return nil, err
	}
	return ActionsFromIAMPolicy(policy, bucket)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func put(ctx context.Context, c *s3.Client, key, body string) error {
	_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body)})
	return err
}

// TestLaunchStop: Stop leaves nothing behind: no process in weed's group, no run
// directory, none of the unix sockets weed puts in /tmp. It starts its own server; being
// the first parallel test it gets a slot (-parallel defaults to GOMAXPROCS) while the
// shared server starts.
func TestLaunchStop(t *testing.T) {
	t.Parallel()
	srv := Start(t, Options{})
	pid, dir, socks := srv.proc.Pid(), srv.Dir, srv.sockets
	existing := 0
	for _, sock := range socks {
		if _, err := os.Lstat(sock); err == nil {
			existing++
		}
	}
	if existing == 0 {
		t.Errorf("none of %v exists while weed runs: the socket paths are out of date", socks)
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process group %d after Stop: kill(0) = %v, want ESRCH", pid, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run directory %s after Stop: %v", dir, err)
	}
	for _, sock := range socks {
		if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket %s after Stop: %v", sock, err)
		}
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := srv.Client(srv.AdminAccessKey, srv.AdminSecretKey).ListBuckets(c, &s3.ListBucketsInput{}, func(o *s3.Options) { o.RetryMaxAttempts = 1 }); err == nil {
		t.Error("ListBuckets succeeded after Stop")
	}
}

func TestAdminCreatesBucket(t *testing.T) {
	t.Parallel()
	srv := shared.Get(t)
	c := ctx(t)
	if err := srv.CreateBucket(c, "made-by-admin"); err != nil {
		t.Fatal(err)
	}
	if err := srv.CreateBucket(c, "made-by-admin"); err != nil {
		t.Errorf("second CreateBucket of the same bucket: %v", err)
	}
	admin := srv.Client(srv.AdminAccessKey, srv.AdminSecretKey)
	_, err := admin.PutObject(c, &s3.PutObjectInput{Bucket: aws.String("never-created"), Key: aws.String("k"), Body: strings.NewReader("x")})
	if ErrorCode(err) != "NoSuchBucket" {
		t.Errorf("admin PutObject into a missing bucket: err = %v, want NoSuchBucket (no auto-creation)", err)
	}
	out, err := admin.ListBuckets(c, &s3.ListBucketsInput{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range out.Buckets {
		names = append(names, aws.ToString(b.Name))
	}
	for _, want := range []string{bucket, "made-by-admin"} {
		if !slices.Contains(names, want) {
			t.Errorf("ListBuckets = %v, want %s in it", names, want)
		}
	}
	for _, unwanted := range []string{"never-created", probeBucket} {
		if slices.Contains(names, unwanted) {
			t.Errorf("ListBuckets = %v, want no %s", names, unwanted)
		}
	}
}

// TestTalforgePolicyUser: an identity holding exactly talforge's IAM policy, as SeaweedFS
// actions or as the attached policy itself, can do what Longhorn's backupstore does
// (list, head, get, put, delete objects) and nothing more.
func TestTalforgePolicyUser(t *testing.T) {
	t.Parallel()
	srv := shared.Get(t)
	for _, u := range []User{backupUser, policyUser} {
		t.Run(u.Name, func(t *testing.T) {
			c, cl := ctx(t), srv.Client(u.AccessKey, u.SecretKey)
			dir := "backupstore/volumes/" + u.Name + "/"
			key := dir + "pvc-1/volume.cfg"
			if err := put(c, cl, key, `{"Name":"pvc-1"}`); err != nil {
				t.Fatalf("PutObject: %v", err)
			}
			got, err := cl.GetObject(c, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
			if err != nil {
				t.Fatalf("GetObject: %v", err)
			}
			body, err := io.ReadAll(got.Body)
			got.Body.Close()
			if err != nil || string(body) != `{"Name":"pvc-1"}` {
				t.Errorf("GetObject body = %q, %v", body, err)
			}
			if _, err := cl.HeadObject(c, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err != nil {
				t.Errorf("HeadObject: %v", err)
			}
			list, err := cl.ListObjectsV2(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(dir), Delimiter: aws.String("/")})
			if err != nil {
				t.Fatalf("ListObjectsV2: %v", err)
			}
			if len(list.CommonPrefixes) != 1 || aws.ToString(list.CommonPrefixes[0].Prefix) != dir+"pvc-1/" {
				t.Errorf("ListObjectsV2 common prefixes = %+v", list.CommonPrefixes)
			}
			if _, err := cl.DeleteObject(c, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err != nil {
				t.Fatalf("DeleteObject: %v", err)
			}
			_, err = cl.GetObject(c, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
			if ErrorCode(err) != "NoSuchKey" {
				t.Errorf("GetObject after delete: err = %v, want NoSuchKey", err)
			}
			// Bucket administration is not in the policy.
			_, err = cl.CreateBucket(c, &s3.CreateBucketInput{Bucket: aws.String(u.Name + "-bucket")})
			if ErrorCode(err) != "AccessDenied" {
				t.Errorf("CreateBucket: err = %v, want AccessDenied", err)
			}
		})
	}
}

// TestAttachedPolicyWithoutDelete: an attached policy is evaluated per operation, so a
// policy one action too tight fails exactly there (SeaweedFS actions cannot express it).
func TestAttachedPolicyWithoutDelete(t *testing.T) {
	t.Parallel()
	srv := shared.Get(t)
	c, cl := ctx(t), srv.Client(noDeleteUser.AccessKey, noDeleteUser.SecretKey)
	if err := put(c, cl, "no-delete/x", "x"); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	_, err := cl.DeleteObject(c, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("no-delete/x")})
	if ErrorCode(err) != "AccessDenied" {
		t.Errorf("DeleteObject without s3:DeleteObject: err = %v, want AccessDenied", err)
	}
	if _, err := ActionsFromIAMPolicy(noDeleteUser.Policy, bucket); err == nil {
		t.Error("ActionsFromIAMPolicy accepted a policy without s3:DeleteObject")
	}
}

// TestAddUser: users created on the running server through its IAM API hold exactly their
// policy, evaluated per operation: the one without s3:DeleteObject may write but not
// delete, the scoped one nothing outside its path, the one without a policy nothing at
// all; the identities of the config file keep working.
func TestAddUser(t *testing.T) {
	t.Parallel()
	srv := shared.Get(t)
	c := ctx(t)
	scoped, err := talforgePolicy("s3://" + bucket + "@eu-central-1/added-scoped/")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		policy []byte
		prefix string // where the user may write
		delete bool   // and delete
	}{
		{"added-full", policyUser.Policy, "added-full/", true},
		{"added-no-delete", noDeleteUser.Policy, "added-no-delete/", false},
		{"added-scoped", scoped, "added-scoped/", true},
		{"added-nothing", nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := srv.AddUser(c, tc.name, tc.policy)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(u.AccessKey, "AKIA") || len(u.AccessKey) != 20 || len(u.SecretKey) != 40 || u.Name != tc.name || !bytes.Equal(u.Policy, tc.policy) {
				t.Errorf("AddUser = %+v, want AWS-shaped keys, the name and the policy", u)
			}
			cl := srv.Client(u.AccessKey, u.SecretKey)
			key := tc.prefix + "x"
			err = put(c, cl, key, "x")
			if tc.prefix == "" {
				if ErrorCode(err) != "AccessDenied" {
					t.Errorf("PutObject without a policy: err = %v, want AccessDenied", err)
				}
				_, err := cl.ListObjectsV2(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
				if ErrorCode(err) != "AccessDenied" {
					t.Errorf("ListObjectsV2 without a policy: err = %v, want AccessDenied", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("PutObject %s: %v", key, err)
			}
			if _, err := cl.GetObject(c, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err != nil {
				t.Errorf("GetObject %s: %v", key, err)
			}
			if _, err := cl.ListObjectsV2(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(tc.prefix)}); err != nil {
				t.Errorf("ListObjectsV2: %v", err)
			}
			_, err = cl.DeleteObject(c, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
			if tc.delete && err != nil {
				t.Errorf("DeleteObject %s: %v", key, err)
			}
			if !tc.delete && ErrorCode(err) != "AccessDenied" {
				t.Errorf("DeleteObject %s without s3:DeleteObject: err = %v, want AccessDenied", key, err)
			}
			if err := put(c, cl, "elsewhere/"+tc.name, "x"); tc.name == "added-scoped" && ErrorCode(err) != "AccessDenied" {
				t.Errorf("PutObject outside the target path: err = %v, want AccessDenied", err)
			}
			_, err = cl.CreateBucket(c, &s3.CreateBucketInput{Bucket: aws.String(tc.name + "-bucket")})
			if ErrorCode(err) != "AccessDenied" {
				t.Errorf("CreateBucket: err = %v, want AccessDenied", err)
			}
		})
	}
	t.Run("config file identities unaffected", func(t *testing.T) {
		if err := put(c, srv.Client(backupUser.AccessKey, backupUser.SecretKey), "after-add-user/x", "x"); err != nil {
			t.Errorf("PutObject by a user of the config file: %v", err)
		}
		if err := put(c, srv.Client(nobody.AccessKey, nobody.SecretKey), "after-add-user/y", "x"); ErrorCode(err) != "AccessDenied" {
			t.Errorf("PutObject by nobody: err = %v, want AccessDenied", err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		var iamErr *IAMError
		if _, err := srv.AddUser(c, "added-full", policyUser.Policy); !errors.As(err, &iamErr) || iamErr.Code != "EntityAlreadyExists" {
			t.Errorf("AddUser of an existing name: err = %v, want IAM EntityAlreadyExists", err)
		}
		if _, err := srv.AddUser(c, "added-bad-policy", []byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:Frobnicate"],"Resource":["arn:aws:s3:::x"]}]}`)); !errors.As(err, &iamErr) || iamErr.Code != "MalformedPolicyDocument" {
			t.Errorf("AddUser with an unknown action: err = %v, want IAM MalformedPolicyDocument", err)
		}
		for _, name := range []string{"", adminName, "has space", strings.Repeat("x", 65)} {
			if _, err := srv.AddUser(c, name, nil); err == nil {
				t.Errorf("AddUser(%q) succeeded", name)
			}
		}
		if _, err := srv.AddUser(c, "added-not-json", []byte(`{`)); err == nil || !strings.Contains(err.Error(), "not valid JSON") {
			t.Errorf("AddUser with a policy that is not JSON: err = %v", err)
		}
	})
}

// TestUserWithoutGrants: a known identity with no actions and no policy is authenticated
// and then refused everything.
func TestUserWithoutGrants(t *testing.T) {
	t.Parallel()
	srv := shared.Get(t)
	c, cl := ctx(t), srv.Client(nobody.AccessKey, nobody.SecretKey)
	if _, err := cl.ListObjectsV2(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)}); ErrorCode(err) != "AccessDenied" {
		t.Errorf("ListObjectsV2: err = %v, want AccessDenied", err)
	}
	if err := put(c, cl, "nobody/x", "x"); ErrorCode(err) != "AccessDenied" {
		t.Errorf("PutObject: err = %v, want AccessDenied", err)
	}
}

// TestScopedPolicyUser: a target with a path confines the user to that prefix.
func TestScopedPolicyUser(t *testing.T) {
	t.Parallel()
	srv := shared.Get(t)
	c, cl := ctx(t), srv.Client(scopedUser.AccessKey, scopedUser.SecretKey)
	if err := put(c, cl, "cluster-a/backupstore/x", "x"); err != nil {
		t.Errorf("PutObject inside the target path: %v", err)
	}
	if err := put(c, cl, "cluster-b/backupstore/x", "x"); ErrorCode(err) != "AccessDenied" {
		t.Errorf("PutObject outside the target path: err = %v, want AccessDenied", err)
	}
}

func TestReadOnlyUserCannotWrite(t *testing.T) {
	t.Parallel()
	srv := shared.Get(t)
	c := ctx(t)
	admin := srv.Client(srv.AdminAccessKey, srv.AdminSecretKey)
	if err := put(c, admin, "readonly/seed", "seed"); err != nil {
		t.Fatal(err)
	}
	cl := srv.Client(readOnlyUser.AccessKey, readOnlyUser.SecretKey)
	if _, err := cl.GetObject(c, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("readonly/seed")}); err != nil {
		t.Errorf("GetObject by the reader: %v", err)
	}
	if _, err := cl.ListObjectsV2(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)}); err != nil {
		t.Errorf("ListObjectsV2 by the reader: %v", err)
	}
	if err := put(c, cl, "readonly/new", "x"); ErrorCode(err) != "AccessDenied" {
		t.Errorf("PutObject by the reader: err = %v, want AccessDenied", err)
	}
	_, err := cl.DeleteObject(c, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("readonly/seed")})
	if ErrorCode(err) != "AccessDenied" {
		t.Errorf("DeleteObject by the reader: err = %v, want AccessDenied", err)
	}
}

func TestBadCredentialsRefused(t *testing.T) {
	t.Parallel()
	srv := shared.Get(t)
	for _, tc := range []struct {
		name, access, secret, code string
	}{
		{"wrong secret", backupUser.AccessKey, backupUser.SecretKey + "x", "SignatureDoesNotMatch"},
		{"unknown access key", "AKIANOTCONFIGURED000", backupUser.SecretKey, "InvalidAccessKeyId"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, cl := ctx(t), srv.Client(tc.access, tc.secret)
			_, err := cl.ListObjectsV2(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
			if got := ErrorCode(err); got != tc.code {
				t.Errorf("ListObjectsV2: err = %v, want code %s", err, tc.code)
			}
			if err := put(c, cl, "bad-credentials", "x"); ErrorCode(err) != tc.code {
				t.Errorf("PutObject: err = %v, want code %s", err, tc.code)
			}
		})
	}
}

// TestAnonymousRefused: weed allows everything when it has no identities; with the
// config file this package always writes, an unsigned request is refused.
func TestAnonymousRefused(t *testing.T) {
	t.Parallel()
	srv := shared.Get(t)
	c := ctx(t)
	cl := s3.New(s3.Options{BaseEndpoint: aws.String(srv.Endpoint), Region: srv.Region, Credentials: aws.AnonymousCredentials{}, UsePathStyle: true})
	if _, err := cl.ListObjectsV2(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)}); ErrorCode(err) != "AccessDenied" {
		t.Errorf("anonymous ListObjectsV2: err = %v, want AccessDenied", err)
	}
	if err := put(c, cl, "anonymous", "x"); ErrorCode(err) != "AccessDenied" {
		t.Errorf("anonymous PutObject: err = %v, want AccessDenied", err)
	}
	// And with no SDK in between: a plain GET of the service and of the bucket.
	for _, path := range []string{"/", "/" + bucket, "/" + bucket + "/readonly/seed"} {
		req, _ := http.NewRequestWithContext(c, http.MethodGet, srv.Endpoint+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !bytes.Contains(body, []byte("<Code>AccessDenied</Code>")) {
			t.Errorf("plain GET %s: %s %s", path, resp.Status, body)
		}
	}
}

// TestRegionNotEnforced pins a difference from AWS that later tests must know: SeaweedFS
// verifies a SigV4 signature with whatever region the request's scope names, and
// reports every bucket's location as the empty LocationConstraint (us-east-1).
func TestRegionNotEnforced(t *testing.T) {
	t.Parallel()
	srv := shared.Get(t)
	c := ctx(t)
	cl := s3.New(srv.Client(backupUser.AccessKey, backupUser.SecretKey).Options(), func(o *s3.Options) { o.Region = "ap-nowhere-7" })
	if err := put(c, cl, "region/x", "x"); err != nil {
		t.Errorf("PutObject signed for another region: %v (SeaweedFS used to accept any region)", err)
	}
	admin := srv.Client(srv.AdminAccessKey, srv.AdminSecretKey)
	loc, err := admin.GetBucketLocation(c, &s3.GetBucketLocationInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	if loc.LocationConstraint != "" {
		t.Errorf("GetBucketLocation = %q, want empty (SeaweedFS used to report none)", loc.LocationConstraint)
	}
}

// TestListensOnLoopbackOnly reads the kernel's socket tables for every socket weed holds.
func TestListensOnLoopbackOnly(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	srv := shared.Get(t)
	pid := strconv.Itoa(srv.proc.Pid())
	inodes := map[string]bool{}
	fds, err := os.ReadDir("/proc/" + pid + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if l, err := os.Readlink("/proc/" + pid + "/fd/" + fd.Name()); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	listening := 0
	for _, table := range []string{"tcp", "tcp6", "udp", "udp6"} {
		data, err := os.ReadFile("/proc/" + pid + "/net/" + table)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(f) < 10 || !inodes[f[9]] {
				continue
			}
			listen := (strings.HasPrefix(table, "tcp") && f[3] == "0A") || (strings.HasPrefix(table, "udp") && f[3] == "07")
			if !listen {
				continue
			}
			listening++
			addr, _, _ := strings.Cut(f[1], ":")
			if addr != "0100007F" && addr != "00000000000000000000000001000000" {
				t.Errorf("weed listens on %s %s, not loopback", table, f[1])
			}
		}
	}
	// master, volume, filer, S3 and admin, each HTTP and gRPC.
	if listening < 10 {
		t.Errorf("found %d listening sockets of weed, want at least 10", listening)
	}
}

func TestCredentials(t *testing.T) {
	srv := &Server{Endpoint: "http://127.0.0.1:1"}
	u := User{Name: "u", AccessKey: "AK", SecretKey: "SK"}
	got := srv.Credentials(u)
	want := map[string]string{"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_ENDPOINTS": "http://127.0.0.1:1"}
	if len(got) != len(want) {
		t.Fatalf("Credentials = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Credentials[%s] = %q, want %q", k, got[k], v)
		}
	}
}

func TestFindWeed(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "weed")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, env string
		missing   bool
	}{
		{"executable", exe, false},
		{"not executable", plain, true},
		{"absent", filepath.Join(dir, "nope"), true},
		{"directory", dir, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvWeed, tc.env)
			got, err := FindWeed()
			if tc.missing {
				if !errors.Is(err, ErrWeedMissing) {
					t.Errorf("FindWeed() = %q, %v; want ErrWeedMissing", got, err)
				}
				return
			}
			if err != nil || got != exe {
				t.Errorf("FindWeed() = %q, %v; want %q", got, err, exe)
			}
		})
	}
	t.Run("error names the build command", func(t *testing.T) {
		t.Setenv(EnvWeed, filepath.Join(dir, "nope"))
		t.Setenv("HOME", dir)
		if _, err := FindWeed(); err == nil {
			t.Fatal("FindWeed found something")
		}
		t.Setenv(EnvWeed, "")
		// The default cache resolves through the user database, so HOME alone does not
		// hide a real cache; only check the message when nothing is cached.
		if _, err := FindWeed(); err != nil && !strings.Contains(err.Error(), "bash scripts/tools.sh weed") {
			t.Errorf("error %q does not say how to build weed", err)
		}
	})
}

// TestWeedVersionMatchesTools: the upstream files this package cites are read at
// WeedVersion; scripts/tools.sh must build the same one.
func TestWeedVersionMatchesTools(t *testing.T) {
	script, err := os.ReadFile(filepath.Join("..", "..", "..", "scripts", "tools.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), "\nWEED_VERSION="+WeedVersion+"\n") {
		t.Errorf("scripts/tools.sh does not set WEED_VERSION=%s", WeedVersion)
	}
}

func TestValidateUsers(t *testing.T) {
	ok := NewUser("a", "Read:b")
	for _, tc := range []struct {
		name  string
		users []User
		want  string
	}{
		{"valid", []User{ok, NewUser("b", "Admin", "Write:b/x/*", "List")}, ""},
		{"no name", []User{{AccessKey: "a", SecretKey: "b"}}, "no name"},
		{"admin name", []User{NewUser(adminName)}, "reserved"},
		{"duplicate name", []User{ok, NewUser("a")}, "used twice"},
		{"no secret", []User{{Name: "x", AccessKey: "a"}}, "both required"},
		{"duplicate key", []User{ok, {Name: "y", AccessKey: ok.AccessKey, SecretKey: "s"}}, "used twice"},
		{"typo in action", []User{NewUser("c", "read:b")}, "unknown SeaweedFS action"},
		{"policy", []User{{Name: "p", AccessKey: "a", SecretKey: "s", Policy: []byte(`{"Version":"2012-10-17"}`)}}, ""},
		{"policy and actions", []User{{Name: "p", AccessKey: "a", SecretKey: "s", Actions: []string{"Read"}, Policy: []byte(`{}`)}}, "not both"},
		{"policy not JSON", []User{{Name: "p", AccessKey: "a", SecretKey: "s", Policy: []byte(`{`)}}, "not valid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validateUsers(tc.users)
			if tc.want == "" {
				if err != nil {
					t.Errorf("validateUsers: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("validateUsers: err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestActionsFromIAMPolicy(t *testing.T) {
	stmt := func(effect, actions, resources string) string {
		return fmt.Sprintf(`{"Effect":%q,"Action":%s,"Resource":%s}`, effect, actions, resources)
	}
	policy := func(stmts ...string) string {
		return `{"Version":"2012-10-17","Statement":[` + strings.Join(stmts, ",") + `]}`
	}
	const b = "arn:aws:s3:::bk"
	for _, tc := range []struct {
		name, policy string
		want         []string
		err          string
	}{
		{
			name: "talforge policy, bucket root",
			policy: policy(stmt("Allow", `["s3:GetBucketLocation","s3:ListBucket"]`, `["`+b+`"]`),
				stmt("Allow", `["s3:DeleteObject","s3:GetObject","s3:PutObject"]`, `["`+b+`/*"]`)),
			want: []string{"List:bk", "Read:bk/*", "Write:bk/*"},
		},
		{
			name: "talforge policy, path, other partition",
			policy: policy(stmt("Allow", `["s3:GetBucketLocation","s3:ListBucket"]`, `["arn:aws-cn:s3:::bk"]`),
				stmt("Allow", `["s3:DeleteObject","s3:GetObject","s3:PutObject"]`, `["arn:aws-cn:s3:::bk/longhorn/*"]`)),
			want: []string{"List:bk", "Read:bk/longhorn/*", "Write:bk/longhorn/*"},
		},
		{
			name:   "single statement object, string fields",
			policy: `{"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"` + b + `/*"}}`,
			want:   []string{"Read:bk/*"},
		},
		{
			name:   "resource star is bucket and objects",
			policy: policy(stmt("Allow", `["s3:ListBucket","s3:GetObject"]`, `"*"`)),
			want:   []string{"List:bk", "Read:bk/*"},
		},
		{
			name:   "other buckets skipped, duplicates merged",
			policy: policy(stmt("Allow", `["s3:ListBucket"]`, `["arn:aws:s3:::other","`+b+`"]`), stmt("Allow", `"s3:ListBucket"`, `"`+b+`"`)),
			want:   []string{"List:bk"},
		},
		{
			name:   "action on the wrong resource kind grants nothing",
			policy: policy(stmt("Allow", `["s3:GetObject"]`, `["`+b+`"]`), stmt("Allow", `["s3:ListBucket"]`, `["`+b+`/*"]`)),
			err:    "grants nothing on bucket bk",
		},
		{
			name:   "only location",
			policy: policy(stmt("Allow", `["s3:GetBucketLocation"]`, `["`+b+`"]`)),
			err:    "grants nothing",
		},
		{
			name:   "put without delete",
			policy: policy(stmt("Allow", `["s3:GetObject","s3:PutObject"]`, `["`+b+`/*"]`)),
			err:    "grants s3:PutObject without s3:DeleteObject on bk/*",
		},
		{
			name:   "delete without put",
			policy: policy(stmt("Allow", `["s3:DeleteObject"]`, `["`+b+`/*"]`)),
			err:    "grants s3:DeleteObject without s3:PutObject",
		},
		{
			name:   "put and delete on different paths",
			policy: policy(stmt("Allow", `["s3:PutObject"]`, `["`+b+`/a/*"]`), stmt("Allow", `["s3:DeleteObject"]`, `["`+b+`/b/*"]`)),
			err:    "without",
		},
		{
			name:   "unknown action",
			policy: policy(stmt("Allow", `["s3:*"]`, `["`+b+`"]`)),
			err:    `action "s3:*" has no SeaweedFS equivalent`,
		},
		{
			name:   "deny",
			policy: policy(stmt("Deny", `["s3:DeleteObject"]`, `["`+b+`/*"]`)),
			err:    "only Allow",
		},
		{
			name:   "condition",
			policy: policy(`{"Effect":"Allow","Action":"s3:ListBucket","Resource":"` + b + `","Condition":{"StringLike":{"s3:prefix":"x/*"}}}`),
			err:    "Condition",
		},
		{
			name:   "not action",
			policy: policy(`{"Effect":"Allow","NotAction":"s3:ListBucket","Resource":"` + b + `"}`),
			err:    "NotAction",
		},
		{
			name:   "not an ARN",
			policy: policy(stmt("Allow", `["s3:ListBucket"]`, `["bk"]`)),
			err:    "not an S3 ARN",
		},
		{
			name:   "wildcard bucket",
			policy: policy(stmt("Allow", `["s3:ListBucket"]`, `["arn:aws:s3:::b*"]`)),
			err:    "wildcard bucket",
		},
		{name: "no statements", policy: `{"Version":"2012-10-17"}`, err: "no statements"},
		{name: "not JSON", policy: `Version: 2012-10-17`, err: "iam policy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ActionsFromIAMPolicy([]byte(tc.policy), "bk")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("err = %v, want %q (got %v)", err, tc.err, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("actions = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestTalforgePolicyTranslates: the policy pkg/longhorn writes today translates, for both
// target shapes; if talforge ever asks for an action this server cannot model, this fails
// before any backup test does.
func TestErrorCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("put x: %w", &smithy.GenericAPIError{Code: "NoSuchBucket"}), "NoSuchBucket"},
		{errors.New("connection refused"), ""},
		{nil, ""},
	} {
		if got := ErrorCode(tc.err); got != tc.want {
			t.Errorf("ErrorCode(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestPolicyWithoutAction(t *testing.T) {
	for _, tc := range []struct {
		name, policy, action string
		want                 string // "" for an error
	}{
		{
			name:   "from every statement, other fields kept",
			policy: `{"Version":"2012-10-17","Statement":[{"Sid":"a","Effect":"Allow","Action":["s3:GetObject","s3:DeleteObject"],"Resource":["arn:aws:s3:::b/*"],"Condition":{"Bool":{"aws:SecureTransport":"true"}}},{"Effect":"Allow","Action":["s3:DeleteObject"],"Resource":"*"}]}`,
			action: "s3:DeleteObject",
			want:   `{"Statement":[{"Action":["s3:GetObject"],"Condition":{"Bool":{"aws:SecureTransport":"true"}},"Effect":"Allow","Resource":["arn:aws:s3:::b/*"],"Sid":"a"},{"Action":[],"Effect":"Allow","Resource":"*"}],"Version":"2012-10-17"}`,
		},
		{
			name:   "one statement, one action, any case",
			policy: `{"Statement":{"Effect":"Allow","Action":"S3:PUTOBJECT","Resource":"*"}}`,
			action: "s3:PutObject",
			want:   `{"Statement":[{"Action":[],"Effect":"Allow","Resource":"*"}]}`,
		},
		{
			name:   "statement without Action",
			policy: `{"Statement":[{"Effect":"Allow","NotAction":"s3:PutObject","Resource":"*"},{"Effect":"Allow","Action":"s3:PutObject","Resource":"*"}]}`,
			action: "s3:PutObject",
			want:   `{"Statement":[{"Effect":"Allow","NotAction":"s3:PutObject","Resource":"*"},{"Action":[],"Effect":"Allow","Resource":"*"}]}`,
		},
		{name: "action not granted", policy: `{"Statement":[{"Effect":"Allow","Action":["s3:GetObject"],"Resource":"*"}]}`, action: "s3:DeleteObject"},
		{name: "not JSON", policy: `{`, action: "s3:GetObject"},
		{name: "no statements", policy: `{"Version":"2012-10-17"}`, action: "s3:GetObject"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PolicyWithoutAction([]byte(tc.policy), tc.action)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("PolicyWithoutAction = %s, want an error", got)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Errorf("PolicyWithoutAction =\n%s, %v\nwant\n%s", got, err, tc.want)
			}
		})
	}
	// What the tests use it for: talforge's own policy minus s3:DeleteObject is still a
	// policy, and no longer grants DeleteObject.
	root, err := talforgePolicy("s3://" + bucket + "@eu-central-1/")
	if err != nil {
		t.Fatal(err)
	}
	p, err := PolicyWithoutAction(root, "s3:DeleteObject")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(p, []byte("s3:DeleteObject")) || !bytes.Contains(p, []byte("s3:PutObject")) {
		t.Errorf("talforge's policy without s3:DeleteObject:\n%s", p)
	}
	if _, err := PolicyWithoutAction(p, "s3:DeleteObject"); err == nil {
		t.Error("removing s3:DeleteObject twice is not an error")
	}
}

func TestTalforgePolicyTranslates(t *testing.T) {
	for target, want := range map[string][]string{
		"s3://" + bucket + "@eu-central-1/":           {"List:" + bucket, "Read:" + bucket + "/*", "Write:" + bucket + "/*"},
		"s3://" + bucket + "@eu-central-1/cluster-a/": {"List:" + bucket, "Read:" + bucket + "/cluster-a/*", "Write:" + bucket + "/cluster-a/*"},
	} {
		got, err := talforgeActions(target)
		if err != nil {
			t.Errorf("%s: %v", target, err)
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: actions = %v, want %v", target, got, want)
		}
	}
}
