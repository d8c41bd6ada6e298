// The shared server and its users; launch, stop, listening, credentials and finding weed.

package s3server

import (
	"context"
	"errors"
	"fmt"
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
