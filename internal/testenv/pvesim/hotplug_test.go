package pvesim

import (
	"net/url"
	"strconv"
	"testing"
)

// TestHotplugOfCPUAndMemoryOptions: on a running VM cores, sockets and the CPU type are never
// hot-plugged, whatever the hotplug option says, and wait in [PENDING]; vcpus needs cpu
// hotplug, memory needs memory hotplug; cpuunits and balloon apply at once
// (qemu-server PVE/QemuServer.pm vmconfig_hotplug_pending).
func TestHotplugOfCPUAndMemoryOptions(t *testing.T) {
	s := New(fastOptions(optSchema(t, 9)))
	t.Cleanup(s.Close)
	cases := []struct {
		name    string
		hotplug string // "" leaves the option unset (network,disk,usb)
		params  url.Values
		key     string
		live    bool
	}{
		{"cores with cpu hotplug", "network,disk,cpu", vals("cores", "8"), "cores", false},
		{"sockets with cpu hotplug", "network,disk,cpu", vals("sockets", "2"), "sockets", false},
		{"cpu type with cpu hotplug", "network,disk,cpu", vals("cpu", "host"), "cpu", false},
		{"numa with cpu hotplug", "cpu,memory", vals("numa", "1"), "numa", false},
		{"vcpus with cpu hotplug", "network,disk,cpu", vals("vcpus", "2"), "vcpus", true},
		{"vcpus without cpu hotplug", "", vals("vcpus", "2"), "vcpus", false},
		{"cores without cpu hotplug", "", vals("cores", "8"), "cores", false},
		{"memory with memory hotplug", "cpu,memory", vals("memory", "4096"), "memory", true},
		{"memory without memory hotplug", "", vals("memory", "4096"), "memory", false},
		{"cpuunits through the cgroup", "", vals("cpuunits", "200"), "cpuunits", true},
		{"balloon while ballooning stays on", "", vals("balloon", "1024"), "balloon", true},
		{"balloon 0 switches ballooning off", "", vals("balloon", "0"), "balloon", false},
		{"hotplug gaining cpu", "", vals("hotplug", "network,disk,cpu"), "hotplug", false},
		{"hotplug without cpu or memory", "", vals("hotplug", "network,disk"), "hotplug", true},
		{"delete of cores with cpu hotplug", "network,disk,cpu", vals("delete", "cores"), "cores", false},
		{"delete of vcpus with cpu hotplug", "network,disk,cpu", vals("delete", "vcpus"), "vcpus", true},
		{"delete of vcpus without cpu hotplug", "", vals("delete", "vcpus"), "vcpus", false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := 400 + i
			conf := map[string]string{"name": "hot", "cores": "4", "sockets": "1", "vcpus": "4", "memory": "2048"}
			if tc.hotplug != "" {
				conf["hotplug"] = tc.hotplug
			}
			s.Seed(SeedVM{ID: id, Config: conf, Running: true})
			before := conf[tc.key]
			a := doReq(t, s, "PUT", "/nodes/pve/qemu/"+strconv.Itoa(id)+"/config", tc.params)
			if a.status != 200 {
				t.Fatalf("update: %d %q %v", a.status, a.reason, a.errs())
			}
			vm, _ := s.VM(id)
			deleting := tc.params.Has("delete")
			want := tc.params.Get(tc.key)
			switch {
			case tc.live && deleting:
				if _, ok := vm.Config[tc.key]; ok || vm.PendingDelete[tc.key] {
					t.Errorf("%s not deleted at once: config %v, pending delete %v", tc.key, vm.Config, vm.PendingDelete)
				}
			case tc.live:
				if vm.Config[tc.key] != want || vm.Pending[tc.key] != "" {
					t.Errorf("%s not applied at once: config %q, pending %q", tc.key, vm.Config[tc.key], vm.Pending[tc.key])
				}
			case deleting:
				if vm.Config[tc.key] != before || !vm.PendingDelete[tc.key] {
					t.Errorf("%s delete not pending: config %q, pending delete %v", tc.key, vm.Config[tc.key], vm.PendingDelete)
				}
			default:
				if vm.Config[tc.key] != before || vm.Pending[tc.key] != want {
					t.Errorf("%s not pending: config %q, pending %q", tc.key, vm.Config[tc.key], vm.Pending[tc.key])
				}
			}
		})
	}
}
