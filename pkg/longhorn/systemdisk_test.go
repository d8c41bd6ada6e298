package longhorn

import (
	"testing"

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
