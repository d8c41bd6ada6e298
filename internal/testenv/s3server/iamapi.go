package s3server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// addUserTimeout bounds AddUser's wait for the new identity to be effective. The IAM
// handlers reload the identities before they answer (weed/s3api/s3api_embedded_iam.go
// ExecuteAction, ReloadConfiguration), so the first probe normally succeeds.
const addUserTimeout = 30 * time.Second

// iamUserName is AWS IAM's pattern and length limit for a user name (CreateUser).
var iamUserName = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)

// AddUser creates an S3 identity on the running server through the AWS IAM API that
// SeaweedFS serves on the S3 port (weed/s3api/s3api_server.go registerRouter, POST / with a
// SigV4 signature for service "iam"; writable because Launch passes
// -s3.iam.readOnly=false): CreateUser, PutUserPolicy with policy as the user's inline
// policy (unless policy is nil: the user may then do nothing), and CreateAccessKey, whose
// random AWS-shaped keys the returned User carries. The requests are signed by the admin
// identity.
//
// SeaweedFS keeps such users in its credential store (the filer's /etc/iam, filer_etc
// store) and evaluates an inline policy per S3 operation like an attached one: the reload
// after each IAM call adds it to the identity's policy names
// (weed/s3api/auth_credentials.go hydrateRuntimePolicies), and attached policies are then
// authoritative (VerifyActionPermission), so s3:PutObject and s3:DeleteObject are told
// apart. The -s3.config file is not involved: weed reads it at start and on SIGHUP only.
//
// The key is created last, so no identity with that key exists before its policy does;
// AddUser returns once a request signed with the key is recognised (bounded wait). The
// returned User has Policy set and no Actions; it is not in Options.Users.
func (s *Server) AddUser(ctx context.Context, name string, policy []byte) (User, error) {
	fail := func(err error) (User, error) { return User{}, fmt.Errorf("s3server: add user %s: %w", name, err) }
	switch {
	case name == adminName:
		return fail(errors.New("the name is reserved for the admin identity"))
	case !iamUserName.MatchString(name):
		return fail(errors.New("not a valid IAM user name (1-64 of letters, digits and +=,.@_-)"))
	case policy != nil && !json.Valid(policy):
		return fail(errors.New("the policy is not valid JSON"))
	}
	if _, err := s.iamCall(ctx, "CreateUser", url.Values{"UserName": {name}}); err != nil {
		return fail(err)
	}
	if policy != nil {
		// The policy name only has to be unique per user.
		if _, err := s.iamCall(ctx, "PutUserPolicy", url.Values{"UserName": {name}, "PolicyName": {name + "-policy"}, "PolicyDocument": {string(policy)}}); err != nil {
			return fail(err)
		}
	}
	body, err := s.iamCall(ctx, "CreateAccessKey", url.Values{"UserName": {name}})
	if err != nil {
		return fail(err)
	}
	var out struct {
		Result struct {
			AccessKey struct {
				AccessKeyID     string `xml:"AccessKeyId"`
				SecretAccessKey string `xml:"SecretAccessKey"`
			} `xml:"AccessKey"`
		} `xml:"CreateAccessKeyResult"`
	}
	if err := xml.Unmarshal(body, &out); err != nil {
		return fail(fmt.Errorf("CreateAccessKey response: %w", err))
	}
	u := User{Name: name, AccessKey: out.Result.AccessKey.AccessKeyID, SecretKey: out.Result.AccessKey.SecretAccessKey, Policy: policy}
	if u.AccessKey == "" || u.SecretKey == "" {
		return fail(fmt.Errorf("CreateAccessKey returned no key:\n%s", body))
	}
	if err := s.waitKnown(ctx, u); err != nil {
		return fail(err)
	}
	return u, nil
}

// waitKnown waits until the server recognises u's access key: ListBuckets signed with it is
// answered with anything but InvalidAccessKeyId (an identity whose policy grants no
// s3:ListAllMyBuckets is refused with AccessDenied, which also proves the key is known).
func (s *Server) waitKnown(ctx context.Context, u User) error {
	ctx, cancel := context.WithTimeout(ctx, addUserTimeout)
	defer cancel()
	client := s3.New(s.Client(u.AccessKey, u.SecretKey).Options(), func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	for {
		_, err := client.ListBuckets(ctx, &s3.ListBucketsInput{})
		if code := ErrorCode(err); err == nil || (code != "" && code != "InvalidAccessKeyId") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("access key %s not recognised after %s (last: %v)", u.AccessKey, addUserTimeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// IAMError is an error answer of SeaweedFS's IAM API (AWS's ErrorResponse shape,
// weed/iam/responses.go ErrorResponse).
type IAMError struct {
	Action, Code, Message string
	StatusCode            int
}

func (e *IAMError) Error() string {
	return fmt.Sprintf("IAM %s: %s %s (HTTP %d)", e.Action, e.Code, e.Message, e.StatusCode)
}

// iamCall sends one IAM Query API request (form-encoded POST, Version 2010-05-08) signed by
// the admin identity for service "iam", and returns the response body of a 200 answer.
// aws-sdk-go-v2's IAM client is not a dependency of this module; its v4 signer is.
func (s *Server) iamCall(ctx context.Context, action string, params url.Values) ([]byte, error) {
	form := url.Values{"Action": {action}, "Version": {"2010-05-08"}}
	for k, v := range params {
		form[k] = v
	}
	payload := []byte(form.Encode())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.Endpoint+"/", bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("IAM %s: %w", action, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	sum := sha256.Sum256(payload)
	creds := aws.Credentials{AccessKeyID: s.AdminAccessKey, SecretAccessKey: s.AdminSecretKey}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "iam", s.Region, time.Now()); err != nil {
		return nil, fmt.Errorf("IAM %s: sign: %w", action, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("IAM %s: %w", action, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("IAM %s: read response: %w", action, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Code, Message string }
		}
		_ = xml.Unmarshal(body, &e) // a body that is not AWS's shape leaves Code empty
		if e.Error.Code == "" {
			e.Error.Message = strings.TrimSpace(string(body))
		}
		return nil, &IAMError{Action: action, Code: e.Error.Code, Message: e.Error.Message, StatusCode: resp.StatusCode}
	}
	return body, nil
}
