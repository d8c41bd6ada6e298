// Package s3server starts a real S3 server (SeaweedFS) on 127.0.0.1 for tests.
//
// The weed binary is built and cached by `bash scripts/tools.sh weed`; this package only
// finds it (TALFORGE_WEED, or the script's cache under the account's home), writes an
// -s3.config identity file and runs `weed mini` (master, volume server, filer, S3 gateway
// and admin server in one process) on free loopback ports with its data in a temporary
// directory. Launch returns once the server takes writes (~5 s).
//
// Authentication is always on: every server has an admin identity (used to create
// buckets) plus the [User]s the test asks for, so an unknown access key, a wrong secret
// and a denied operation are refused by the server itself, as AWS would. A user's grants
// are either SeaweedFS actions ([ActionsFromIAMPolicy] derives them from the IAM policy
// talforge writes for Longhorn) or an IAM policy document attached as is
// ([User.Policy]), which SeaweedFS evaluates per S3 operation. [Server.AddUser] creates
// a user with such a policy on the running server, through the AWS IAM API SeaweedFS
// serves on the S3 port (CreateUser, PutUserPolicy, CreateAccessKey), so a test can hand
// each project a user of its own.
//
// SeaweedFS differs from AWS S3 in ways tests must allow for: it accepts a SigV4
// signature for any region (the scope's region is not checked), GetBucketLocation answers
// the empty LocationConstraint for every bucket, and its actions have no separate delete
// grant (see ActionsFromIAMPolicy).
//
// Tests use it through [Start] (one server per test) or [Shared] (one per test package,
// started lazily and stopped by TestMain). Both skip the test with the command that
// builds weed when the binary is absent, unless TALFORGE_REQUIRE_S3=1, which CI sets so a
// missing build fails instead of silently skipping.
package s3server
