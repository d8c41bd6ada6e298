package capi

import (
	"fmt"
	"strings"
)

// Longhorn is what the export needs of the cluster's Longhorn, rendered by talforge.
type Longhorn struct {
	// Version and RepoURL of the chart.
	Version, RepoURL string
	// Values are the Helm values talforge installs with; Manifests the objects it applies
	// after the chart (the namespace, recurring jobs, storage classes).
	Values, Manifests []byte
	// Credentials is the S3 credential Secret's manifest (nil without backups): it goes only
	// into the encrypted Secrets.
	Credentials []byte
}

// API groups of the add-on objects: Cluster API's ClusterResourceSet (core, v1beta2 in
// v1.13) and the Helm add-on provider's HelmChartProxy (CAAPH v1alpha1).
const (
	resourceSetAPI = "addons.cluster.x-k8s.io/v1beta2"
	helmProxyAPI   = "addons.cluster.x-k8s.io/v1alpha1"
	// resourceSetSecretType is the only Secret type a ClusterResourceSet takes
	// (api/addons/v1beta2 ClusterResourceSetSecretType).
	resourceSetSecretType = "addons.cluster.x-k8s.io/resource-set"
)

// longhorn adds Longhorn for the workload cluster: a HelmChartProxy with talforge's chart
// version and values (CAAPH api/v1alpha1 HelmChartProxySpec; no atomic, hooks kept, as
// talforge installs it), and a ClusterResourceSet with talforge's manifests in a ConfigMap
// and the S3 credential Secret in a resource-set Secret, which joins the encrypted Secrets.
func (b *builder) longhorn(l *Longhorn) error {
	name := b.c.Metadata.Name
	selector := map[string]any{"matchLabels": map[string]any{ClusterNameLabel: name}}

	if strings.Contains(string(l.Values), "{{") {
		// CAAPH renders valuesTemplate as a Go template.
		return fmt.Errorf("longhorn values hold %q, which the Helm add-on provider would read as a template", "{{")
	}

	repo := l.RepoURL
	if repo == "" {
		repo = "https://charts.longhorn.io"
	}

	proxy := Object{APIVersion: helmProxyAPI, Kind: "HelmChartProxy", Metadata: b.meta(name + "-longhorn"), Spec: map[string]any{
		"clusterSelector":   selector,
		"repoURL":           repo,
		"chartName":         "longhorn",
		"releaseName":       "longhorn",
		"namespace":         "longhorn-system",
		"version":           l.Version,
		"valuesTemplate":    string(l.Values),
		"reconcileStrategy": "Continuous",
		"options":           map[string]any{"wait": true, "waitForJobs": true, "timeout": "15m0s"},
	}}

	manifests := Object{APIVersion: "v1", Kind: "ConfigMap", Metadata: b.meta(name + "-longhorn-manifests"),
		Data: map[string]string{"manifests.yaml": string(l.Manifests)}}

	resources := []any{map[string]any{"kind": "ConfigMap", "name": manifests.Metadata.Name}}

	if l.Credentials != nil {
		secret := Object{APIVersion: "v1", Kind: "Secret", Type: resourceSetSecretType, Metadata: b.meta(name + "-longhorn-credentials"),
			StringData: map[string]string{"credentials.yaml": string(l.Credentials)}}
		b.out.Secrets = append(b.out.Secrets, secret)
		resources = append(resources, map[string]any{"kind": "Secret", "name": secret.Metadata.Name})
	}

	set := Object{APIVersion: resourceSetAPI, Kind: "ClusterResourceSet", Metadata: b.meta(name + "-longhorn"), Spec: map[string]any{
		"clusterSelector": selector,
		"resources":       resources,
		"strategy":        "Reconcile",
	}}

	b.out.Objects = append(b.out.Objects, proxy, manifests, set)
	b.out.Notes = append(b.out.Notes, "Longhorn: install the Helm add-on provider (CAAPH); deleting the HelmChartProxy uninstalls Longhorn and with it every volume's data, which talforge itself never does")

	return nil
}
