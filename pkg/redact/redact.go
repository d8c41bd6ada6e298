package redact

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	yaml "go.yaml.in/yaml/v4"
)

// Marker replaces every value that is not shown.
const Marker = "******"

// Config encodes cfg as machinery does (no comments), with machinery's own redaction of the
// fields it knows to be secret first, then YAML's allow-list redaction.
func Config(cfg config.Provider) ([]byte, error) {
	data, err := cfg.RedactSecrets(Marker).EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
	if err != nil {
		return nil, fmt.Errorf("encoding the config: %w", err)
	}

	return YAML(data)
}

// YAML redacts the documents of a machine config as machinery encodes it (the v1alpha1
// document and multi-document configs, separated by "---"): every scalar value whose field is
// not on the allow-list of its document's kind becomes Marker; keys, structure, booleans, nulls
// and empty strings stay. The output is deterministic and, for a config with nothing to
// redact, byte-identical to its input, because it is re-encoded with the YAML library and
// settings machinery encodes with (go.yaml.in/yaml/v4, yaml.Marshal: see machinery's
// config/encoder/encoder.go, Encode with comments disabled).
func YAML(data []byte) ([]byte, error) { return redactStream(data, docAllowList) }

// redactStream redacts every document of data with the allow-list allow picks for it.
func redactStream(data []byte, allow func(doc *yaml.Node) *trie) ([]byte, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))

	var out bytes.Buffer

	for i := 0; ; i++ {
		var doc yaml.Node

		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out.Bytes(), nil
		}

		if err != nil {
			return nil, fmt.Errorf("redacting document %d: %w", i+1, err)
		}

		redactNode(&doc, allow(&doc))

		b, err := yaml.Marshal(&doc)
		if err != nil {
			return nil, fmt.Errorf("redacting document %d: %w", i+1, err)
		}

		if i > 0 {
			out.WriteString("---\n")
		}

		out.Write(b)
	}
}

// docAllowList returns the allow-list of a document: the v1alpha1 one for a document without
// a kind (machinery encodes v1alpha1 without apiVersion and kind), the kind's own otherwise.
func docAllowList(doc *yaml.Node) *trie {
	root := doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}

	if root.Kind != yaml.MappingNode {
		return nil
	}

	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "kind" {
			if t, ok := kinds()[root.Content[i+1].Value]; ok {
				return t
			}

			return unknownKind()
		}
	}

	return v1alpha1Doc()
}

// redactNode walks n with t, the allow-list node for n's path (nil: nothing below is shown).
func redactNode(n *yaml.Node, t *trie) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			redactNode(c, t)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			redactNode(n.Content[i+1], t.key(n.Content[i].Value))
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			redactNode(c, t.elem())
		}
	case yaml.ScalarNode:
		if !shown(n, t) {
			n.Value, n.Tag, n.Style = Marker, "!!str", 0
		}
	case yaml.AliasNode:
		// The anchored node is redacted where it is defined; machinery never emits aliases.
	}
}

// shown reports whether a scalar stays in clear.
func shown(n *yaml.Node, t *trie) bool {
	switch n.ShortTag() {
	case "!!bool", "!!null":
		return true
	}

	if n.Value == "" || n.Value == Marker {
		return true
	}

	return t != nil && t.leaf && safeValue(n.Value)
}

// safeValue rejects values of allow-listed fields that carry a credential anyway: a URL with
// user info (https://user:pass@host), a query or a fragment (tokens are passed there), and
// private keys, in PEM or base64-wrapped PEM (as Talos stores its CAs).
func safeValue(v string) bool {
	if strings.Contains(v, "://") {
		u, err := url.Parse(strings.TrimSpace(v))
		if err != nil || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
			return false
		}
	}

	if strings.Contains(v, "PRIVATE KEY") {
		return false
	}

	if strings.HasPrefix(v, "LS0tLS1CRUdJTi") { // base64 of "-----BEGIN"
		dec, err := base64.StdEncoding.DecodeString(v)
		if err != nil || bytes.Contains(dec, []byte("PRIVATE KEY")) {
			return false
		}
	}

	return true
}

// trie is an allow-list compiled for walking: each node is one path element.
type trie struct {
	keys map[string]*trie
	// anyKey matches every key of a map ("*").
	anyKey *trie
	// item matches every element of a sequence ("[]").
	item *trie
	// leaf: a scalar here is shown.
	leaf bool
}

func (t *trie) key(k string) *trie {
	if t == nil {
		return nil
	}

	if c, ok := t.keys[k]; ok {
		return c
	}

	return t.anyKey
}

func (t *trie) elem() *trie {
	if t == nil {
		return nil
	}

	return t.item
}

// compile builds a trie from patterns: dot-separated keys, "*" for any key, "[]" after a key
// for the elements of its sequence, and one or more {a,b} groups that expand to a pattern
// per alternative ("a.{b,c[]}.d" is "a.b.d" and "a.c[].d").
func compile(patterns ...string) *trie {
	root := &trie{}

	for _, p := range patterns {
		for _, path := range expand(p) {
			root.add(path)
		}
	}

	return root
}

func (t *trie) add(path string) {
	n := t

	for _, part := range strings.Split(path, ".") {
		name, items := part, 0
		for strings.HasSuffix(name, "[]") {
			name, items = strings.TrimSuffix(name, "[]"), items+1
		}

		switch name {
		case "":
			panic("redact: empty element in allow-list pattern " + path)
		case "*":
			if n.anyKey == nil {
				n.anyKey = &trie{}
			}

			n = n.anyKey
		default:
			if n.keys == nil {
				n.keys = map[string]*trie{}
			}

			if n.keys[name] == nil {
				n.keys[name] = &trie{}
			}

			n = n.keys[name]
		}

		for range items {
			if n.item == nil {
				n.item = &trie{}
			}

			n = n.item
		}
	}

	n.leaf = true
}

// expand expands the {a,b} groups of a pattern, left to right.
func expand(p string) []string {
	open := strings.IndexByte(p, '{')
	if open < 0 {
		return []string{p}
	}

	end := strings.IndexByte(p[open:], '}')
	if end < 0 {
		panic("redact: unbalanced { in allow-list pattern " + p)
	}

	end += open

	var out []string

	for _, alt := range strings.Split(p[open+1:end], ",") {
		out = append(out, expand(p[:open]+alt+p[end+1:])...)
	}

	return out
}
