// Which config changes take effect on a running VM at once and which wait in the pending
// section for its next start: qemu-server PVE/QemuServer.pm vmconfig_hotplug_pending, as
// update_vm_api runs it after writing every change to [PENDING].

package pvesim

import (
	"strconv"
	"strings"
)

// fastPlugOptions change nothing in the running guest, so they always apply at once
// (qemu-server PVE/QemuServer.pm $fast_plug_option; the cloud-init options join it below).
var fastPlugOptions = set("description", "hookscript", "lock", "migrate_downtime", "migrate_speed", "name",
	"onboot", "protection", "shares", "startup", "tags", "vmstatestorage")

// isFastPlug: $fast_plug_option including every key of $confdesc_cloudinit (the cloud-init
// options and ipconfigN).
func isFastPlug(key string) bool {
	return fastPlugOptions[key] || cloudinitOption[key] || rxIPConfigKey.MatchString(key)
}

// vmHotplugFeatures is qemu-server's parse_hotplug_features of the VM's hotplug option: unset
// means "1", the default "network,disk,usb"; "0" means none.
func vmHotplugFeatures(v *VM) map[string]bool {
	hp, ok := v.Config["hotplug"]
	if !ok || hp == "1" {
		hp = "network,disk,usb"
	}
	out := map[string]bool{}
	if hp == "0" {
		return out
	}
	for _, f := range splitList(hp) {
		out[f] = true
	}
	return out
}

// balloonEnabled: ballooning is on unless balloon is set to 0.
func balloonEnabled(val string, set bool) bool {
	n, err := strconv.Atoi(val)
	return !set || err != nil || n != 0
}

// hotplugCPUOrMemory: a hotplug option naming cpu or memory (PVE matches /cpu/ and /memory/).
func hotplugCPUOrMemory(s string) bool {
	return strings.Contains(s, "cpu") || strings.Contains(s, "memory")
}

// hotApplies reports whether setting key to val on running VM v applies at once, following the
// add/change loop of vmconfig_hotplug_pending: fast-plug options; vcpus with cpu hotplug
// (cores and sockets are never hot-pluggable: they "skip" and stay pending, as do cpu, numa
// and affinity); memory with memory hotplug; cpuunits and cpulimit through the cgroup;
// balloon unless ballooning is switched on or off; hotplug itself unless cpu or memory
// hotplug is involved. Everything else stays pending. Emulator choice: NICs and drives other
// than efidisk0/tpmstate0 (vmconfig_update_net/_disk) keep applying at once.
func hotApplies(v *VM, key, val string) bool {
	f := vmHotplugFeatures(v)
	switch {
	case isFastPlug(key):
		return true
	case key == "vcpus":
		return f["cpu"]
	case key == "memory":
		return f["memory"]
	case key == "cpuunits", key == "cpulimit":
		return true
	case key == "balloon":
		old, set := v.Config["balloon"]
		return balloonEnabled(old, set) == balloonEnabled(val, true)
	case key == "hotplug":
		return !hotplugCPUOrMemory(val) && !hotplugCPUOrMemory(v.Config["hotplug"])
	case key == "efidisk0", key == "tpmstate0":
		return false
	case rxNetKey.MatchString(key), isDriveKey(key), rxUnusedKey.MatchString(key):
		return true
	}
	return false
}

// hotDeletes reports whether deleting key from running VM v applies at once, following the
// pending-delete loop of vmconfig_hotplug_pending: vcpus needs cpu hotplug, memory memory
// hotplug, balloon must not be 0, hotplug itself must not hold cpu or memory; fast-plug
// options, cpuunits and cpulimit always go. Emulator choice: drives, unused volumes and NICs
// keep going at once.
func hotDeletes(v *VM, key string) bool {
	f := vmHotplugFeatures(v)
	switch {
	case key == "hotplug":
		return !hotplugCPUOrMemory(v.Config["hotplug"])
	case key == "vcpus":
		return f["cpu"]
	case key == "memory":
		return f["memory"]
	case key == "balloon":
		return v.Config["balloon"] != "0"
	case isFastPlug(key), key == "cpuunits", key == "cpulimit":
		return true
	case rxNetKey.MatchString(key), isDriveKey(key), rxUnusedKey.MatchString(key):
		return true
	}
	return false
}
