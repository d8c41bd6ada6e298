package lhmanager

import (
	"fmt"

	"github.com/Masterminds/semver/v3"
)

// checkUpgradePath reproduces longhorn-manager's upgrade/util CheckUpgradePath rules and
// messages (v1.8.2–v1.11.3, identical): current and next are manager versions such as
// "v1.9.2". An empty current (no current-longhorn-version Setting: a fresh install)
// skips every check.
func checkUpgradePath(current, next string) error {
	if current == "" {
		return nil
	}
	nv, err := semver.NewVersion(next)
	if err != nil {
		return fmt.Errorf("failed to upgrade since upgrading version %v is not valid", next)
	}
	cv, err := semver.NewVersion(current)
	if err != nil {
		return fmt.Errorf("failed to upgrade since current version %v is not valid", current)
	}
	const v1ToV2MinorVersionNum = 30
	switch {
	case nv.Major() < cv.Major():
		return fmt.Errorf("failed to upgrade since downgrading from %v to %v for major version is not supported", current, next)
	case nv.Major() > cv.Major():
		if nv.Major()-cv.Major() > 1 {
			return fmt.Errorf("failed to upgrade since upgrading from %v to %v for major version is not supported", current, next)
		}
		if cv.Minor() < v1ToV2MinorVersionNum {
			return fmt.Errorf("failed to upgrade since upgrading major version with minor version under %v is not supported", v1ToV2MinorVersionNum)
		}
		return nil
	}
	if nv.Minor() > cv.Minor() && nv.Minor()-cv.Minor() > 1 {
		return fmt.Errorf("failed to upgrade since upgrading from %v to %v for minor version is not supported", current, next)
	}
	if nv.Minor() == cv.Minor()+1 {
		return nil
	}
	if cv.Compare(nv) > 0 {
		return fmt.Errorf("failed to upgrade since downgrading from %v to %v is not supported", current, next)
	}
	return nil
}
