package profile_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/talforge/talforge/pkg/profile"
)

// TestAdopted: nodes[].adopted needs the VMID and the NIC's MAC that identify the hand-made
// VM, and names real disk slots; `{}` means the slots talforge's own VMs use.
func TestAdopted(t *testing.T) {
	const head = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
network: {cidr: 192.168.1.0/24, gateway: 192.168.1.1}
`
	const pve = `proxmox: {endpoint: "https://pve:8006/api2/json", node: pve, storage: local-lvm, defaults: {longhornDisk: 50G}}
`

	tests := []struct {
		name, profile string
		// want: the only problem, or "" for a valid profile
		want           string
		osDisk, lhDisk string
	}{
		{
			name:    "empty means scsi0 and scsi1",
			profile: head + pve + "nodes:\n  - {name: cp-1, role: controlplane, ip: 192.168.1.51, vmid: 151, mac: 'BC:24:11:00:00:01', adopted: {}}\n",
			osDisk:  "scsi0", lhDisk: "scsi1",
		},
		{
			name:    "own slots",
			profile: head + pve + "nodes:\n  - {name: cp-1, role: controlplane, ip: 192.168.1.51, vmid: 151, mac: 'bc:24:11:00:00:01', adopted: {osDisk: virtio0, longhornDisk: virtio1}}\n",
			osDisk:  "virtio0", lhDisk: "virtio1",
		},
		{
			name:    "no vmid",
			profile: head + pve + "nodes:\n  - {name: cp-1, role: controlplane, ip: 192.168.1.51, mac: 'bc:24:11:00:00:01', adopted: {}}\n",
			want:    "nodes[0].vmid: is required with adopted",
		},
		{
			name:    "derived MAC",
			profile: head + pve + "nodes:\n  - {name: cp-1, role: controlplane, ip: 192.168.1.51, vmid: 151, adopted: {}}\n",
			want:    "nodes[0].mac: is required with adopted",
		},
		{
			name:    "not a slot",
			profile: head + pve + "nodes:\n  - {name: cp-1, role: controlplane, ip: 192.168.1.51, vmid: 151, mac: 'bc:24:11:00:00:01', adopted: {osDisk: scsi31}}\n",
			want:    `nodes[0].adopted.osDisk: "scsi31" is not a disk slot`,
		},
		{
			name:    "one slot for both disks",
			profile: head + pve + "nodes:\n  - {name: cp-1, role: controlplane, ip: 192.168.1.51, vmid: 151, mac: 'bc:24:11:00:00:01', adopted: {longhornDisk: scsi0}}\n",
			want:    "nodes[0].adopted.longhornDisk: scsi0 is also adopted.osDisk",
		},
		{
			name:    "no proxmox section",
			profile: head + "nodes:\n  - {name: cp-1, role: controlplane, ip: 192.168.1.51, vmid: 151, mac: 'bc:24:11:00:00:01', adopted: {}}\n",
			want:    "nodes[0].adopted: an adopted VM needs the proxmox section",
		},
		{
			name:    "unknown key",
			profile: head + pve + "nodes:\n  - {name: cp-1, role: controlplane, ip: 192.168.1.51, vmid: 151, mac: 'bc:24:11:00:00:01', adopted: {dataDisk: scsi1}}\n",
			want:    "dataDisk",
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "lab.yaml")

			c, err := profile.Parse(path, []byte(tt.profile))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("valid profile refused: %v", err)
				}

				n := c.Nodes[0]
				if !n.IsAdopted() || n.Adopted.OSDiskSlot() != tt.osDisk || n.Adopted.LonghornDiskSlot() != tt.lhDisk {
					t.Errorf("adopted %+v: slots %s, %s; want %s, %s", n.Adopted, n.Adopted.OSDiskSlot(), n.Adopted.LonghornDiskSlot(), tt.osDisk, tt.lhDisk)
				}

				if n.MAC != "bc:24:11:00:00:01" {
					t.Errorf("MAC %q, want it lower-cased", n.MAC)
				}

				return
			}

			var ps profile.Problems
			if !errors.As(err, &ps) {
				t.Fatalf("want profile.Problems, got %T: %v", err, err)
			}

			if len(ps) != 1 || !strings.Contains(ps[0].String(), tt.want) || ps[0].Hint == "" {
				t.Errorf("want exactly one problem with %q and a hint, got %d:\n%v", tt.want, len(ps), err)
			}
		})
	}
}
