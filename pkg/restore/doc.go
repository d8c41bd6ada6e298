// Package restore brings a cluster's Longhorn volumes back from their S3 backups and proves
// that it can (longhorn/longhorn#6748: nothing else restores the claims Git declares).
//
//   - Backup takes an on-demand backup of a volume the way Longhorn's own API does: a
//     Snapshot custom resource, then a Backup custom resource naming that snapshot and
//     labelled with the volume; it waits until Longhorn reports the backup Completed.
//   - Latest finds a volume's newest Completed backup among the Backup objects Longhorn keeps
//     in sync with the backup target. On a freshly rebuilt cluster Longhorn pulls them from
//     the bucket once BackupTarget "default" is available; Restore asks for a sync (spec.
//     syncRequestedAt, as the UI's refresh does) and waits for them.
//   - Restore re-creates every volume the profile declares (longhorn.volumes) from its latest
//     backup: a Volume with spec.fromBackup, waited on until Longhorn reports the restore done
//     (status.restoreRequired false), then a PersistentVolume for it (CSI driver
//     driver.longhorn.io, volumeHandle = the volume) pre-bound by claimRef to the declared
//     PersistentVolumeClaim, which is created with spec.volumeName = the volume: the claim
//     binds to the restored data by name, so workloads deployed afterwards find their data
//     instead of provisioning an empty volume. Restored PVs are Retain: deleting the claim
//     never deletes restored data. A volume that exists is never overwritten, and a claim
//     that exists bound to something else is an error.
//   - DRTest backs a live volume up, restores that backup into a new volume, compares what
//     Longhorn reports about both and reports the time to restore.
//
// It works through a longhorn.Conn: Longhorn's resources, labels and waits (with progress
// lines on Options.Log) are pkg/longhorn's.
//
// Everything is idempotent by observation: an interrupted restore resumes (the Volume exists
// with spec.fromBackup: Restore waits for it) and nothing is created twice.
package restore
