package helmrepo

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"sync"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/repo"
)

// Repo is a running chart repository.
type Repo struct {
	// URL is the repository URL (what `helm repo add` takes).
	URL string

	srv *httptest.Server
	dir string

	mu        sync.Mutex
	downloads map[string]int // chart archive file name -> GET count
	indexGets int
	down      bool
}

// New packages charts into a fresh directory and serves it. Close stops the server and
// removes the directory.
func New(charts ...*chart.Chart) (*Repo, error) {
	dir, err := os.MkdirTemp("", "talforge-helmrepo-")
	if err != nil {
		return nil, err
	}
	r := &Repo{dir: dir, downloads: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	r.URL = r.srv.URL
	if err := r.Publish(charts...); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Start is New for a test; the repository closes when the test ends.
func Start(t testing.TB, charts ...*chart.Chart) *Repo {
	t.Helper()
	r, err := New(charts...)
	if err != nil {
		t.Fatalf("helmrepo: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

// Publish packages more charts into the repository and rewrites index.yaml.
func (r *Repo) Publish(charts ...*chart.Chart) error {
	for _, ch := range charts {
		if _, err := chartutil.Save(ch, r.dir); err != nil {
			return fmt.Errorf("helmrepo: package %s-%s: %w", ch.Name(), ch.Metadata.Version, err)
		}
	}
	idx, err := repo.IndexDirectory(r.dir, r.URL)
	if err != nil {
		return fmt.Errorf("helmrepo: index: %w", err)
	}
	idx.SortEntries()
	if err := idx.WriteFile(filepath.Join(r.dir, "index.yaml"), 0o644); err != nil {
		return fmt.Errorf("helmrepo: write index.yaml: %w", err)
	}
	return nil
}

// SetDown makes every request fail with 503 (an unreachable repository) until SetDown(false).
func (r *Repo) SetDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

// Downloads returns how often the archive of chart name at version was fetched.
func (r *Repo) Downloads(name, version string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.downloads[fmt.Sprintf("%s-%s.tgz", name, version)]
}

// IndexFetches returns how often index.yaml was fetched.
func (r *Repo) IndexFetches() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.indexGets
}

// Close stops the server and removes the packaged charts.
func (r *Repo) Close() {
	r.srv.Close()
	os.RemoveAll(r.dir)
}

func (r *Repo) serve(w http.ResponseWriter, req *http.Request) {
	name := path.Base(path.Clean(req.URL.Path))
	r.mu.Lock()
	down := r.down
	if !down && req.Method == http.MethodGet {
		switch {
		case name == "index.yaml":
			r.indexGets++
		case path.Ext(name) == ".tgz":
			r.downloads[name]++
		}
	}
	r.mu.Unlock()
	if down {
		http.Error(w, "repository down (test)", http.StatusServiceUnavailable)
		return
	}
	http.FileServer(http.Dir(r.dir)).ServeHTTP(w, req)
}
