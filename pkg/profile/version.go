package profile

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// version is a parsed semantic version (major.minor.patch with an optional pre-release).
type version struct {
	Major, Minor, Patch int
	Pre                 string
}

// Compiled on first use, not at package initialisation, to keep start-up cheap (issue 16).
var semverRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?$`)
})

func parseVersion(s string) (version, error) {
	m := semverRE().FindStringSubmatch(s)
	if m == nil {
		return version{}, fmt.Errorf("%q is not a semantic version like v1.2.3", s)
	}

	var v version
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	v.Patch, _ = strconv.Atoi(m[3])
	v.Pre = m[4]

	return v, nil
}

func (v version) MajorMinor() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

func (v version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if v.Pre != "" {
		s += "-" + v.Pre
	}

	return s
}

type minor struct{ Major, Minor int }

func (m minor) String() string { return fmt.Sprintf("%d.%d", m.Major, m.Minor) }

func (m minor) less(o minor) bool {
	return m.Major < o.Major || (m.Major == o.Major && m.Minor < o.Minor)
}

type versionRange struct{ min, max minor }

func (r versionRange) contains(v version) bool {
	m := minor{v.Major, v.Minor}

	return !m.less(r.min) && !r.max.less(m)
}

func (r versionRange) String() string { return r.min.String() + ".x to " + r.max.String() + ".x" }

// withV returns s with a leading "v"; withoutV strips it. Talos and Kubernetes versions are
// written with "v", Helm chart versions without.
func withV(s string) string {
	if s == "" || strings.HasPrefix(s, "v") {
		return s
	}

	return "v" + s
}

func withoutV(s string) string { return strings.TrimPrefix(s, "v") }

// TalosContract returns the Talos minor version ("1.14") whose machine-config contract the
// profile's Talos version selects.
func (c *Cluster) TalosContract() string {
	v, err := parseVersion(c.Talos.Version)
	if err != nil {
		return ""
	}

	return v.MajorMinor()
}
