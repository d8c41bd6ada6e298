package longhorn

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/talforge/talforge/pkg/profile"
)

// S3Target is a parsed s3://bucket@region/path/ backup target.
type S3Target struct {
	Bucket, Region, Path string
}

// ParseS3Target parses Longhorn's S3 URL form s3://bucket@region/[path/] (or
// s3://bucket/[path/]).
func ParseS3Target(target string) (S3Target, error) {
	rest, ok := strings.CutPrefix(target, "s3://")
	if !ok {
		return S3Target{}, fmt.Errorf("backup target %q is not an s3:// URL", target)
	}
	host, path, hasPath := strings.Cut(rest, "/")
	if !hasPath {
		return S3Target{}, fmt.Errorf("backup target %q must end with '/' (s3://bucket@region/ or s3://bucket@region/path/)", target)
	}
	bucket, region, _ := strings.Cut(host, "@")
	if bucket == "" {
		return S3Target{}, fmt.Errorf("backup target %q names no bucket", target)
	}
	return S3Target{Bucket: bucket, Region: region, Path: path}, nil
}

// awsPartition is the ARN partition of a region.
func awsPartition(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	default:
		return "aws"
	}
}

type iamPolicy struct {
	Version   string         `json:"Version"`
	Statement []iamStatement `json:"Statement"`
}

type iamStatement struct {
	Sid      string   `json:"Sid"`
	Effect   string   `json:"Effect"`
	Action   []string `json:"Action"`
	Resource []string `json:"Resource"`
}

// IAMPolicy returns the least-privilege AWS IAM policy Longhorn needs for the profile's
// backup bucket: listing and locating the bucket, and reading, writing and deleting its
// objects (under the target's path when it has one). JSON, indented, newline-terminated.
func IAMPolicy(c *profile.Cluster) ([]byte, error) {
	if c.Longhorn == nil || c.Longhorn.Backup == nil {
		return nil, errors.New("the profile has no longhorn.backup section: there is no bucket to write a policy for")
	}
	t, err := ParseS3Target(c.Longhorn.Backup.Target)
	if err != nil {
		return nil, fmt.Errorf("longhorn.backup.target: %w", err)
	}
	arn := fmt.Sprintf("arn:%s:s3:::%s", awsPartition(t.Region), t.Bucket)
	objects := arn + "/*"
	if t.Path != "" {
		objects = arn + "/" + strings.TrimSuffix(t.Path, "/") + "/*"
	}
	p := iamPolicy{
		Version: "2012-10-17",
		Statement: []iamStatement{
			{Sid: "LonghornBackupBucket", Effect: "Allow", Action: []string{"s3:GetBucketLocation", "s3:ListBucket"}, Resource: []string{arn}},
			{Sid: "LonghornBackupObjects", Effect: "Allow", Action: []string{"s3:DeleteObject", "s3:GetObject", "s3:PutObject"}, Resource: []string{objects}},
		},
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
