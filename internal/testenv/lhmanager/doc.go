// Package lhmanager is an in-process test controller that plays longhorn-manager against
// a real kube-apiserver (internal/testenv/kubeenv) on which no kubelet runs.
//
// Run does what talforge relies on the real manager to do at install and upgrade time,
// following the upstream behaviour documented in docs/longhorn.md:
//
//   - completes Helm hook Jobs; the pre-upgrade Job fails, like upstream's
//     `longhorn-manager pre-upgrade`, for a minor jump > 1 or any downgrade, with
//     upstream's message in a Warning Event (reason FailedUpgradePreCheck) and a Failed
//     Job condition; the pre-delete uninstall Job fails unless deleting-confirmation-flag
//     is "true", and when it is, deletes every Volume (the data loss talforge guards against);
//   - turns longhorn-default-setting into Setting CRs, re-applied on every change of the
//     ConfigMap (upstream since 1.3), and creates the other Settings with built-in defaults;
//   - turns longhorn-default-resource into BackupTarget "default" (keys absent from the
//     ConfigMap keep the CR's value);
//   - creates StorageClass "longhorn" from longhorn-storageclass (delete + re-create on change);
//   - marks the manager DaemonSet and the Deployments rolled out, re-running the upgrade
//     path check as the real manager does at start, then sets current-longhorn-version;
//   - lets tests create Volumes and mark them healthy/degraded/rebuilding.
//
// A Manager without Options.Data has no data path: the backup target is reported available
// when its URL and credential Secret look right (SetBackupStoreError forces a failure) and
// SimulateBackup records backups that hold nothing.
//
// With Options.Data (an lhdata.Store) RunBackups runs beside Run and plays the data path for
// real: volume data lives in files and backups go to the S3 bucket of BackupTarget "default"
// through Longhorn's own backupstore library, with the credential Secret's data, key for
// key, as the S3 driver's environment. It follows these longhorn-manager controllers:
//
//   - backup target (controller/backup_target_controller.go): on a new URL or Secret, on
//     spec.syncRequestedAt and every pollInterval the store is listed; status.available and
//     the Unavailable condition carry the driver's message; backups the cluster does not
//     know become Backup objects (status, labels included, read from the backup config)
//     and BackupVolumes; then status.lastSyncedAt;
//   - backups (controller/backup_controller.go): a Backup with spec.snapshotName is backed up
//     (spec.labels are the backup's labels) and its status, the BackupVolume and the
//     volume's lastBackup follow; a driver error ends it in state Error with the message;
//     deleting a Backup deletes it from the store unless the target is unavailable or the
//     object is labelled longhorn.io/delete-custom-resource-only;
//   - snapshots: a Snapshot with spec.createSnapshot freezes the volume's data; deleting it
//     deletes that data;
//   - volumes (controller/volume_controller.go): every Volume gets its data, empty, cloned
//     from spec.dataSource (snap://<volume>/<snapshot>, vol://<volume>) or restored from
//     spec.fromBackup (restoreRequired while it runs, status.kubernetesStatus from the
//     backup's KubernetesStatus label without the PV fields, a failure faults the volume with
//     condition Restore/RestoreFailure and the driver's message); deleting a Volume deletes
//     its data;
//   - the Kubernetes PV controller (controller/kubernetes_pv_controller.go): a Volume's
//     status.kubernetesStatus follows the PV whose CSI volumeHandle names it, its claim and
//     the pods that use the claim;
//   - the CSI controller with the external-provisioner (csi/controller_server.go
//     CreateVolume): an unbound claim of a StorageClass with provisioner driver.longhorn.io
//     gets a Volume and a PV named pvc-<claim uid>, both bound to it;
//   - recurring jobs (app/recurringjob): RunRecurringJob runs a backup job now, as its cron
//     would.
//
// Objects it handles carry Longhorn's finalizer "longhorn.io", as upstream's do, so the
// clean-up above happens before they go.
//
// No kubelet runs, so RunBackups also emulates the kubelet running the data-verification Job
// of `talforge dr-test --verify-data`: a Job labelled talforge.dev/dr-verify=true whose pod
// mounts two claims, as volumes "restored" and "source", completes (Complete, one succeeded
// pod) when the two Longhorn volumes behind the claims (claim -> PV -> CSI volumeHandle)
// hold the same bytes, and fails (Failed, one failed pod, condition message "checksums
// differ") when they do not. It waits while a claim is unbound or its volume is restoring.
package lhmanager
