// Package lhmanager is an in-process test controller that plays longhorn-manager against
// a real kube-apiserver (internal/testenv/kubeenv) on which no kubelet runs.
//
// It does what talforge relies on the real manager to do, following the upstream
// behaviour documented in facts-longhorn-talos.md:
//
//   - completes Helm hook Jobs; the pre-upgrade Job fails, like upstream's
//     `longhorn-manager pre-upgrade`, for a minor jump > 1 or any downgrade, with
//     upstream's message in a Warning Event (reason FailedUpgradePreCheck) and a Failed
//     Job condition; the pre-delete uninstall Job fails unless deleting-confirmation-flag
//     is "true", and when it is, deletes every Volume (the data loss talforge guards against);
//   - turns longhorn-default-setting into Setting CRs, re-applied on every change of the
//     ConfigMap (upstream since 1.3), and creates the other Settings with built-in defaults;
//   - turns longhorn-default-resource into BackupTarget "default" (keys absent from the
//     ConfigMap keep the CR's value) and reports it available, or unavailable with a
//     message when the URL or the credential Secret is bad;
//   - creates StorageClass "longhorn" from longhorn-storageclass (delete + re-create on change);
//   - marks the manager DaemonSet and the Deployments rolled out, re-running the upgrade
//     path check as the real manager does at start, then sets current-longhorn-version;
//   - lets tests create Volumes, mark them healthy/degraded/rebuilding and simulate backups.
package lhmanager
