package pvesim

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// Named formats from pve-common (JSONSchema.pm), pve-storage and qemu-server.
// Each validator returns "" when valid or the die message (with trailing
// newline) PVE produces. Formats not listed are accepted: they belong to
// parameters talforge never sends.

var (
	rxVMID      = regexp.MustCompile(`^[1-9][0-9]{2,8}$`)
	rxNode      = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)$`)
	rxID        = regexp.MustCompile(`(?i)^[a-z][a-z0-9\-_.]*[a-z0-9]$`)
	rxBridge    = regexp.MustCompile(`^[-_.\w\d]+$`)
	rxConfigID  = regexp.MustCompile(`(?i)^[a-z][a-z0-9_-]+$`)
	rxMAC       = regexp.MustCompile(`(?i)^[a-f0-9][02468ace](?::[a-f0-9]{2}){5}$`)
	rxDNSName   = regexp.MustCompile(`^(([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)\.)*([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)$`)
	rxTag       = regexp.MustCompile(`(?i)^[a-z0-9_][a-z0-9_\-+.]*$`)
	rxURLEnc    = regexp.MustCompile(`^[-%a-zA-Z0-9_.!~*'()]*$`)
	rxSize      = regexp.MustCompile(`^(\d+(\.\d+)?)([KMGT])?$`)
	rxVolumeID  = regexp.MustCompile(`(?i)^([a-z][a-z0-9\-_.]*[a-z0-9]):(.+)$`)
	rxPoolID    = regexp.MustCompile(`^[A-Za-z0-9.\-_]+$`)
	rxStartup   = regexp.MustCompile(`^(?:(order=)?(\d+)|up=(\d+)|down=(\d+))$`)
	rxHAResID   = regexp.MustCompile(`^(?:(?:vm|ct):)?\d+$`)
	rxDriveName = regexp.MustCompile(`^(ide[0-3]|sata[0-5]|scsi([0-9]|[12][0-9]|30)|virtio([0-9]|1[0-5])|efidisk0|tpmstate0)$`)
	rxCPUFlags  = regexp.MustCompile(`^[+-][a-zA-Z0-9\-_.]+(;[+-][a-zA-Z0-9\-_.]+)*$`)
	rxCpuset    = regexp.MustCompile(`^\d+(-\d+)?(,\d+(-\d+)?)*$`)
)

var storageContentTypes = map[string]bool{
	"images": true, "rootdir": true, "vztmpl": true, "iso": true, "backup": true, "snippets": true, "import": true,
}

var hotplugFeatures = map[string]bool{"network": true, "disk": true, "cpu": true, "memory": true, "usb": true, "cloudinit": true}

// builtinCPUModels is qemu-server's CPUConfig.pm $cpu_vendor_list plus the
// x86-64 psABI levels and the special "host"/"max" types.
var builtinCPUModels = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range strings.Fields(`486 qemu32 kvm32 qemu64 kvm64 host max pentium pentium2 pentium3 coreduo core2duo
		Conroe Penryn Nehalem Nehalem-IBRS Westmere Westmere-IBRS SandyBridge SandyBridge-IBRS IvyBridge IvyBridge-IBRS
		Haswell Haswell-IBRS Haswell-noTSX Haswell-noTSX-IBRS Broadwell Broadwell-IBRS Broadwell-noTSX Broadwell-noTSX-IBRS
		Skylake-Client Skylake-Client-IBRS Skylake-Client-noTSX-IBRS Skylake-Client-v4 Skylake-Server Skylake-Server-IBRS
		Skylake-Server-noTSX-IBRS Skylake-Server-v4 Skylake-Server-v5 Cascadelake-Server Cascadelake-Server-v2
		Cascadelake-Server-noTSX Cascadelake-Server-v4 Cascadelake-Server-v5 Cooperlake Cooperlake-v2 KnightsMill
		Icelake-Client Icelake-Client-noTSX Icelake-Server Icelake-Server-noTSX Icelake-Server-v3 Icelake-Server-v4
		Icelake-Server-v5 Icelake-Server-v6 SapphireRapids SapphireRapids-v2 GraniteRapids athlon phenom Opteron_G1
		Opteron_G2 Opteron_G3 Opteron_G4 Opteron_G5 EPYC EPYC-IBPB EPYC-v3 EPYC-v4 EPYC-Rome EPYC-Rome-v2 EPYC-Rome-v3
		EPYC-Rome-v4 EPYC-Milan EPYC-Milan-v2 EPYC-Genoa x86-64-v2 x86-64-v2-AES x86-64-v3 x86-64-v4`) {
		m[c] = true
	}
	return m
}()

func ptrF(f float64) *float64 { return &f }

// Hash formats that the schema dump only names (registered formats).
var namedHashFormats = map[string]map[string]*Prop{
	"pve-qm-ipconfig": {
		"ip":  {Type: "string", Format: "pve-ipv4-config", Optional: true},
		"gw":  {Type: "string", Format: "ipv4", Optional: true},
		"ip6": {Type: "string", Format: "pve-ipv6-config", Optional: true},
		"gw6": {Type: "string", Format: "ipv6", Optional: true},
	},
	"pve-qm-boot": {
		"legacy": {Type: "string", Pattern: "[acdn]{1,4}", re: regexp.MustCompile(`^[acdn]{1,4}$`), DefaultKey: true, Optional: true},
		"order":  {Type: "string", Format: "pve-qm-bootdev-list", Optional: true},
	},
	"pve-vm-cpu-conf": {
		"cputype":         {Type: "string", DefaultKey: true, Optional: true},
		"flags":           {Type: "string", Pattern: rxCPUFlags.String()[1 : len(rxCPUFlags.String())-1], re: rxCPUFlags, Optional: true},
		"hidden":          {Type: "boolean", Optional: true},
		"hv-vendor-id":    {Type: "string", Pattern: `[a-zA-Z0-9]{1,12}`, re: regexp.MustCompile(`^[a-zA-Z0-9]{1,12}$`), Optional: true},
		"phys-bits":       {Type: "string", Optional: true},
		"guest-phys-bits": {Type: "integer", Minimum: ptrF(32), Maximum: ptrF(64), Optional: true},
		"reported-model":  {Type: "string", Optional: true},
	},
	"pve-qm-smbios1": {
		"base64": {Type: "boolean", Optional: true}, "family": {Type: "string", Optional: true},
		"manufacturer": {Type: "string", Optional: true}, "product": {Type: "string", Optional: true},
		"serial": {Type: "string", Optional: true}, "sku": {Type: "string", Optional: true},
		"uuid": {Type: "string", Optional: true}, "version": {Type: "string", Optional: true},
	},
}

// checkFormat mirrors PVE::JSONSchema::check_format for named formats,
// including the "-list" and "-opt" suffixes.
func checkFormat(format, value, path string) string {
	if format == "regex" || format == "string" {
		return ""
	}
	if hf, ok := namedHashFormats[format]; ok {
		res, msg := parsePropertyString(hf, value, path)
		if msg != "" {
			return msg
		}
		if format == "pve-vm-cpu-conf" {
			return validateCPUConf(res)
		}
		return ""
	}
	name, kind := format, ""
	if strings.HasSuffix(format, "-list") {
		name, kind = strings.TrimSuffix(format, "-list"), "list"
	} else if strings.HasSuffix(format, "-opt") {
		name, kind = strings.TrimSuffix(format, "-opt"), "opt"
	}
	v, known := namedFormats[name]
	if !known {
		v, known = namedFormats[format]
		if !known {
			return "" // not modelled: accepted
		}
		kind = ""
	}
	switch kind {
	case "list":
		for _, item := range splitList(value) {
			if msg := v(item); msg != "" {
				return msg
			}
		}
		return ""
	case "opt":
		if value == "" {
			return ""
		}
	}
	return v(value)
}

func validateCPUConf(res map[string]string) string {
	ct := res["cputype"]
	if ct == "" || strings.HasPrefix(ct, "custom-") || builtinCPUModels[ct] {
		return ""
	}
	return "Built-in cputype '" + ct + "' is not defined (missing 'custom-' prefix?)\n"
}

func isIPv4(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is4() && !strings.Contains(s, ":")
}

func isIPv6(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is6() && a.Zone() == ""
}

func cidr(s string, v6 bool) bool {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return false
	}
	n, err := strconv.Atoi(s[i+1:])
	if err != nil || n <= 7 {
		return false
	}
	if v6 {
		return isIPv6(s[:i]) && n <= 128
	}
	return isIPv4(s[:i]) && n <= 32
}

// ParseSize mirrors PVE::JSONSchema::parse_size (bytes; ok=false if invalid).
func ParseSize(s string) (int64, bool) {
	m := rxSize.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	switch m[3] {
	case "K":
		f *= 1 << 10
	case "M":
		f *= 1 << 20
	case "G":
		f *= 1 << 30
	case "T":
		f *= 1 << 40
	}
	return int64(f), true
}

// FormatSize mirrors PVE::JSONSchema::format_size.
func FormatSize(size int64) string {
	kb := size / 1024
	if kb*1024 != size {
		return strconv.FormatInt(size, 10)
	}
	mb := kb / 1024
	if mb*1024 != kb {
		return strconv.FormatInt(kb, 10) + "K"
	}
	gb := mb / 1024
	if gb*1024 != mb {
		return strconv.FormatInt(mb, 10) + "M"
	}
	tb := gb / 1024
	if tb*1024 != gb {
		return strconv.FormatInt(gb, 10) + "G"
	}
	return strconv.FormatInt(tb, 10) + "T"
}

var namedFormats = map[string]func(string) string{
	"pve-vmid": func(s string) string {
		if !rxVMID.MatchString(s) {
			return "value does not look like a valid VM ID\n"
		}
		return ""
	},
	"pve-node": func(s string) string {
		if !rxNode.MatchString(s) {
			return "value does not look like a valid node name\n"
		}
		return ""
	},
	"pve-storage-id": func(s string) string {
		if !rxID.MatchString(s) {
			return "storage ID '" + s + "' contains illegal characters\n"
		}
		return ""
	},
	"pve-bridge-id": func(s string) string {
		if !rxBridge.MatchString(s) {
			return "invalid bridge ID '" + s + "'\n"
		}
		return ""
	},
	"pve-configid": func(s string) string {
		if !rxConfigID.MatchString(s) {
			return "invalid configuration ID '" + s + "'\n"
		}
		return ""
	},
	"mac-addr": func(s string) string {
		if !rxMAC.MatchString(s) {
			return "value does not look like a valid unicast MAC address\n"
		}
		return ""
	},
	"ipv4": func(s string) string {
		if !isIPv4(s) {
			return "value does not look like a valid IPv4 address\n"
		}
		return ""
	},
	"ipv6": func(s string) string {
		if !isIPv6(s) {
			return "value does not look like a valid IPv6 address\n"
		}
		return ""
	},
	"ip": func(s string) string {
		if !isIPv4(s) && !isIPv6(s) {
			return "value does not look like a valid IP address\n"
		}
		return ""
	},
	"CIDRv4": func(s string) string {
		if !cidr(s, false) {
			return "value does not look like a valid IPv4 CIDR network\n"
		}
		return ""
	},
	"CIDRv6": func(s string) string {
		if !cidr(s, true) {
			return "value does not look like a valid IPv6 CIDR network\n"
		}
		return ""
	},
	"CIDR": func(s string) string {
		if !cidr(s, false) && !cidr(s, true) {
			return "value does not look like a valid CIDR network\n"
		}
		return ""
	},
	"pve-ipv4-config": func(s string) string {
		if s == "dhcp" || s == "manual" || cidr(s, false) {
			return ""
		}
		return "value does not look like a valid ipv4 network configuration\n"
	},
	"pve-ipv6-config": func(s string) string {
		if s == "auto" || s == "dhcp" || s == "manual" || cidr(s, true) {
			return ""
		}
		return "value does not look like a valid ipv6 network configuration\n"
	},
	"address": func(s string) string {
		if isIPv4(s) || isIPv6(s) || rxDNSName.MatchString(s) {
			return ""
		}
		return "value does not look like a valid address: " + s + "\n"
	},
	"dns-name": func(s string) string {
		if !rxDNSName.MatchString(s) {
			return "value does not look like a valid DNS name\n"
		}
		return ""
	},
	"disk-size": func(s string) string {
		if _, ok := ParseSize(s); !ok {
			return "value does not look like a valid disk size: " + s + "\n"
		}
		return ""
	},
	"urlencoded": func(s string) string {
		if !rxURLEnc.MatchString(s) {
			return "invalid urlencoded string: " + s + "\n"
		}
		return ""
	},
	"pve-tag": func(s string) string {
		if !rxTag.MatchString(s) {
			return "invalid characters in tag\n"
		}
		return ""
	},
	"pve-startup-order": func(s string) string {
		ok := false
		for _, p := range strings.Split(s, ",") {
			if strings.TrimSpace(p) == "" {
				continue
			}
			if !rxStartup.MatchString(p) {
				return "unable to parse startup options\n"
			}
			ok = true
		}
		if !ok {
			return "unable to parse startup options\n"
		}
		return ""
	},
	"pve-volume-id": func(s string) string {
		if !rxVolumeID.MatchString(s) {
			return "unable to parse volume ID '" + s + "'\n"
		}
		return ""
	},
	"pve-volume-id-or-qm-path": func(s string) string {
		if s == "none" || s == "cdrom" || strings.HasPrefix(s, "/") || rxVolumeID.MatchString(s) {
			return ""
		}
		return "unable to parse volume ID '" + s + "'\n"
	},
	"pve-volume-id-or-absolute-path": func(s string) string {
		if strings.HasPrefix(s, "/") || rxVolumeID.MatchString(s) {
			return ""
		}
		return "unable to parse volume ID '" + s + "'\n"
	},
	"pve-qm-bootdev": func(s string) string {
		if rxDriveName.MatchString(s) && !strings.HasPrefix(s, "efidisk") && !strings.HasPrefix(s, "tpmstate") {
			return ""
		}
		if m := rxIndexedName.FindStringSubmatch(s); m != nil {
			n, _ := strconv.Atoi(m[2])
			switch m[1] {
			case "net":
				if n <= 31 {
					return ""
				}
			case "usb":
				if n <= 13 {
					return ""
				}
			case "hostpci":
				if n <= 15 {
					return ""
				}
			}
		}
		return "invalid boot device '" + s + "'\n"
	},
	"pve-qm-bootdisk": func(s string) string {
		if !rxDriveName.MatchString(s) {
			return "invalid boot disk '" + s + "'\n"
		}
		return ""
	},
	"pve-poolid": func(s string) string {
		if !rxPoolID.MatchString(s) {
			return "invalid pool ID '" + s + "'\n"
		}
		return ""
	},
	"pve-storage-content": func(s string) string {
		if !storageContentTypes[s] {
			return "invalid content type '" + s + "'\n"
		}
		return ""
	},
	"pve-hotplug-features": func(s string) string {
		if s == "0" || s == "1" {
			return ""
		}
		for _, f := range strings.Split(s, ",") {
			if !hotplugFeatures[f] {
				return "invalid hotplug feature '" + f + "'\n"
			}
		}
		return ""
	},
	"pve-ha-resource-or-vm-id": func(s string) string {
		if !rxHAResID.MatchString(s) {
			return "unable to parse HA resource id '" + s + "'\n"
		}
		return ""
	},
	"pve-cpuset": func(s string) string {
		if !rxCpuset.MatchString(s) {
			return "unable to parse cpuset option\n"
		}
		return ""
	},
}
