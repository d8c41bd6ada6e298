package backuptarget_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/talforge/talforge/internal/testenv/s3server"
	"github.com/talforge/talforge/pkg/backuptarget"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
)

// The tests' bucket and the region in the targets' URLs (SeaweedFS takes any region).
const (
	testBucket    = "talforge-bt"
	otherBucket   = "talforge-missing" // a policy is written for it, the bucket is never created
	testRegion    = s3server.DefaultRegion
	rootTarget    = "s3://" + testBucket + "@" + testRegion + "/"
	pathTarget    = "s3://" + testBucket + "@" + testRegion + "/cluster-a/"
	missingTarget = "s3://" + otherBucket + "@" + testRegion + "/"
)

// The S3 users of the tests. Each holds exactly the IAM policy `talforge iam-policy` writes
// for a target (pkg/longhorn IAMPolicy), evaluated per request by SeaweedFS's own policy
// engine, so a policy too tight for Longhorn's library fails these tests.
var (
	// policyUser: the policy for the bucket root.
	policyUser s3server.User
	// pathUser: the policy for rootTarget's cluster-a/ only.
	pathUser s3server.User
	// missingBucketUser: the policy for a bucket that does not exist.
	missingBucketUser s3server.User
	// noWriteUser: the bucket-root policy without s3:PutObject.
	noWriteUser s3server.User
)

var s3srv s3server.Shared

func TestMain(m *testing.M) {
	// The tests are the caller that decides about logrus' standard logger.
	backuptarget.QuietLogs()
	users := []struct {
		u      *s3server.User
		name   string
		target string
		drop   []string
	}{
		{&policyUser, "longhorn", rootTarget, nil},
		{&pathUser, "cluster-a", pathTarget, nil},
		{&missingBucketUser, "elsewhere", missingTarget, nil},
		{&noWriteUser, "no-write", rootTarget, []string{"s3:PutObject"}},
	}
	for _, x := range users {
		policy, err := iamPolicy(x.target, x.drop...)
		if err == nil {
			*x.u = s3server.NewUser(x.name)
			x.u.Policy = policy
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "policy for %s: %v\n", x.name, err)
			os.Exit(2)
		}
	}
	s3srv.Options = s3server.Options{
		Users:   []s3server.User{policyUser, pathUser, missingBucketUser, noWriteUser},
		Buckets: []string{testBucket},
	}
	os.Exit(s3srv.Run(m))
}

// iamPolicy is the policy `talforge iam-policy` prints for a profile with this backup
// target, with the actions in drop taken out.
func iamPolicy(target string, drop ...string) ([]byte, error) {
	c := &profile.Cluster{Longhorn: &profile.Longhorn{Backup: &profile.LonghornBackup{Target: target}}}
	policy, err := longhorn.IAMPolicy(c)
	if err != nil || len(drop) == 0 {
		return policy, err
	}
	var doc map[string]any
	if err := json.Unmarshal(policy, &doc); err != nil {
		return nil, err
	}
	for _, st := range doc["Statement"].([]any) {
		st := st.(map[string]any)
		var keep []any
		for _, a := range st["Action"].([]any) {
			if !slices.Contains(drop, a.(string)) {
				keep = append(keep, a)
			}
		}
		st["Action"] = keep
	}
	return json.Marshal(doc)
}

// creds are the credential Secret's data for user u of the test server.
func creds(srv *s3server.Server, u s3server.User) backuptarget.Credentials {
	return backuptarget.Credentials(srv.Credentials(u))
}

// admin is the server's admin client, for looking at and damaging the bucket behind the
// code's back.
type admin struct {
	t   *testing.T
	ctx context.Context
	c   *s3.Client
}

func newAdmin(t *testing.T, srv *s3server.Server) *admin {
	return &admin{t: t, ctx: t.Context(), c: srv.Client(srv.AdminAccessKey, srv.AdminSecretKey)}
}

// keys lists every key under prefix.
func (a *admin) keys(prefix string) map[string]int64 {
	a.t.Helper()
	out := map[string]int64{}
	p := s3.NewListObjectsV2Paginator(a.c, &s3.ListObjectsV2Input{Bucket: aws.String(testBucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(a.ctx)
		if err != nil {
			a.t.Fatalf("list %s: %v", prefix, err)
		}
		for _, o := range page.Contents {
			out[aws.ToString(o.Key)] = aws.ToInt64(o.Size)
		}
	}
	return out
}

func (a *admin) get(key string) []byte {
	a.t.Helper()
	out, err := a.c.GetObject(a.ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
	if err != nil {
		a.t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return b
}

func (a *admin) put(key string, data []byte) {
	a.t.Helper()
	if _, err := a.c.PutObject(a.ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
		a.t.Fatalf("put %s: %v", key, err)
	}
}

func (a *admin) del(key string) {
	a.t.Helper()
	if _, err := a.c.DeleteObject(a.ctx, &s3.DeleteObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)}); err != nil {
		a.t.Fatalf("delete %s: %v", key, err)
	}
	if _, ok := a.keys(key)[key]; ok {
		a.t.Fatalf("%s is still there after the delete", key)
	}
}

// copyPrefix copies every object under from to the same key under to.
func (a *admin) copyPrefix(from, to string) {
	a.t.Helper()
	n := 0
	for k := range a.keys(from) {
		a.put(to+strings.TrimPrefix(k, from), a.get(k))
		n++
	}
	if n == 0 {
		a.t.Fatalf("nothing under %s to copy", from)
	}
}
