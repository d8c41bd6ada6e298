package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/longhorn"
)

func newIAMPolicyCmd(o *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "iam-policy",
		Short: "Print the least-privilege AWS IAM policy for the Longhorn backup bucket",
		Long: `iam-policy prints the IAM policy Longhorn's S3 backups need for longhorn.backup.target:
s3:ListBucket and s3:GetBucketLocation on the bucket, s3:PutObject, s3:GetObject and
s3:DeleteObject on its objects (under the target's path when it has one), and nothing else.
Attach it to the IAM user whose keys are in longhorn.backup.credentialsFile.
'talforge generate' writes the same policy to clusters/<name>/aws/iam-policy.json.`,
		Example: `  talforge iam-policy -p profiles/tazlab.yaml > policy.json
  aws iam put-user-policy --user-name tazlab-longhorn --policy-name longhorn-backup --policy-document file://policy.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.loadProfile(cmd.Context())
			if err != nil {
				return err
			}
			if c.Longhorn == nil || c.Longhorn.Backup == nil {
				return invalid(errors.New(c.File() + ": longhorn.backup is not set: there is no bucket to write a policy for"))
			}
			policy, err := longhorn.IAMPolicy(c)
			if err != nil {
				return invalid(err)
			}
			_, err = o.out.Write(policy)
			return err
		},
	}
}
