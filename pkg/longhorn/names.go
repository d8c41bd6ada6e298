package longhorn

import "k8s.io/apimachinery/pkg/runtime/schema"

// Names fixed by the Longhorn chart and by talforge.
const (
	Namespace   = "longhorn-system"
	ReleaseName = "longhorn"
	ChartName   = "longhorn"
	// FieldManager owns what talforge server-side applies or creates.
	FieldManager = "talforge"
	// ManagedByLabel, set to ManagedBy, marks what talforge manages: RecurringJobs,
	// StorageClasses, the credentials Secret, restored volumes and their claims.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "talforge"
	// CSIDriver is Longhorn's CSI driver: the provisioner of its StorageClasses and the
	// driver of its PersistentVolumes.
	CSIDriver = "driver.longhorn.io"
	// DefaultBackupTarget is the BackupTarget longhorn-manager creates from the chart's
	// default backup store (longhorn-manager types/types.go DefaultBackupTargetName).
	DefaultBackupTarget = "default"

	// Volume labels that select recurring jobs and job groups (longhorn-manager
	// types/types.go); the value is "enabled".
	RecurringJobLabelPrefix      = "recurring-job.longhorn.io/"
	RecurringJobGroupLabelPrefix = "recurring-job-group.longhorn.io/"
	// Labels longhorn-manager puts on Backup objects (types/types.go LonghornLabelBackupVolume,
	// LonghornLabelBackupTarget).
	BackupVolumeLabel = "backup-volume"
	BackupTargetLabel = "backup-target"

	// Backup status.state values (k8s/pkg/apis/longhorn/v1beta2 BackupState).
	BackupStateCompleted = "Completed"
	BackupStateError     = "Error"
	// The Volume condition and reason of a failed restore (v1beta2 VolumeConditionTypeRestore,
	// VolumeConditionReasonRestoreFailure).
	VolumeConditionRestore     = "Restore"
	VolumeReasonRestoreFailure = "RestoreFailure"
	// VolumeRobustnessFaulted is a Volume's status.robustness when it lost every replica.
	VolumeRobustnessFaulted = "faulted"

	settingDeletingConfirmationFlag = "deleting-confirmation-flag"
	settingCurrentLonghornVersion   = "current-longhorn-version"
	reasonFailedUpgradePreCheck     = "FailedUpgradePreCheck"
)

// Longhorn's custom resources talforge reads or writes (longhorn.io/v1beta2), all in Namespace.
var (
	VolumeGVR       = longhornGVR("volumes")
	EngineGVR       = longhornGVR("engines")
	SnapshotGVR     = longhornGVR("snapshots")
	BackupGVR       = longhornGVR("backups")
	BackupVolumeGVR = longhornGVR("backupvolumes")
	BackupTargetGVR = longhornGVR("backuptargets")
	SettingGVR      = longhornGVR("settings")
	RecurringJobGVR = longhornGVR("recurringjobs")
	ReplicaGVR      = longhornGVR("replicas")
	NodeGVR         = longhornGVR("nodes")
	EngineImageGVR  = longhornGVR("engineimages")
)

// Core resources talforge server-side applies through the dynamic client.
var (
	storageClassGVR = schema.GroupVersionResource{Group: "storage.k8s.io", Version: "v1", Resource: "storageclasses"}
	namespaceGVR    = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
)

func longhornGVR(resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "longhorn.io", Version: "v1beta2", Resource: resource}
}
