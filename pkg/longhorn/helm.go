package longhorn

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/repo"
	"helm.sh/helm/v3/pkg/storage/driver"

	"github.com/talforge/talforge/pkg/atomicfile"
)

// skipOpenAPIValidation turns off Helm's "OpenAPI validation", which checks nothing against an
// apiserver of any supported Kubernetes version: Helm asks kubectl's validator with the Strict
// directive, and that validator skips the client-side check whenever the server supports
// server-side field validation (k8s.io/kubectl pkg/validation, paramVerifyingSchema); all it
// does is fetch the cluster's OpenAPI v3 documents to find that out, right after the cluster
// answers, on the critical path of `up` (issue 16: a third of Helm's own time on a fresh
// cluster). The apiserver still decodes and validates every object Helm creates.
const skipOpenAPIValidation = true

// helmOps runs Helm actions for the Longhorn release. It never uninstalls, never uses
// Atomic (a failed install would then be uninstalled, hooks and all) and never disables
// hooks (Longhorn's pre-upgrade check is a hook).
type helmOps struct {
	cfg      *action.Configuration
	getters  getter.Providers
	repoURL  string
	cacheDir string
	timeout  time.Duration
}

func newHelmOps(g *kubeGetter, repoURL, cacheDir string, timeout time.Duration, debug func(string, ...any)) (*helmOps, error) {
	cfg := new(action.Configuration)
	if err := cfg.Init(g, Namespace, "secret", debug); err != nil {
		return nil, fmt.Errorf("helm: %w", err)
	}
	return &helmOps{cfg: cfg, getters: getter.All(cli.New()), repoURL: repoURL, cacheDir: cacheDir, timeout: timeout}, nil
}

// lastRelease returns the newest revision of the release whatever its state, or nil when
// there is none.
func (h *helmOps) lastRelease() (*release.Release, error) {
	rel, err := h.cfg.Releases.Last(ReleaseName)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read Helm release %s/%s: %w", Namespace, ReleaseName, err)
	}
	return rel, nil
}

// install is `helm install` (no --atomic, no --wait, hooks on). takeOwnership adopts
// Longhorn objects left by a release whose record was lost.
func (h *helmOps) install(ctx context.Context, ch *chart.Chart, vals map[string]any, takeOwnership bool) (*release.Release, error) {
	in := action.NewInstall(h.cfg)
	in.ReleaseName, in.Namespace = ReleaseName, Namespace
	in.Timeout = h.timeout
	in.Atomic, in.DisableHooks, in.Wait, in.WaitForJobs = false, false, false, false
	in.CreateNamespace = false // talforge creates it, with the Pod Security labels
	in.TakeOwnership = takeOwnership
	in.DisableOpenAPIValidation = skipOpenAPIValidation
	return in.RunWithContext(ctx, ch, vals)
}

// upgrade is `helm upgrade` with exactly vals (no reuse of older values).
func (h *helmOps) upgrade(ctx context.Context, ch *chart.Chart, vals map[string]any) (*release.Release, error) {
	up := action.NewUpgrade(h.cfg)
	up.Namespace = Namespace
	up.Timeout = h.timeout
	up.Atomic, up.DisableHooks, up.Wait, up.WaitForJobs, up.CleanupOnFail = false, false, false, false, false
	up.ResetValues = true
	up.MaxHistory = 10
	up.DisableOpenAPIValidation = skipOpenAPIValidation
	return up.RunWithContext(ctx, ReleaseName, ch, vals)
}

// sameValues compares values as Helm stores them (JSON round trip: ints become floats).
func sameValues(a, b map[string]any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	if errA != nil || errB != nil {
		return false
	}
	var na, nb any
	if json.Unmarshal(ja, &na) != nil || json.Unmarshal(jb, &nb) != nil {
		return false
	}
	ca, _ := json.Marshal(na)
	cb, _ := json.Marshal(nb)
	return bytes.Equal(ca, cb)
}

// chartResult is what chartAsync delivers.
type chartResult struct {
	chart *chart.Chart
	err   error
}

// chartAsync is chart in the background: its one result arrives on the returned channel.
func (h *helmOps) chartAsync(version string) <-chan chartResult {
	out := make(chan chartResult, 1)
	go func() {
		ch, err := h.chart(version)
		out <- chartResult{chart: ch, err: err}
	}()
	return out
}

// chart returns the Longhorn chart at version from the repository, through the chart
// cache: <cacheDir>/<repo key>/longhorn-<version>.tgz, verified against the index digest
// when downloaded, reused without any network access afterwards.
func (h *helmOps) chart(version string) (*chart.Chart, error) {
	dir := filepath.Join(h.cacheDir, repoKey(h.repoURL))
	path := filepath.Join(dir, fmt.Sprintf("%s-%s.tgz", ChartName, version))
	if ch, err := loader.Load(path); err == nil && ch.Name() == ChartName && ch.Metadata.Version == version {
		return ch, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("chart cache %s: %w", dir, err)
	}
	cr, err := repo.NewChartRepository(&repo.Entry{Name: "talforge-longhorn", URL: h.repoURL}, h.getters)
	if err != nil {
		return nil, fmt.Errorf("chart repository %s: %w", h.repoURL, err)
	}
	cr.CachePath = dir
	indexPath, err := cr.DownloadIndexFile()
	if err != nil {
		return nil, fmt.Errorf("chart repository %s: %w (set longhorn.repoURL to a reachable mirror, or pre-fill the chart cache %s)", h.repoURL, err, dir)
	}
	idx, err := repo.LoadIndexFile(indexPath)
	if err != nil {
		return nil, fmt.Errorf("chart repository %s: index: %w", h.repoURL, err)
	}
	cv, err := idx.Get(ChartName, version)
	if err != nil || len(cv.URLs) == 0 {
		return nil, fmt.Errorf("chart repository %s has no %s chart %s", h.repoURL, ChartName, version)
	}
	chartURL, err := repo.ResolveReferenceURL(h.repoURL, cv.URLs[0])
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(chartURL)
	if err != nil {
		return nil, err
	}
	g, err := h.getters.ByScheme(u.Scheme)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", chartURL, err)
	}
	buf, err := g.Get(chartURL, getter.WithURL(h.repoURL), getter.WithTimeout(5*time.Minute))
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", chartURL, err)
	}
	data := buf.Bytes()
	if cv.Digest != "" {
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != cv.Digest {
			return nil, fmt.Errorf("download %s: sha256 %s does not match the index digest %s", chartURL, got, cv.Digest)
		}
	}
	ch, err := loader.LoadArchive(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("download %s: not a chart: %w", chartURL, err)
	}
	if ch.Name() != ChartName || ch.Metadata.Version != version {
		return nil, fmt.Errorf("download %s: got chart %s %s, want %s %s", chartURL, ch.Name(), ch.Metadata.Version, ChartName, version)
	}
	if err := atomicfile.Write(path, data, 0o644); err != nil {
		return nil, fmt.Errorf("chart cache: %w", err)
	}
	return ch, nil
}

// repoKey names a repository's cache directory: readable host plus a hash of the full URL.
func repoKey(repoURL string) string {
	sum := sha256.Sum256([]byte(repoURL))
	host := "repo"
	if u, err := url.Parse(repoURL); err == nil && u.Host != "" {
		host = u.Hostname()
	}
	return host + "-" + hex.EncodeToString(sum[:6])
}
