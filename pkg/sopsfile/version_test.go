package sopsfile

import (
	"testing"

	"github.com/getsops/sops/v3/version"
)

// TestSOPSVersionIsTheLibrarys: the version written into every file's metadata is the one the
// sops library states itself (a constant, see sopsVersion).
func TestSOPSVersionIsTheLibrarys(t *testing.T) {
	if got := sopsVersion; got != version.Version {
		t.Errorf("sopsVersion = %q, the sops library says %q", got, version.Version)
	}
}
