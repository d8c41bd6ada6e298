// Package backuptarget reads and checks a Longhorn backup target straight from S3, with
// Longhorn's own backupstore library (github.com/longhorn/backupstore), so it works when the
// cluster that wrote the backups is gone: that is when it matters.
//
// Longhorn's S3 driver takes its settings from the process environment (backupstore
// s3/s3_service.go: the AWS SDK's default credential chain, AWS_ENDPOINTS,
// VIRTUAL_HOSTED_STYLE, AWS_CERT), exactly the keys of the credential Secret that
// longhorn-manager hands to the process doing the backup. WithEnv sets those variables for
// the duration of one call and restores the environment afterwards; since the environment
// belongs to the whole process, calls are serialised by one process-wide lock. Every
// function here that talks to S3 runs inside WithEnv, so a long Verify with ReadData holds
// that lock for its whole run.
//
// [List] reads the backup volumes and their backups, newest first, with the claim each
// backup was taken of (the KubernetesStatus label longhorn-manager puts on backups);
// [Listing.LatestForClaim] finds a claim's newest backup across all backup volumes, since a
// re-created claim is a new Longhorn volume. [Verify] checks that the backups can be
// restored: configs parse, referenced blocks exist and, with ReadData, decompress to their
// checksum. [Preflight] checks, step by step, that a target works with its credentials the
// way Longhorn will use it, writing and deleting one probe object.
//
// The library logs through logrus' standard logger. This package never changes that
// logger; a program that does not want the library's lines calls [QuietLogs] once.
package backuptarget
