// S3 users: their credentials and the SeaweedFS identity actions they may hold.

package s3server

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// User is one S3 identity of the server.
type User struct {
	// Name identifies the user in the SeaweedFS config and its log.
	Name string
	// AccessKey and SecretKey are the user's static credentials; both required.
	AccessKey, SecretKey string
	// Actions are SeaweedFS identity actions: "Read:bucket", "Write:bucket",
	// "List:bucket", "Tagging:bucket", "Admin", optionally with an object path and
	// wildcards ("Read:bucket/backups/*"). See [ActionsFromIAMPolicy]. A user with
	// neither Actions nor Policy authenticates but may do nothing.
	Actions []string
	// Policy is an AWS IAM identity policy document (JSON) attached to the user instead
	// of Actions (not both: an attached policy makes SeaweedFS ignore Actions). SeaweedFS
	// evaluates it with its IAM policy engine per S3 operation
	// (weed/s3api/auth_credentials.go evaluateAttachedIAMPolicies, ResolveS3Action), so
	// unlike Actions it tells s3:PutObject from s3:DeleteObject: a test can hand it
	// exactly the bytes `talforge iam-policy` prints.
	Policy []byte
}

// NewUser returns a user with fresh random keys in AWS's shapes (20-character access
// key, 40-character secret).
func NewUser(name string, actions ...string) User {
	return User{Name: name, AccessKey: "AKIA" + randomString(16, upperAlnum), SecretKey: randomString(40, secretChars), Actions: actions}
}

func validateUsers(users []User) error {
	names := map[string]bool{adminName: true}
	keys := map[string]bool{}
	for _, u := range users {
		switch {
		case u.Name == "":
			return errors.New("s3server: a user has no name")
		case names[u.Name]:
			return fmt.Errorf("s3server: user name %q used twice (or reserved for the admin identity)", u.Name)
		case u.AccessKey == "" || u.SecretKey == "":
			return fmt.Errorf("s3server: user %s: access key and secret key are both required (see NewUser)", u.Name)
		case keys[u.AccessKey]:
			return fmt.Errorf("s3server: user %s: access key %s used twice", u.Name, u.AccessKey)
		case u.Policy != nil && len(u.Actions) > 0:
			return fmt.Errorf("s3server: user %s: give Actions or Policy, not both (SeaweedFS ignores Actions once a policy is attached)", u.Name)
		case u.Policy != nil && !json.Valid(u.Policy):
			return fmt.Errorf("s3server: user %s: Policy is not valid JSON", u.Name)
		}
		names[u.Name], keys[u.AccessKey] = true, true
		for _, a := range u.Actions {
			if err := checkAction(a); err != nil {
				return fmt.Errorf("s3server: user %s: %w", u.Name, err)
			}
		}
	}
	return nil
}

// knownActions are the identity actions weed/s3api/s3_constants/s3_actions.go defines.
// weed ignores an action it does not know, which would turn a typo into a silent denial.
var knownActions = []string{
	"Read", "ReadAcp", "Write", "WriteAcp", "Admin", "Tagging", "List", "DeleteBucket",
	"BypassGovernanceRetention", "GetObjectRetention", "PutObjectRetention",
	"GetObjectLegalHold", "PutObjectLegalHold",
	"GetBucketObjectLockConfiguration", "PutBucketObjectLockConfiguration",
	"PutBucketPolicy", "DeleteBucketPolicy", "PutBucketCors", "DeleteBucketCors",
	"PutBucketVersioning", "PutBucketQuota", "GetBucketQuota",
	"ListBucketMultipartUploads", "ListMultipartUploadParts",
}

func checkAction(a string) error {
	name, _, _ := strings.Cut(a, ":")
	if !slices.Contains(knownActions, name) {
		return fmt.Errorf("unknown SeaweedFS action %q (known: %s)", a, strings.Join(knownActions, ", "))
	}
	return nil
}

const (
	upperAlnum  = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	secretChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)

func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
