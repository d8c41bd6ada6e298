package redact

import (
	"bytes"
	"strings"
	"testing"
)

// TestSharedIsYAML: the per-document redaction with its cache gives exactly what YAML gives,
// for every contract's generated config, every secret-bearing patch (inline manifests whose
// content holds "---" lines among them) and hand-written multi-document streams, with one
// Shared across all of them so that later configs hit documents earlier ones cached.
func TestSharedIsYAML(t *testing.T) {
	inline := `machine:
  network:
    hostname: a
cluster:
  inlineManifests:
    - name: two
      contents: |
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: a}
        ---
        apiVersion: v1
        kind: Secret
        metadata: {name: b}
        stringData: {password: hunter2-inline}
`

	inputs := map[string][]byte{
		"documents after v1alpha1":    []byte(inline + "---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostname: n1\n---\napiVersion: v1alpha1\nkind: UnknownThing\nsecret: hunter2-x\n"),
		"same v1alpha1, another name": []byte(inline + "---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostname: n2\n"),
		"leading separator":           []byte("---\n" + inline),
		"no final newline":            []byte(strings.TrimSuffix(inline, "\n")),
		"comment-only piece":          []byte(inline + "---\n# nothing\n---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostname: n3\n"),
	}

	for _, c := range contracts {
		inputs[c.talos] = encode(t, machineryConfig(t, c.talos, c.k8s))
	}

	for _, tc := range secretPatches {
		inputs["patch "+tc.name] = encode(t, machineryConfig(t, "v1.14.1", "1.37.0", tc.patch))
	}

	shared := NewShared()

	for round := range 2 {
		for name, data := range inputs {
			want, err := YAML(data)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}

			got, err := shared.YAML(data)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}

			if !bytes.Equal(got, want) {
				t.Errorf("round %d, %s: Shared.YAML differs from YAML\n got: %s\nwant: %s", round, name, got, want)
			}

			if bytes.Contains(got, []byte(canary)) {
				t.Errorf("%s: the view shows the canary", name)
			}
		}
	}

	if n := len(splitDocuments(inputs["documents after v1alpha1"])); n != 3 {
		t.Errorf("split into %d documents, want 3", n)
	}
}
