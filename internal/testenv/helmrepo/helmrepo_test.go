package helmrepo

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/repo"

	"github.com/talforge/talforge/internal/testenv/lhchart"
)

func TestRepoServesIndexAndCharts(t *testing.T) {
	var charts = []string{"1.9.2", "1.10.2"}
	r := Start(t, mustChart(t, charts[0]), mustChart(t, charts[1]))

	// Helm's own repository client resolves the chart URL from index.yaml.
	settings := cli.New()
	u, err := repo.FindChartInRepoURL(r.URL, lhchart.Name, "1.10.2", "", "", "", getter.All(settings))
	if err != nil {
		t.Fatal(err)
	}
	if want := r.URL + "/longhorn-1.10.2.tgz"; u != want {
		t.Errorf("chart URL %q, want %q", u, want)
	}
	if _, err := repo.FindChartInRepoURL(r.URL, lhchart.Name, "1.8.2", "", "", "", getter.All(settings)); err == nil {
		t.Error("unpublished version 1.8.2 was found")
	}
	if r.IndexFetches() != 2 {
		t.Errorf("index fetches = %d, want 2", r.IndexFetches())
	}

	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p := filepath.Join(t.TempDir(), "c.tgz")
	if err := os.WriteFile(p, body, 0o600); err != nil {
		t.Fatal(err)
	}
	ch, err := loader.Load(p)
	if err != nil {
		t.Fatalf("served archive does not load: %v", err)
	}
	if ch.Metadata.Version != "1.10.2" || ch.Metadata.AppVersion != "v1.10.2" {
		t.Errorf("served chart %s/%s", ch.Metadata.Version, ch.Metadata.AppVersion)
	}
	if got := r.Downloads(lhchart.Name, "1.10.2"); got != 1 {
		t.Errorf("downloads = %d, want 1", got)
	}

	// Publishing later updates the index; SetDown makes the repository unreachable.
	if err := r.Publish(mustChart(t, "1.11.3")); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.FindChartInRepoURL(r.URL, lhchart.Name, "1.11.3", "", "", "", getter.All(settings)); err != nil {
		t.Errorf("1.11.3 after Publish: %v", err)
	}
	r.SetDown(true)
	if _, err := repo.FindChartInRepoURL(r.URL, lhchart.Name, "1.11.3", "", "", "", getter.All(settings)); err == nil {
		t.Error("repository marked down still answered")
	}
}

func mustChart(t *testing.T, v string) *chart.Chart {
	t.Helper()
	ch, err := lhchart.Chart(v)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}
