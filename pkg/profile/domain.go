package profile

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Domain tables and rules that more than one stage needs. Stages import profile and not each
// other, so each table lives here once and the stages ask through the functions below.

// cpuModelsTalosCannotBoot are the Proxmox built-in CPU models whose instruction set is below
// x86-64-v2, which Talos requires since v1.0 (siderolabs/talos#7202;
// docs/talos.md#vm-requirements). The 32-bit models are proxmox/qemu-server
// PVE/QemuServer/CPUConfig.pm $cputypes_32bit; the others are generic 64-bit models without
// SSE4.2/POPCNT. x86-64-v1 is not a PVE model (PVE builds only x86-64-v2 to -v4) but names the
// level Talos cannot run on, so it is refused with the same reason rather than later by PVE
// with a less useful one.
var cpuModelsTalosCannotBoot = map[string]bool{
	"486": true, "pentium": true, "pentium2": true, "pentium3": true, "coreduo": true, "core2duo": true,
	"athlon": true, "phenom": true, "n270": true, "kvm32": true, "kvm64": true, "qemu32": true, "qemu64": true,
	"x86-64-v1": true,
}

// CPUCannotBootTalos reports whether the Proxmox CPU model lacks the x86-64-v2 instructions
// Talos needs, so a VM with it boot-loops. model is the bare cputype (no flags); case is
// ignored.
func CPUCannotBootTalos(model string) bool {
	return cpuModelsTalosCannotBoot[strings.ToLower(model)]
}

// ValidClusterName reports whether name can be a cluster name (metadata.name): a DNS label
// (RFC 1123), because it becomes the Talos cluster name, a directory and part of the Proxmox
// ownership tag.
func ValidClusterName(name string) bool { return isDNSLabel(name) }

// isDNSLabel and isDNSSubdomain are Kubernetes' RFC 1123 rules (k8s.io/apimachinery
// pkg/util/validation), the ones the API server applies to namespace, PVC and Secret names.
func isDNSLabel(s string) bool { return len(validation.IsDNS1123Label(s)) == 0 }

func isDNSSubdomain(s string) bool { return len(validation.IsDNS1123Subdomain(s)) == 0 }

// longhornReleases is the newest released chart of each Longhorn 1.x minor talforge supports,
// oldest first, one per minor with no gaps (docs/longhorn.md#chart-releases).
// Its first and last minors are the supported range, and the upgrade ladder passes through
// these charts. The newest is DefaultLonghornVersion.
var longhornReleases = []string{"1.8.2", "1.9.2", "1.10.2", DefaultLonghornVersion}

// longhornRange is the inclusive range of Longhorn minors longhornReleases covers.
// TestLonghornReleases keeps the table parseable, ordered and gap-free.
func longhornRange() versionRange {
	first, _ := parseVersion(longhornReleases[0])
	last, _ := parseVersion(longhornReleases[len(longhornReleases)-1])

	return versionRange{min: minor{first.Major, first.Minor}, max: minor{last.Major, last.Minor}}
}

// LonghornLatestPatch returns the newest released chart of Longhorn major.minor, and false when
// talforge does not support that minor.
func LonghornLatestPatch(major, minor uint64) (string, bool) {
	for _, r := range longhornReleases {
		if v, _ := parseVersion(r); uint64(v.Major) == major && uint64(v.Minor) == minor {
			return r, true
		}
	}

	return "", false
}

// SupportedLonghorn describes the supported Longhorn range for messages: "1.8.x to 1.11.x".
func SupportedLonghorn() string { return longhornRange().String() }
