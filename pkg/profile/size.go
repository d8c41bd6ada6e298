package profile

import (
	"fmt"
	"regexp"
	"strconv"
	"sync"
)

// GiB is 2^30 bytes.
const GiB = 1 << 30

// Compiled on first use, not at package initialisation, to keep start-up cheap (issue 16).
var sizeRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^([1-9][0-9]*)\s*([KMGT]?)(i?B?)$`)
})

// ParseSize parses a size like 40G, 40Gi, 40GiB or 512M. Units are binary, as in Proxmox
// (G = GiB). A bare number is bytes.
func ParseSize(s string) (uint64, error) {
	m := sizeRE().FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size like 40G", s)
	}

	n, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is too large", s)
	}

	var shift uint

	switch m[2] {
	case "K":
		shift = 10
	case "M":
		shift = 20
	case "G":
		shift = 30
	case "T":
		shift = 40
	}

	if n > (1<<63)>>shift {
		return 0, fmt.Errorf("%q is too large", s)
	}

	return n << shift, nil
}

// SizeGiB returns a disk size in whole GiB, the unit Proxmox allocates disks in.
func SizeGiB(s string) (int, error) {
	b, err := ParseSize(s)
	if err != nil {
		return 0, err
	}

	if b%GiB != 0 {
		return 0, fmt.Errorf("%q is not a whole number of GiB", s)
	}

	return int(b / GiB), nil
}
