package bootstrap

import (
	"fmt"
	"slices"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/config"
	configconfig "github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/config/container"
)

// inDocumentOrder returns cfg with its documents in one canonical order (the v1alpha1 document
// first, then by apiVersion, kind and name). A machine config is a set of documents: the same
// documents in another order (a config written by another tool, `talosctl gen config`) are the
// same config, and must not be applied again.
func inDocumentOrder(cfg config.Provider) (config.Provider, error) {
	docs := slices.Clone(cfg.Documents())

	key := func(d configconfig.Document) string {
		if d.Kind() == "v1alpha1" && d.APIVersion() == "" {
			return ""
		}

		k := d.APIVersion() + "/" + d.Kind()
		if n, ok := d.(configconfig.NamedDocument); ok {
			k += "/" + n.Name()
		}

		return k
	}

	if slices.IsSortedFunc(docs, func(a, b configconfig.Document) int { return strings.Compare(key(a), key(b)) }) {
		return cfg, nil
	}

	slices.SortStableFunc(docs, func(a, b configconfig.Document) int { return strings.Compare(key(a), key(b)) })

	out, err := container.New(docs...)
	if err != nil {
		return nil, fmt.Errorf("reorder documents: %w", err)
	}

	return out, nil
}
