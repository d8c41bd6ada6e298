// Package talospatch turns the difference between two Talos machine configs into
// strategic-merge patches that machinery's configpatcher carries out exactly: a data diff of
// the configs' documents as operations, and the patch files that hold them. talforge uses it
// to say what a hand-made node runs beyond what talforge renders (import) and what another
// tool's base config needs to become talforge's (Cluster API export).
//
// Machinery's merge rules (config/merge/merge.go, v1.14.1): maps and structs merge key by key,
// scalars are replaced unless the patch's value is the zero value (false is always merged),
// lists are appended to (or replaced where the field is tagged merge:"replace", or merged
// element-wise where the type has its own Merge, e.g. v1alpha1.NetworkDeviceList). A patch
// cannot set a scalar back to its zero value nor shorten a list; what it can do is delete:
// "$patch: delete" on a key removes it, on a document removes the document
// (configloader/internal/decoder/delete.go). Deletes are applied before the merge of the
// YAML document that holds them, and a deleted key cannot be set again in the same document;
// patches are loaded without validation, which allows the same document twice
// (configloader.go: noValidation → allowDuplicates). So every changed list, and every value
// that must become zero, is written as a delete document followed by a set document: the
// result is the live value whatever merge rule the field follows. Keys are never deleted
// inside a list element (decoder.ensureNoSeqInChain refuses that): lists are replaced whole.
package talospatch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"gopkg.in/yaml.v3"
)

// DocKey identifies a document of a machine config the way configpatcher.StrategicMerge
// matches documents: apiVersion, kind and (for named documents) name. The v1alpha1 document
// has no apiVersion and the kind "v1alpha1".
type DocKey struct {
	APIVersion, Kind, Name string
}

func (k DocKey) String() string {
	if k.Legacy() {
		return "v1alpha1"
	}

	s := k.APIVersion + "/" + k.Kind
	if k.Name != "" {
		s += "/" + k.Name
	}

	return s
}

func (k DocKey) Legacy() bool { return k.APIVersion == "" && k.Kind == "v1alpha1" }

// identity is the document's own keys that name it in a patch.
func (k DocKey) identity() []string {
	if k.Legacy() {
		return nil
	}

	return []string{"apiVersion", k.APIVersion, "kind", k.Kind, "name", k.Name}
}

// Document is one decoded document of a config, as data.
type Document struct {
	Key  DocKey
	Data map[string]any
}

// Decode decodes a config's encoding into its documents, in order. Comments and layout
// are gone: what remains is the data machinery reads.
func Decode(cfg config.Provider) ([]Document, error) {
	raw, err := cfg.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}

	return DecodeYAML(raw)
}

func DecodeYAML(raw []byte) ([]Document, error) {
	dec := yaml.NewDecoder(bytes.NewReader(raw))

	var docs []Document

	for {
		var m map[string]any

		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}

		if err != nil {
			return nil, fmt.Errorf("decode config: %w", err)
		}

		if m == nil {
			continue
		}

		docs = append(docs, Document{Key: keyOf(m), Data: m})
	}
}

func keyOf(m map[string]any) DocKey {
	str := func(k string) string { s, _ := m[k].(string); return s }

	if str("kind") == "" {
		return DocKey{Kind: "v1alpha1"}
	}

	return DocKey{APIVersion: str("apiVersion"), Kind: str("kind"), Name: str("name")}
}

type OpKind int

const (
	// OpSet merges a value in at the path (the path may not exist yet).
	OpSet OpKind = iota
	// OpDelete removes the key at the path.
	OpDelete
	// OpReplace removes the key at the path and then sets the value.
	OpReplace
	// OpDeleteDoc removes the document.
	OpDeleteDoc
	// OpAddDoc adds the document with only its identity; its fields come as opSets.
	OpAddDoc
)

// Op is one change to a rendered config, at a path of map keys inside one document.
type Op struct {
	Doc   DocKey
	Path  []string
	Kind  OpKind
	Value any
}

// ID is the op's identity for factoring: the same change, with the same value, on the same
// path of the same document.
func (o Op) ID() string {
	v, _ := yaml.Marshal(o.Value) // values come from decoded YAML: they encode
	return fmt.Sprintf("%s\x00%s\x00%d\x00%s", o.Doc, strings.Join(o.Path, "\x00"), o.Kind, v)
}

// Diff lists the ops that turn the rendered documents into the live ones.
func Diff(rendered, live []Document) []Op {
	var ops []Op

	rIndex := map[DocKey]map[string]any{}
	for _, d := range rendered {
		rIndex[d.Key] = d.Data
	}

	lKeys := map[DocKey]bool{}

	for _, l := range live {
		lKeys[l.Key] = true

		r, ok := rIndex[l.Key]
		if !ok {
			ops = append(ops, Op{Doc: l.Key, Kind: OpAddDoc})
			ops = append(ops, setTree(l.Key, nil, without(l.Data, l.Key))...)

			continue
		}

		ops = append(ops, diffMaps(l.Key, nil, without(r, l.Key), without(l.Data, l.Key))...)
	}

	for _, r := range rendered {
		if !lKeys[r.Key] {
			ops = append(ops, Op{Doc: r.Key, Kind: OpDeleteDoc})
		}
	}

	return ops
}

// without drops the identity keys of a document: they are not data to patch.
func without(m map[string]any, k DocKey) map[string]any {
	out := make(map[string]any, len(m))

	for key, v := range m {
		switch {
		case !k.Legacy() && (key == "apiVersion" || key == "kind" || key == "name"):
		default:
			out[key] = v
		}
	}

	return out
}

func child(path []string, k string) []string { return append(slices.Clone(path), k) }

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}

	slices.Sort(keys)

	return keys
}

func diffMaps(doc DocKey, path []string, r, l map[string]any) []Op {
	var ops []Op

	for _, k := range sortedKeys(l) {
		rv, ok := r[k]
		if !ok {
			ops = append(ops, setTree(doc, child(path, k), l[k])...)

			continue
		}

		ops = append(ops, diffValues(doc, child(path, k), rv, l[k])...)
	}

	for _, k := range sortedKeys(r) {
		if _, ok := l[k]; !ok {
			ops = append(ops, Op{Doc: doc, Path: child(path, k), Kind: OpDelete})
		}
	}

	return ops
}

func diffValues(doc DocKey, path []string, r, l any) []Op {
	if reflect.DeepEqual(r, l) {
		return nil
	}

	rm, rIsMap := r.(map[string]any)
	lm, lIsMap := l.(map[string]any)

	switch {
	case rIsMap && lIsMap:
		return diffMaps(doc, path, rm, lm)
	case isZero(l):
		// Merging a zero value changes nothing; deleting the key leaves the field zero.
		return []Op{{Doc: doc, Path: path, Kind: OpDelete}}
	case !rIsMap && !lIsMap && isScalar(r) && isScalar(l):
		return []Op{{Doc: doc, Path: path, Kind: OpSet, Value: l}}
	default:
		// A list (appended to by merge) or a change of shape: replace it whole.
		return []Op{{Doc: doc, Path: path, Kind: OpReplace, Value: l}}
	}
}

// setTree sets a value the rendered config lacks, map by map down to its leaves, so that
// nodes sharing part of a subtree share that part's patch.
func setTree(doc DocKey, path []string, v any) []Op {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 || len(path) == 0 && len(m) == 0 {
		return []Op{{Doc: doc, Path: path, Kind: OpSet, Value: v}}
	}

	var ops []Op
	for _, k := range sortedKeys(m) {
		ops = append(ops, setTree(doc, child(path, k), m[k])...)
	}

	return ops
}

func isScalar(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return false
	}

	return true
}

func isZero(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case int:
		return v == 0
	case float64:
		return v == 0
	}

	return false
}

// File encodes ops as one strategic-merge patch file: per document (in order of first
// appearance) a document of deletes, then a document of values. It returns nil for no ops.
func File(ops []Op) ([]byte, error) {
	if len(ops) == 0 {
		return nil, nil
	}

	var order []DocKey

	byDoc := map[DocKey][]Op{}

	for _, o := range ops {
		if _, ok := byDoc[o.Doc]; !ok {
			order = append(order, o.Doc)
		}

		byDoc[o.Doc] = append(byDoc[o.Doc], o)
	}

	var docs []*yaml.Node

	for _, k := range order {
		del, set := newDoc(k), newDoc(k)
		hasDel, hasSet := false, false

		for _, o := range byDoc[k] {
			switch o.Kind {
			case OpDeleteDoc:
				appendPair(del, "$patch", scalar("delete"))

				hasDel = true
			case OpAddDoc:
				hasSet = true
			case OpDelete, OpReplace:
				leaf := mappingAt(del, o.Path[:len(o.Path)-1])
				appendPair(leaf, o.Path[len(o.Path)-1], mapping("$patch", scalar("delete")))

				hasDel = true

				if o.Kind == OpDelete {
					continue
				}

				fallthrough
			case OpSet:
				var n yaml.Node
				if err := n.Encode(o.Value); err != nil {
					return nil, fmt.Errorf("encode %s %s: %w", k, strings.Join(o.Path, "."), err)
				}

				if len(o.Path) == 0 {
					return nil, fmt.Errorf("document %s: a value without a path", k)
				}

				leaf := mappingAt(set, o.Path[:len(o.Path)-1])
				appendPair(leaf, o.Path[len(o.Path)-1], &n)

				hasSet = true
			}
		}

		if hasDel {
			docs = append(docs, del)
		}

		if hasSet {
			docs = append(docs, set)
		}
	}

	var buf bytes.Buffer

	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)

	for _, d := range docs {
		if err := enc.Encode(d); err != nil {
			return nil, fmt.Errorf("encode patch: %w", err)
		}
	}

	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode patch: %w", err)
	}

	return buf.Bytes(), nil
}

func scalar(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func mapping(kv ...any) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}

	for i := 0; i+1 < len(kv); i += 2 {
		appendPair(n, kv[i].(string), kv[i+1].(*yaml.Node))
	}

	return n
}

func newDoc(k DocKey) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}

	id := k.identity()
	for i := 0; i+1 < len(id); i += 2 {
		if id[i+1] != "" {
			appendPair(n, id[i], scalar(id[i+1]))
		}
	}

	return n
}

func appendPair(m *yaml.Node, key string, v *yaml.Node) {
	m.Content = append(m.Content, scalar(key), v)
}

// mappingAt finds or makes the mapping at path below m.
func mappingAt(m *yaml.Node, path []string) *yaml.Node {
	for _, k := range path {
		var next *yaml.Node

		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == k && m.Content[i+1].Kind == yaml.MappingNode {
				next = m.Content[i+1]

				break
			}
		}

		if next == nil {
			next = &yaml.Node{Kind: yaml.MappingNode}
			appendPair(m, k, next)
		}

		m = next
	}

	return m
}
