package bigprofile

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
)

// WriteProject writes a project into dir: patches/common.yaml (a cluster-wide TimeSyncConfig)
// and profiles/bench<n>.yaml, Text(n) with that patch. It returns the profile's path.
func WriteProject(dir string, n int) (string, error) {
	profile := filepath.Join(dir, "profiles", fmt.Sprintf("bench%d.yaml", n))

	for _, f := range []struct{ path, content string }{
		{filepath.Join(dir, "patches", "common.yaml"), "apiVersion: v1alpha1\nkind: TimeSyncConfig\nntp:\n  servers: [time.cloudflare.com]\n"},
		{profile, Text(n, "patches/common.yaml")},
	} {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			return "", err
		}

		if err := os.WriteFile(f.path, []byte(f.content), 0o644); err != nil {
			return "", err
		}
	}

	return profile, nil
}

var nameservers = regexp.MustCompile(`nameservers: \[[0-9.]+\]`)

// ChangeEveryNode rewrites the profile at path with the nameserver 10.0.0.<100+i%100>, which
// is in every node's config: a run after it with another i than the last changes every node.
func ChangeEveryNode(path string, i int) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}

	return os.WriteFile(path, nameservers.ReplaceAll(data, fmt.Appendf(nil, "nameservers: [10.0.0.%d]", 100+i%100)), 0o644)
}
