package longhorn

import (
	"fmt"

	"helm.sh/helm/v3/pkg/action"
)

// HelmConfig is a Helm SDK configuration over a kubeconfig held in memory (never written to
// disk), the way talforge's own Helm actions are configured (helm.go newHelmOps), for any
// namespace and storage driver: pkg/adopt reads a release that a person installed with the
// helm CLI, which may live in another namespace. driver is Helm's HELM_DRIVER ("secret",
// the helm CLI's default, when empty; "configmap"); an empty namespace reads the release
// records of every namespace (action.List with AllNamespaces). debug receives Helm's debug
// lines (nil: discarded).
func HelmConfig(kubeconfig []byte, namespace, driver string, debug func(string, ...any)) (*action.Configuration, error) {
	g, err := newKubeGetter(kubeconfig, namespace)
	if err != nil {
		return nil, err
	}
	if driver == "" {
		driver = "secret"
	}
	if debug == nil {
		debug = func(string, ...any) {}
	}
	cfg := new(action.Configuration)
	if err := cfg.Init(g, namespace, driver, debug); err != nil {
		return nil, fmt.Errorf("helm: %w", err)
	}
	return cfg, nil
}
