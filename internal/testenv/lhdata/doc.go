// Package lhdata keeps the data of emulated Longhorn volumes in files and backs them up to,
// and restores them from, a real backup store with Longhorn's own backupstore library
// (github.com/longhorn/backupstore), so tests exercise the very code and on-bucket format
// a Longhorn engine uses.
//
// A [Store] is a directory: every volume is a sparse file of the volume's size (its "head"),
// and every snapshot a frozen sparse copy of the head taken at that moment (Longhorn keeps
// snapshots as differencing disk files; a full copy holds the same data, which is all a
// backup or a clone reads). Clones ([Store.Clone]) get exactly one snapshot's data, as a
// Longhorn volume created with spec.dataSource snap://<volume>/<snapshot> does
// (longhorn-manager types/data_source.go).
//
// [Store.Backup] is what the engine does for a Backup: backupstore.CreateDeltaBlockBackup
// with a DeltaBlockBackupOperations over the snapshot files. The library decides between a
// full and an incremental backup exactly as for Longhorn: incremental when the volume's last
// backup in the store was taken from a snapshot that still exists here (deltablock.go). The
// library finishes a backup in a goroutine; Backup waits for it, because the S3 driver reads
// its settings from the process environment on every request and that environment is only
// set while backuptarget.WithEnv runs. For the same reason [Store.Restore] waits until the
// library has released its lock file in the store.
//
// Every call that reaches the store goes through backuptarget.WithEnv with the credentials
// given (the data of Longhorn's credential Secret, key for key), so calls are serialised
// process-wide. The library takes a lock file in the store for each backup, restore and
// deletion and waits 2 s after writing it (lock.go LOCK_CHECK_WAIT_TIME): each such call
// takes at least that long.
package lhdata
