package backuptarget

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/longhorn/backupstore"
	bhttp "github.com/longhorn/backupstore/http"
)

// Preflight steps, in the order they run.
const (
	StepCredentials    = "credentials"    // the keys are there (Credentials.Validate)
	StepURL            = "url"            // the target parses as Longhorn parses it
	StepAuthentication = "authentication" // the S3 server accepts the keys
	StepBucket         = "bucket"         // the bucket exists and can be listed
	StepRegion         = "region"         // the URL's region is the bucket's
	StepWrite          = "write"          // a probe object can be written
	StepRead           = "read"           // and read back unchanged
	StepDelete         = "delete"         // and deleted
)

// StepStatus is the outcome of one preflight step.
type StepStatus string

// Step outcomes.
const (
	StepOK      StepStatus = "ok"
	StepFailed  StepStatus = "failed"
	StepSkipped StepStatus = "skipped"
)

// Step is one preflight step's outcome.
type Step struct {
	Name   string     `json:"name"`
	Status StepStatus `json:"status"`
	// Detail says what was found; Fix, for a failed step, what to do about it.
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// PreflightReport lists the steps that ran; the last one failed if any did.
type PreflightReport struct {
	Target string `json:"target"`
	Steps  []Step `json:"steps"`
	// Probe is the key of the probe object (empty until the write step).
	Probe string `json:"probe,omitempty"`
}

// Failed is the failed step, nil when none failed.
func (r *PreflightReport) Failed() *Step {
	for i := range r.Steps {
		if r.Steps[i].Status == StepFailed {
			return &r.Steps[i]
		}
	}
	return nil
}

// Err is a *PreflightError for the failed step, nil when none failed.
func (r *PreflightReport) Err() error {
	if s := r.Failed(); s != nil {
		return &PreflightError{Target: r.Target, Step: *s}
	}
	return nil
}

func (r *PreflightReport) add(name string, status StepStatus, detail, fix string) {
	r.Steps = append(r.Steps, Step{Name: name, Status: status, Detail: detail, Fix: fix})
}

// PreflightError says which step of the backup target preflight failed and how to fix it.
type PreflightError struct {
	Target string
	Step   Step
}

func (e *PreflightError) Error() string {
	s := fmt.Sprintf("backup target %s: preflight step %q failed: %s", e.Target, e.Step.Name, e.Step.Detail)
	if e.Step.Fix != "" {
		s += "; fix: " + e.Step.Fix
	}
	return s
}

const policyHint = "`talforge iam-policy` prints the policy Longhorn needs"

// Preflight checks, before Longhorn is pointed at it, that target works with creds the way
// Longhorn will use it: the keys are there, the URL parses as Longhorn parses it, the
// server accepts the keys, the bucket exists and lists, the URL names the bucket's region
// (where the server reports one), and a probe object <path>/talforge-preflight-<random>
// can be written, read back unchanged and deleted, all through Longhorn's own S3 driver.
// It stops at the first failure; the error is then a *PreflightError naming the step and
// the fix, and the report says what ran. A successful preflight leaves no object behind.
func Preflight(ctx context.Context, target string, creds Credentials) (*PreflightReport, error) {
	r := &PreflightReport{Target: target}
	if err := creds.Validate(); err != nil {
		r.add(StepCredentials, StepFailed, err.Error(), "put the keys of the S3 user into longhorn.backup.credentialsFile (`sops edit` it)")
		return r, r.Err()
	}
	r.add(StepCredentials, StepOK, KeyAccessKeyID+" and "+KeySecretAccessKey+" are set", "")

	t, err := ParseURL(target)
	if err != nil {
		r.add(StepURL, StepFailed, err.Error(), "write longhorn.backup.target as s3://bucket@region/ or s3://bucket@region/path/")
		return r, r.Err()
	}
	region := t.Region
	if region == "" {
		region = creds["AWS_REGION"]
	}
	if region == "" {
		r.add(StepURL, StepFailed, "the URL names no region and the credentials set no AWS_REGION, so Longhorn's S3 driver has no region to sign its requests for",
			fmt.Sprintf("name the bucket's region in the URL: s3://%s@<region>/%s", t.Bucket, t.Path))
		return r, r.Err()
	}
	r.add(StepURL, StepOK, fmt.Sprintf("bucket %q, region %q, path %q", t.Bucket, region, t.Path), "")

	err = WithEnv(creds, func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		driver, err := backupstore.GetBackupStoreDriver(target)
		if err != nil {
			r.connectFailed(ctx, t, region, creds, err)
			return nil
		}
		r.add(StepAuthentication, StepOK, "the S3 server accepted the keys", "")
		r.add(StepBucket, StepOK, fmt.Sprintf("bucket %s can be listed", t.Bucket), "")

		if err := ctx.Err(); err != nil {
			return err
		}
		if !r.checkRegion(ctx, t, region, creds) {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		r.probe(driver, t)
		return nil
	})
	if err != nil {
		return r, err
	}
	return r, r.Err()
}

// endpoint names where requests go, for messages.
func endpoint(region string, creds Credentials) string {
	if e := creds[KeyEndpoints]; e != "" {
		return e
	}
	return "AWS S3 in " + region
}

// connectFailed records why opening the driver (which lists the bucket) failed, as the
// step the error belongs to.
func (r *PreflightReport) connectFailed(ctx context.Context, t Target, region string, creds Credentials, err error) {
	cause, _ := classify(err)
	detail := explain(err).Error()
	switch cause {
	case CauseCredentials:
		fix := "put the right keys into longhorn.backup.credentialsFile (`sops edit` it)"
		if s3Code(err) == "InvalidAccessKeyId" && creds[KeyEndpoints] == "" {
			fix += "; keys of another S3 service also need its AWS_ENDPOINTS"
		}
		r.add(StepAuthentication, StepFailed, detail, fix)
	case CauseBucket:
		r.add(StepAuthentication, StepOK, "the S3 server accepted the keys", "")
		r.add(StepBucket, StepFailed, fmt.Sprintf("bucket %s does not exist at %s: %s", t.Bucket, endpoint(region, creds), detail),
			"create the bucket, or correct the bucket (and region) in longhorn.backup.target")
	case CauseRegion:
		fix := fmt.Sprintf("name the bucket's region in longhorn.backup.target: s3://%s@<region>/%s", t.Bucket, t.Path)
		real := ""
		if m := wrongRegion().FindStringSubmatch(err.Error()); m != nil {
			real = m[1]
		} else if hdr := regionHeader(ctx, t, region); hdr != "" {
			real = hdr
			detail = fmt.Sprintf("the bucket is in region %s (x-amz-bucket-region): %s", hdr, detail)
		}
		if real != "" {
			fix = fmt.Sprintf("set longhorn.backup.target to s3://%s@%s/%s", t.Bucket, real, t.Path)
		}
		r.add(StepRegion, StepFailed, detail, fix)
	case CauseDenied:
		r.add(StepAuthentication, StepOK, "the S3 server accepted the keys", "")
		r.add(StepBucket, StepFailed, fmt.Sprintf("the keys may not list bucket %s: %s", t.Bucket, detail),
			fmt.Sprintf("allow s3:ListBucket on the bucket for this user; %s", policyHint))
	case CauseUnreachable:
		r.add(StepBucket, StepFailed, fmt.Sprintf("cannot reach %s: %s", endpoint(region, creds), detail),
			"check the network, AWS_ENDPOINTS, proxies (HTTPS_PROXY) and AWS_CERT for a private CA")
	default:
		r.add(StepBucket, StepFailed, fmt.Sprintf("cannot list bucket %s at %s: %s", t.Bucket, endpoint(region, creds), detail),
			"check longhorn.backup.target and the credentials")
	}
}

// checkRegion compares region (the URL's) with the bucket's location where the server
// reports one. It reports false when the step failed.
func (r *PreflightReport) checkRegion(ctx context.Context, t Target, region string, creds Credentials) bool {
	loc, source, err := bucketRegion(ctx, t, region)
	switch {
	case err != nil:
		r.add(StepRegion, StepSkipped, fmt.Sprintf("the server does not tell the bucket's region (%s); the bucket lists with the URL's region %s", err, region), "")
	case loc == "":
		r.add(StepRegion, StepSkipped, fmt.Sprintf("%s reports no region for the bucket; the bucket lists with the URL's region %s", endpoint(region, creds), region), "")
	case loc != region:
		r.add(StepRegion, StepFailed, fmt.Sprintf("bucket %s is in region %s (%s), the URL says %s", t.Bucket, loc, source, region),
			fmt.Sprintf("set longhorn.backup.target to s3://%s@%s/%s", t.Bucket, loc, t.Path))
		return false
	default:
		r.add(StepRegion, StepOK, fmt.Sprintf("bucket %s is in %s (%s)", t.Bucket, loc, source), "")
	}
	return true
}

// probe writes, reads back and deletes a probe object through Longhorn's driver.
func (r *PreflightReport) probe(driver backupstore.BackupStoreDriver, t Target) {
	rnd := make([]byte, 8)
	_, _ = rand.Read(rnd)
	key := "talforge-preflight-" + hex.EncodeToString(rnd)
	r.Probe = path.Join(t.Path, key)
	body := make([]byte, 64)
	_, _ = rand.Read(body)
	data := []byte(fmt.Sprintf("talforge backup target preflight %s\n%x\n", key, body))

	if err := driver.Write(key, bytes.NewReader(data)); err != nil {
		r.add(StepWrite, StepFailed, fmt.Sprintf("cannot write %s: %s", r.Probe, explain(err)), deniedFix(err, "s3:PutObject"))
		return
	}
	r.add(StepWrite, StepOK, fmt.Sprintf("wrote %s (%d bytes)", r.Probe, len(data)), "")

	got, err := readAll(driver, key)
	switch {
	case err != nil:
		r.add(StepRead, StepFailed, fmt.Sprintf("cannot read %s back: %s%s", r.Probe, explain(err), cleanup(driver, key, r.Probe)), deniedFix(err, "s3:GetObject"))
		return
	case !bytes.Equal(got, data):
		r.add(StepRead, StepFailed, fmt.Sprintf("read %d bytes back from %s, not the %d written%s", len(got), r.Probe, len(data), cleanup(driver, key, r.Probe)),
			"the S3 server does not return what was written: check AWS_ENDPOINTS points at an S3 service (not a proxy that rewrites responses)")
		return
	}
	r.add(StepRead, StepOK, "read it back unchanged", "")

	if err := driver.Remove(key); err != nil {
		// Remove reports only "failed to delete objects [...]" (s3/s3_service.go
		// DeleteObjects logs the S3 error itself), so a refusal is the likely reason.
		r.add(StepDelete, StepFailed, fmt.Sprintf("cannot delete %s: %s; it is left in the bucket", r.Probe, explain(err)),
			fmt.Sprintf("allow s3:DeleteObject on the target's objects (Longhorn deletes expired backups); %s", policyHint))
		return
	}
	if driver.FileExists(key) {
		r.add(StepDelete, StepFailed, fmt.Sprintf("%s is still there after it was deleted", r.Probe),
			"check the bucket's object lock and versioning settings: Longhorn must be able to delete expired backups")
		return
	}
	r.add(StepDelete, StepOK, "deleted it; nothing is left behind", "")
}

func readAll(driver backupstore.BackupStoreDriver, key string) ([]byte, error) {
	rc, err := driver.Read(key)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rc.Close() }()
	return io.ReadAll(rc)
}

// cleanup tries to delete the probe after a failed read and says if it is left.
func cleanup(driver backupstore.BackupStoreDriver, key, name string) string {
	if err := driver.Remove(key); err != nil || driver.FileExists(key) {
		return fmt.Sprintf("; the probe object %s is left in the bucket, delete it by hand", name)
	}
	return ""
}

// deniedFix is the fix for a failed object operation that needs action.
func deniedFix(err error, action string) string {
	if cause, _ := classify(err); cause == CauseDenied {
		return fmt.Sprintf("allow %s on the target's objects for this user; %s", action, policyHint)
	}
	return fmt.Sprintf("check that the user may %s on the target's objects (%s) and that the server accepts it", action, policyHint)
}

// bucketRegion asks the server where the bucket is: GetBucketLocation, else the
// x-amz-bucket-region header of HeadBucket. "" when the server reports neither. Call
// inside WithEnv.
func bucketRegion(ctx context.Context, t Target, region string) (loc, source string, err error) {
	client, err := newS3Client(ctx, region)
	if err != nil {
		return "", "", err
	}
	out, locErr := client.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String(t.Bucket)})
	if locErr == nil {
		switch c := string(out.LocationConstraint); {
		case c == "EU": // GetBucketLocation: "Buckets with a LocationConstraint of EU reside in eu-west-1"
			return "eu-west-1", "GetBucketLocation", nil
		case c != "":
			return c, "GetBucketLocation", nil
		case os.Getenv(KeyEndpoints) == "":
			// "Buckets in Region us-east-1 have a LocationConstraint of null" (AWS only;
			// other S3 servers answer null when they have no notion of a region).
			return "us-east-1", "GetBucketLocation", nil
		}
	}
	head, headErr := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(t.Bucket)})
	if headErr == nil && head.BucketRegion != nil && *head.BucketRegion != "" {
		return *head.BucketRegion, "x-amz-bucket-region", nil
	}
	if locErr != nil && headErr != nil {
		return "", "", fmt.Errorf("GetBucketLocation: %s, HeadBucket: %s", apiCode(locErr), apiCode(headErr))
	}
	return "", "", nil
}

// apiCode is the S3 error code of an SDK error, or its text.
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return err.Error()
}

// regionHeader is the bucket's region from the x-amz-bucket-region header AWS S3 sends
// with HeadBucket, errors included (a 301 for the wrong region carries it too). "" when
// there is none. Call inside WithEnv.
func regionHeader(ctx context.Context, t Target, region string) string {
	client, err := newS3Client(ctx, region)
	if err != nil {
		return ""
	}
	out, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(t.Bucket)})
	if err == nil {
		return aws.ToString(out.BucketRegion)
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		return re.Response.Header.Get("x-amz-bucket-region")
	}
	return ""
}

// newS3Client is an SDK client configured as Longhorn's driver configures its own
// (backupstore s3/s3_service.go newService and newInstance): the region, the SDK's default
// credential chain from the environment, AWS_ENDPOINTS with path-style addressing unless
// VIRTUAL_HOSTED_STYLE says otherwise, and AWS_CERT as extra CA. Call inside WithEnv.
func newS3Client(ctx context.Context, region string) (*s3.Client, error) {
	hc, err := bhttp.GetClientWithCustomCerts(customCerts())
	if err != nil {
		return nil, fmt.Errorf("AWS_CERT: %w", err)
	}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region), config.WithHTTPClient(hc),
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired))
	if err != nil {
		return nil, err
	}
	endpoints := os.Getenv(KeyEndpoints)
	if endpoints != "" {
		cfg.BaseEndpoint = aws.String(endpoints)
	}
	pathStyle := endpoints != ""
	switch os.Getenv(KeyVirtualHostedStyle) {
	case "true":
		pathStyle = false
	case "false":
		pathStyle = true
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = pathStyle }), nil
}

// customCerts is backupstore's getCustomCerts (s3/s3.go): AWS_CERT, PEM.
func customCerts() []byte {
	if c := os.Getenv(KeyCert); c != "" {
		return []byte(c)
	}
	return nil
}
