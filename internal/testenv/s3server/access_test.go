// Access control on the shared server: what each user, bad credentials and anonymous
// requests may and may not do.

package s3server

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

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
