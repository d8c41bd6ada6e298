package e2e

import (
	"testing"

	"github.com/talforge/talforge/internal/testenv/pvesim"
)

// TestDataSurvivesOnlyOnAKeptDisk: the Longhorn data of a lost cluster survives when one of
// its VMs' data disks still exists, even renamed by move_disk, and not when they are gone.
func TestDataSurvivesOnlyOnAKeptDisk(t *testing.T) {
	before := pvesim.New(pvesim.Options{})
	defer before.Close()
	before.Seed(
		pvesim.SeedVM{ID: 100, Running: true, Config: map[string]string{"scsi0": "local-lvm:vm-100-disk-0,size=20G", "scsi1": "local-lvm:vm-100-disk-1,size=10G,serial=talforge-longhorn"}},
		pvesim.SeedVM{ID: 101, Running: true, Config: map[string]string{"scsi0": "local-lvm:vm-101-disk-0,size=20G"}},
	)
	e := &Env{PVE: before, dataDisks: map[diskID]bool{}, diskOfVM: map[int]string{}}
	if !e.dataSurvivesLocked() {
		t.Error("with no data disk ever seen the data must stay (nothing of it was on a VM)")
	}
	var kept pvesim.Volume
	for _, vm := range before.VMs() {
		e.recordDataDiskLocked(vm)
	}
	for _, v := range before.Volumes() {
		if v.VolID == "local-lvm:vm-100-disk-1" {
			kept = v
		}
	}
	if len(e.dataDisks) != 1 || e.diskOfVM[100] != "local-lvm:vm-100-disk-1" {
		t.Fatalf("recorded data disks %v %v, want VM 100's scsi1 only", e.dataDisks, e.diskOfVM)
	}

	for _, tt := range []struct {
		name    string
		volumes []pvesim.Volume
		want    bool
	}{
		{"disk parked on a holder VM (renamed)", []pvesim.Volume{{VolID: "local-lvm:vm-9100-disk-0", Format: kept.Format, Size: kept.Size, CTime: kept.CTime}}, true},
		{"every disk destroyed", nil, false},
		{"only a system disk of another size left", []pvesim.Volume{{VolID: "local-lvm:vm-100-disk-0", Format: kept.Format, Size: kept.Size * 2, CTime: kept.CTime}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			after := pvesim.New(pvesim.Options{})
			defer after.Close()
			for _, v := range tt.volumes {
				after.SeedVolume(v)
			}
			e.PVE = after
			if got := e.dataSurvivesLocked(); got != tt.want {
				t.Errorf("data survives = %v, want %v", got, tt.want)
			}
		})
	}
}
