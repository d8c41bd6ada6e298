// Package longhorn installs, upgrades and repairs Longhorn on a talforge cluster with the
// Helm SDK, following what Longhorn's source does rather than folklore
// (docs/longhorn.md):
//
//   - chart values per chart version: the S3 backup target goes under defaultBackupStore
//     from 1.8 on (Longhorn ignores defaultSettings.backupTarget there), only the
//     defaultSettings talforge owns are emitted, recurringJobSelector is a JSON string,
//     deletingConfirmationFlag is never emitted;
//   - before the chart: namespace longhorn-system with privileged Pod Security labels and
//     the S3 credentials Secret, decrypted in memory only;
//   - the chart from the Longhorn repository at the profile's version (cached), installed or
//     upgraded — never --atomic, never without hooks — and a refused pre-upgrade check
//     reported with Longhorn's own message;
//   - after the chart: RecurringJobs, StorageClasses and volume recurring-job labels,
//     server-side applied with the field manager "talforge", then the BackupTarget
//     "default" must become available;
//   - upgrades one minor at a time (1.8.x → 1.9.latest → 1.10.x), never down, with CRD
//     storedVersions checked before 1.10 and health gates between steps;
//   - reinstall = upgrade --install at the installed version (keeps every CR);
//   - nothing runs while deleting-confirmation-flag is "true", and no code path uninstalls
//     Longhorn or deletes its namespace or CRDs;
//   - drift of Settings, BackupTarget, RecurringJobs, StorageClasses and volume labels
//     against the profile, and its reconciliation;
//   - the least-privilege IAM policy for the backup bucket.
//
// names.go and Conn are the Longhorn plumbing pkg/restore shares: the namespace, the
// resources (VolumeGVR, BackupGVR, ...), the labels and states talforge reads, and one
// connection (dynamic client, clientset) whose Wait is pkg/poll's loop with progress lines.
//
// The rendering functions (RenderValues, RenderManifests, IAMPolicy) are pure: `talforge
// generate` writes their output to clusters/<name>/.
package longhorn
