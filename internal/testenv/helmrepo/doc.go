// Package helmrepo serves a real Helm chart repository over HTTP for tests: charts are
// packaged with Helm's own chartutil.Save, index.yaml is written by repo.IndexDirectory,
// and the files are served by an httptest server. It counts index and chart downloads
// so tests can prove a chart cache works.
package helmrepo
