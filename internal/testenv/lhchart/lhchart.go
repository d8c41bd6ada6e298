package lhchart

import (
	"embed"
	"fmt"
	"io/fs"
	"strings"

	"github.com/Masterminds/semver/v3"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
)

//go:embed all:chart
var files embed.FS

// Versions are the chart versions tests publish: the latest patch of each minor that
// talforge knows (1.8.2, 1.9.2, 1.10.2, 1.11.3) plus older patches for ladder and
// patch-level cases.
var Versions = []string{"1.8.1", "1.8.2", "1.9.1", "1.9.2", "1.10.1", "1.10.2", "1.11.3"}

// Name is the chart name, as upstream.
const Name = "longhorn"

// Chart returns the test chart at version (semver without "v"; appVersion is "v"+version).
func Chart(version string) (*chart.Chart, error) {
	if _, err := semver.StrictNewVersion(version); err != nil {
		return nil, fmt.Errorf("lhchart: version %q: %w", version, err)
	}
	var bufs []*loader.BufferedFile
	err := fs.WalkDir(files, "chart", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := strings.CutPrefix(p, "chart/")
		bufs = append(bufs, &loader.BufferedFile{Name: rel, Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lhchart: read embedded chart: %w", err)
	}
	ch, err := loader.LoadFiles(bufs)
	if err != nil {
		return nil, fmt.Errorf("lhchart: load chart: %w", err)
	}
	ch.Metadata.Version = version
	ch.Metadata.AppVersion = "v" + version
	if err := ch.Validate(); err != nil {
		return nil, fmt.Errorf("lhchart: chart %s: %w", version, err)
	}
	return ch, nil
}

// Package writes longhorn-<version>.tgz into dir with Helm's own packager and returns its path.
func Package(version, dir string) (string, error) {
	ch, err := Chart(version)
	if err != nil {
		return "", err
	}
	p, err := chartutil.Save(ch, dir)
	if err != nil {
		return "", fmt.Errorf("lhchart: package %s: %w", version, err)
	}
	return p, nil
}
