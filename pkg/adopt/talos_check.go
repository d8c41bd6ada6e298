package adopt

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"

	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/talospatch"
)

// Check renders every node of c (a profile loaded from disk, with the patch files written) with
// talforge's own pipeline and the imported bundle, and compares each node's config with its
// live config as data: both decoded, documents matched by apiVersion, kind and name, compared
// value by value. Nothing is ignored: a live config read through the API is the config the
// node was given (Talos fills nothing into it at runtime), so any difference is a difference.
// It returns one redacted diff per node that differs; a node of the import that the profile
// lacks, or the other way round, is an error.
func (t *TalosImport) Check(ctx context.Context, c *profile.Cluster) ([]NodeDiff, error) {
	r, err := generate.Render(ctx, c, t.Bundle, nil)
	if err != nil {
		return nil, fmt.Errorf("render the imported profile: %w", err)
	}

	var diffs []NodeDiff

	seen := map[string]bool{}

	for _, cfg := range r.Configs {
		name := cfg.Node.Name
		seen[name] = true

		raw, ok := t.Live[name]
		if !ok {
			return nil, fmt.Errorf("node %s is in the profile but was not imported", name)
		}

		live, err := configloader.NewFromBytes(raw)
		if err != nil {
			return nil, fmt.Errorf("node %s: its live config: %w", name, err)
		}

		d, err := nodeDiff(live, cfg.Provider)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", name, err)
		}

		if d != "" {
			diffs = append(diffs, NodeDiff{Node: name, Diff: d})
		}
	}

	for name := range t.Live {
		if !seen[name] {
			return nil, fmt.Errorf("node %s was imported but the profile has no such node", name)
		}
	}

	slices.SortFunc(diffs, func(a, b NodeDiff) int { return strings.Compare(a.Node, b.Node) })

	return diffs, nil
}

// nodeDiff compares two configs as data and, when they differ, returns the redacted diff of
// their documents in a common order ("" when they are equal).
func nodeDiff(live, rendered config.Provider) (string, error) {
	ld, err := talospatch.Decode(live)
	if err != nil {
		return "", err
	}

	rd, err := talospatch.Decode(rendered)
	if err != nil {
		return "", err
	}

	if sameDocs(ld, rd) {
		return "", nil
	}

	// The decision is made on the data above; the diff text only shows it, redacted
	// (bootstrap.RedactedDiff: package redact's allow-list, then a leak check).
	changed, diff, err := bootstrap.RedactedDiff(live, rendered)
	if err != nil {
		return "", err
	}

	if !changed {
		// Only the order of documents or of keys differs in the encodings, not the data.
		return "(the documents are equal as data, but machinery encodes them differently)\n", nil
	}

	return strings.Replace(diff, "+++ desired", "+++ rendered", 1), nil
}

// sameDocs compares two configs' documents by identity and value.
func sameDocs(a, b []talospatch.Document) bool {
	if len(a) != len(b) {
		return false
	}

	index := map[talospatch.DocKey]map[string]any{}
	for _, d := range a {
		index[d.Key] = d.Data
	}

	for _, d := range b {
		other, ok := index[d.Key]
		if !ok || !reflect.DeepEqual(other, d.Data) {
			return false
		}
	}

	return true
}
