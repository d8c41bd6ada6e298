package longhorn

import (
	"fmt"
	"strings"

	"github.com/Masterminds/semver/v3"

	"github.com/talforge/talforge/pkg/profile"
)

// parseVersion accepts "1.10.2" or "v1.10.2".
func parseVersion(s string) (*semver.Version, error) {
	v, err := semver.StrictNewVersion(strings.TrimPrefix(strings.TrimSpace(s), "v"))
	if err != nil {
		return nil, fmt.Errorf("%q is not a Longhorn version (write it like 1.10.2)", s)
	}
	return v, nil
}

// supported accepts the Longhorn minors profile.LonghornLatestPatch knows: the profile
// validates against the same table, and chart values are known for these.
func supported(v *semver.Version) error {
	if _, ok := profile.LonghornLatestPatch(v.Major(), v.Minor()); !ok {
		return fmt.Errorf("version %s is outside the Longhorn versions talforge supports (%s)", v, profile.SupportedLonghorn())
	}
	return nil
}

// UpgradePath returns the chart versions to upgrade through, in order, to go from the
// installed version to target: one minor at a time, through the latest patch of every
// minor in between (1.8.x → 1.9.2 → 1.10.x). Longhorn's pre-upgrade check refuses a jump of
// more than one minor and every downgrade, patch downgrades included; UpgradePath refuses
// them first. An empty path means target is installed already.
func UpgradePath(installed, target string) ([]string, error) {
	from, err := parseVersion(installed)
	if err != nil {
		return nil, fmt.Errorf("installed version: %w", err)
	}
	to, err := parseVersion(target)
	if err != nil {
		return nil, fmt.Errorf("target version: %w", err)
	}
	if err := supported(to); err != nil {
		return nil, err
	}
	switch c := to.Compare(from); {
	case c == 0:
		return nil, nil
	case c < 0:
		return nil, fmt.Errorf("refusing to downgrade Longhorn from %s to %s: Longhorn supports no downgrade, not even of a patch "+
			"(its pre-upgrade check fails with \"failed to upgrade since downgrading from v%s to v%s is not supported\"); "+
			"keep %s, or restore volumes from backups into a new installation", from, to, from, to, from)
	case from.Major() != to.Major():
		return nil, fmt.Errorf("going from Longhorn %s to %s changes the major version, which talforge does not do", from, to)
	}
	var path []string
	for m := from.Minor() + 1; m < to.Minor(); m++ {
		p, ok := profile.LonghornLatestPatch(to.Major(), m)
		if !ok {
			return nil, fmt.Errorf("no known release of Longhorn 1.%d.x to pass through on the way from %s to %s", m, from, to)
		}
		path = append(path, p)
	}
	return append(path, to.String()), nil
}

// minorOf returns the minor of a chart version (0 when it does not parse).
func minorOf(version string) uint64 {
	v, err := parseVersion(version)
	if err != nil {
		return 0
	}
	return v.Minor()
}
