// Users and IAM policies checked without a server: validation and the translation of
// policies into SeaweedFS actions.

package s3server

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
)

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
