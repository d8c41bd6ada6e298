package longhorn

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/talforge/talforge/pkg/profile"
)

// TestOwnedSettingsSystemDisk: replicas kept on the system disks (an adopted cluster) keep
// Longhorn's own defaults: a default disk on every node at that path, 30% left to the OS.
func TestOwnedSettingsSystemDisk(t *testing.T) {
	for _, tt := range []struct {
		name                    string
		l                       profile.Longhorn
		path, labeled, reserved string
	}{
		{"data disks", profile.Longhorn{ReplicaCount: 2}, profile.LonghornDataPath, "true", "5"},
		{"system disks", profile.Longhorn{ReplicaCount: 2, SystemDiskDataPath: "/var/lib/longhorn"}, "/var/lib/longhorn", "false", "30"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]string{}
			for _, s := range OwnedSettings(&tt.l) {
				got[s.Setting] = s.Value
			}
			if got["default-data-path"] != tt.path || got["create-default-disk-labeled-nodes"] != tt.labeled ||
				got["storage-reserved-percentage-for-default-disk"] != tt.reserved || got["default-replica-count"] != "2" {
				t.Errorf("settings %v", got)
			}
		})
	}
}

// TestStorageClassDefaults: a parameter left out is Longhorn's default, so a class made by hand
// without fsType or dataLocality is the same class as talforge's with them; any other
// difference still counts.
func TestStorageClassDefaults(t *testing.T) {
	want := &unstructured.Unstructured{Object: map[string]any{
		"provisioner": "driver.longhorn.io", "reclaimPolicy": "Retain", "volumeBindingMode": "Immediate",
		"parameters": map[string]any{"numberOfReplicas": "2", "fsType": "ext4", "dataLocality": "disabled", "backupTargetName": "default", "fromBackup": ""},
	}}
	retain, immediate := corev1.PersistentVolumeReclaimRetain, storagev1.VolumeBindingImmediate
	for _, tt := range []struct {
		name   string
		params map[string]string
		diffs  int
	}{
		{"defaults left out", map[string]string{"numberOfReplicas": "2"}, 0},
		{"defaults written", map[string]string{"numberOfReplicas": "2", "fsType": "ext4", "dataLocality": "disabled", "backupTargetName": "default", "fromBackup": ""}, 0},
		{"another filesystem", map[string]string{"numberOfReplicas": "2", "fsType": "xfs"}, 1},
		{"another replica count", map[string]string{"numberOfReplicas": "3"}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			live := &storagev1.StorageClass{Provisioner: "driver.longhorn.io", ReclaimPolicy: &retain, VolumeBindingMode: &immediate, Parameters: tt.params}
			if got := storageClassFieldDiffs(want, live); len(got) != tt.diffs {
				t.Errorf("differences %v, want %d", got, tt.diffs)
			}
		})
	}
}
