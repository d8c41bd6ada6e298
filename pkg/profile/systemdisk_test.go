package profile_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/talforge/talforge/pkg/profile"
)

// TestSystemDiskDataPath: an adopted cluster may keep Longhorn's replicas on the system disks;
// then no node needs a longhornDisk, every node counts for replicas, and the profile always
// warns what a reset of a system disk costs.
func TestSystemDiskDataPath(t *testing.T) {
	const head = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
network: {cidr: 192.168.1.0/24, gateway: 192.168.1.1}
nodes:
  - {name: cp-1, role: controlplane, ip: 192.168.1.51}
  - {name: w-1, role: worker, ip: 192.168.1.61}
`
	for _, tt := range []struct {
		name, longhorn, want string
	}{
		{"system disk", "longhorn: {replicaCount: 2, systemDiskDataPath: /var/lib/longhorn}\n", ""},
		{"relative", "longhorn: {systemDiskDataPath: var/lib/longhorn}\n", `longhorn.systemDiskDataPath: "var/lib/longhorn" is not an absolute, clean path`},
		{"not under /var", "longhorn: {systemDiskDataPath: /opt/longhorn}\n", "longhorn.systemDiskDataPath: /opt/longhorn is not under /var"},
		{"the data-disk path", "longhorn: {systemDiskDataPath: /var/mnt/longhorn}\n", "is talforge's data-disk path"},
		{"too many replicas", "longhorn: {replicaCount: 3, systemDiskDataPath: /var/lib/longhorn}\n", "3 replicas but only 2 node(s)"},
		{"no path, no disk", "longhorn: {replicaCount: 1}\n", "Longhorn is enabled but no node has a longhornDisk"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := profile.Parse(filepath.Join(t.TempDir(), "lab.yaml"), []byte(head+tt.longhorn))
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("got %v, want a problem containing %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Longhorn.DataPath(); got != "/var/lib/longhorn" || len(c.LonghornNodes()) != 2 {
				t.Errorf("data path %s, %d Longhorn node(s)", got, len(c.LonghornNodes()))
			}
			if !strings.Contains(c.Warnings.Error(), "a Talos reset or reinstall that wipes a node's system disk destroys its replicas") {
				t.Errorf("no warning about the system disks: %v", c.Warnings)
			}
		})
	}
}
