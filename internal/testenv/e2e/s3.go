package e2e

import (
	"context"
	"fmt"
	"regexp"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/sirupsen/logrus"

	"github.com/talforge/talforge/internal/testenv/kubeenv"
	"github.com/talforge/talforge/internal/testenv/s3server"
	"github.com/talforge/talforge/internal/testenv/testproc"
)

// Shared is one test control plane and one S3 server per test package, both started by the
// first test that asks and stopped by Run after all tests ran:
//
//	var lab e2e.Shared
//
//	func TestMain(m *testing.M) { os.Exit(lab.Run(m)) }
//
//	func TestX(t *testing.T) { env := lab.Start(t, e2e.Options{}); ... }
//
// Each Env still starts from an empty control plane and empty buckets.
type Shared struct {
	kube kubeenv.Shared
	s3   testproc.Shared[s3Lab]
}

// s3Lab is the shared S3 server with the user an Env reads and writes as.
type s3Lab struct {
	srv  *s3server.Server
	user s3server.User
}

// s3Requirement is s3server's: skip without weed unless TALFORGE_REQUIRE_S3=1.
var s3Requirement = testproc.Requirement{Prefix: "e2e: S3 server", Missing: s3server.ErrWeedMissing, RequireEnv: s3server.EnvRequire}

// Start builds an Env on the package's control plane and S3 server.
func (s *Shared) Start(t testing.TB, opts Options) *Env {
	t.Helper()
	kube := s.kube.Get(t)
	lab := s.s3.Get(t, s3Requirement, func() (s3Lab, error) {
		user := newS3User()
		srv, err := s3server.Launch(context.Background(), s3server.Options{Users: []s3server.User{user}})
		return s3Lab{srv: srv, user: user}, err
	})
	return start(t, kube, lab.srv, lab.user, opts)
}

// Run runs the tests, then stops the S3 server and the control plane if they were started.
func (s *Shared) Run(m *testing.M) int {
	// Longhorn's backupstore logs every config it reads at info level through logrus'
	// standard logger; a test binary's output is for its failures. Warnings stay.
	logrus.SetLevel(logrus.WarnLevel)
	return s.s3.StopAfter(s.kube.Run(m), "e2e: stop S3 server", func(lab s3Lab) error { return lab.srv.Stop() })
}

// emptyS3 deletes everything the server's buckets hold. The buckets stay: SeaweedFS
// allocates storage for a new bucket on its first write, which takes seconds.
func emptyS3(ctx context.Context, srv *s3server.Server) error {
	c := srv.Client(srv.AdminAccessKey, srv.AdminSecretKey)
	buckets, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		return fmt.Errorf("list buckets: %w", err)
	}
	for _, b := range buckets.Buckets {
		p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: b.Name})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("list bucket %s: %w", aws.ToString(b.Name), err)
			}
			if len(page.Contents) == 0 {
				continue
			}
			objs := make([]s3types.ObjectIdentifier, 0, len(page.Contents))
			for _, o := range page.Contents {
				objs = append(objs, s3types.ObjectIdentifier{Key: o.Key})
			}
			if _, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: b.Name, Delete: &s3types.Delete{Objects: objs, Quiet: aws.Bool(true)}}); err != nil {
				return fmt.Errorf("empty bucket %s: %w", aws.ToString(b.Name), err)
			}
		}
	}
	return nil
}

// rxS3Bucket finds the buckets of s3:// URLs in a profile (s3://bucket@region/path or
// s3://bucket/path, backupstore s3/s3.go).
var rxS3Bucket = regexp.MustCompile(`s3://([a-z0-9][a-z0-9.-]*[a-z0-9])[@/]`)

// createBuckets creates the buckets the profile's backup targets name: the account the
// profile was written for has them.
func (e *Env) createBuckets(ctx context.Context, profile string) error {
	for _, m := range rxS3Bucket.FindAllStringSubmatch(profile, -1) {
		if err := e.S3.CreateBucket(ctx, m[1]); err != nil {
			return err
		}
	}
	return nil
}
