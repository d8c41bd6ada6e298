package backuptarget

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// Longhorn's S3 driver turns the SDK's typed errors into text (backupstore
// s3/s3_service.go parseAwsError: "AWS Error: <Code> <Message>") and wraps that with %v, so
// the S3 error code can only be read back from the text.
// Compiled on first use, not at package initialisation, to keep start-up cheap (issue 16).
var awsErrorCode = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`AWS Error: ([A-Za-z]+)`)
})

// s3Code is the S3 error code in err's text ("" when there is none).
func s3Code(err error) string {
	if err == nil {
		return ""
	}
	if m := awsErrorCode().FindStringSubmatch(err.Error()); m != nil {
		return m[1]
	}
	return ""
}

// wrongRegion reads the bucket's real region from AWS's wrong-region message
// ("The authorization header is malformed; the region 'us-east-1' is wrong; expecting
// 'eu-central-1'").
var wrongRegion = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`expecting '([a-z0-9-]+)'`)
})

// Cause says what an S3 error means for a backup target.
type Cause string

// Causes, each the step of the preflight it belongs to.
const (
	CauseNone        Cause = ""
	CauseCredentials Cause = StepAuthentication
	CauseBucket      Cause = StepBucket
	CauseRegion      Cause = StepRegion
	CauseDenied      Cause = "denied"
	CauseUnreachable Cause = "unreachable"
)

// classify maps the common S3 errors to their cause. Codes: Amazon S3 API Reference,
// "Error responses", list of error codes.
func classify(err error) (Cause, string) {
	code := s3Code(err)
	switch code {
	case "InvalidAccessKeyId":
		return CauseCredentials, "the S3 server does not know the access key ID (InvalidAccessKeyId): AWS_ACCESS_KEY_ID is wrong, or the key was deleted or deactivated"
	case "SignatureDoesNotMatch":
		return CauseCredentials, "the secret access key does not match the access key ID (SignatureDoesNotMatch): AWS_SECRET_ACCESS_KEY is wrong (truncated, or a stray character)"
	case "InvalidToken", "ExpiredToken":
		return CauseCredentials, "the session token is invalid or expired (" + code + "): renew AWS_SESSION_TOKEN or use long-lived keys"
	case "NoSuchBucket":
		return CauseBucket, "the bucket does not exist (NoSuchBucket)"
	case "AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException":
		msg := "the bucket is in another region than the URL says (" + code + ")"
		if m := wrongRegion().FindStringSubmatch(err.Error()); m != nil {
			msg = fmt.Sprintf("the bucket is in region %s, not the one the URL says (%s)", m[1], code)
		}
		return CauseRegion, msg
	case "AccessDenied", "AllAccessDisabled", "AccountProblem":
		return CauseDenied, "the S3 server refused the request (" + code + ")"
	}
	if code == "" {
		s := err.Error()
		for _, marker := range []string{"no such host", "connection refused", "i/o timeout", "dial tcp", "TLS handshake", "x509:", "network is unreachable", "EOF"} {
			if strings.Contains(s, marker) {
				return CauseUnreachable, "the S3 endpoint cannot be reached"
			}
		}
	}
	return CauseNone, ""
}

// Error is an S3 error of a backup target with what it means.
type Error struct {
	Cause Cause
	// Meaning is a sentence for people; Err the driver's own error.
	Meaning string
	Err     error
}

func (e *Error) Error() string {
	if e.Meaning == "" {
		return cleanText(e.Err.Error())
	}
	return e.Meaning + ": " + cleanText(e.Err.Error())
}

// requestDump is the request struct the driver prints into list errors
// (s3/s3_service.go ListObjects: "failed to list objects with param: %+v error: %v"): Go
// pointers, of no use to anyone reading the message.
var requestDump = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(` with param: &\{.*\} error: `)
})

func cleanText(s string) string { return requestDump().ReplaceAllString(s, ": ") }

func (e *Error) Unwrap() error { return e.Err }

// explain puts the meaning of a known S3 error in front of err (an *Error, whose text also
// leaves out the driver's request dump), and returns other errors as they are.
func explain(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	cause, meaning := classify(err)
	if cause == CauseNone && !requestDump().MatchString(err.Error()) {
		return err
	}
	return &Error{Cause: cause, Meaning: meaning, Err: err}
}
