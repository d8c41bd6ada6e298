package profile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// Load reads, strictly decodes, defaults and validates the profile at path. On failure the
// error is a Problems listing everything wrong. Warnings are in the returned Cluster. Load
// cannot be cancelled: use LoadContext where a signal must stop it.
func Load(path string) (*Cluster, error) { return LoadContext(context.Background(), path) }

// LoadContext is Load, stopping with ctx's error once ctx is done. The profile and every file it
// names are bounded (MaxFileBytes, MaxYAMLNodes): a hostile input is refused, not expanded.
func LoadContext(ctx context.Context, path string) (*Cluster, error) {
	data, err := readProfile(path)
	if err != nil {
		var le *LimitError
		if errors.As(err, &le) {
			return nil, Problems{{File: path, Message: le.Message, Hint: "a profile is a few KiB: check that -p names the profile"}}
		}

		return nil, Problems{{File: path, Message: fmt.Sprintf("cannot read profile: %v", unwrapPathError(err)), Hint: "check the path given with -p/--profile"}}
	}

	return ParseContext(ctx, path, data)
}

// readProfile reads at most MaxFileBytes of the profile. Unlike the files a profile names it may
// be anything the user points -p at, a pipe included (-p <(...)).
func readProfile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	return readBounded(path, f)
}

// Parse is Load for a profile already in memory; path names it in messages and anchors
// relative paths.
func Parse(path string, data []byte) (*Cluster, error) {
	return ParseContext(context.Background(), path, data)
}

// ParseContext is Parse, stopping with ctx's error once ctx is done.
func ParseContext(ctx context.Context, path string, data []byte) (*Cluster, error) {
	if len(data) > MaxFileBytes {
		return nil, Problems{{File: path, Message: tooBig(path).Message, Hint: "a profile is a few KiB: check that -p names the profile"}}
	}

	src := &source{file: path, root: projectRoot(path), pos: map[string]Pos{}}

	root, err := decodeDocument(path, data)
	if err != nil {
		return nil, err
	}

	// Before anything walks or decodes the tree: aliases and merge keys expand on every walk.
	if err := newExpansion(path).add(root); err != nil {
		var le *LimitError
		if errors.As(err, &le) {
			return nil, Problems{{File: path, Line: le.Line, Col: le.Col, Message: le.Message, Hint: limitHint}}
		}

		return nil, err
	}

	chk := &checker{source: src, ctx: ctx, fields: map[reflect.Type]map[string]reflect.Type{}}
	structural := chk.check(root, reflect.TypeOf(Cluster{}), "")

	if err := ctx.Err(); err != nil {
		return nil, err
	}

	for _, p := range structural {
		if !p.keyProblem {
			// A value of the wrong type: the profile cannot be decoded, so stop here.
			return nil, structural.capped(path)
		}
	}

	// Unknown or repeated keys leave everything else decodable: report them together with
	// every semantic problem, so one pass fixes the profile.
	var c Cluster
	if err := root.Decode(&c); err != nil {
		if len(structural) > 0 {
			return nil, structural.capped(path) // a repeated key: yaml.v3 refuses to decode it
		}

		return nil, Problems{{File: path, Message: err.Error()}}
	}

	c.src = src
	c.normalize()
	c.applyDefaults()

	errs, warns := c.validate(ctx)
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	c.Warnings = warns.capped(path)

	if errs = append(structural, errs...); len(errs) > 0 {
		return nil, errs.capped(path)
	}

	return &c, nil
}

// Compiled on first use, not at package initialisation, to keep start-up cheap (issue 16).
var yamlLineRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`line (\d+)`) })

func decodeDocument(path string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))

	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Problems{{File: path, Message: "the profile is empty", Hint: "start from profiles/tazlab.yaml or run `talforge init NAME`"}}
		}

		p := Problem{File: path, Message: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: "), Hint: "fix the YAML syntax (indentation, quoting, ':' after keys)"}
		if m := yamlLineRE().FindStringSubmatch(err.Error()); m != nil {
			p.Line, _ = strconv.Atoi(m[1])
		}

		return nil, Problems{p}
	}

	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Problems{{File: path, Line: extra.Line, Message: "a profile holds exactly one YAML document, found another after '---'", Hint: "put each cluster in its own file under profiles/"}}
	}

	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, Problems{{File: path, Line: root.Line, Col: root.Column, Message: "expected a mapping with apiVersion, kind, metadata, network and nodes at the top level", Hint: "start from profiles/tazlab.yaml"}}
	}

	return root, nil
}

// checker walks a profile's YAML tree; the walk stops early once ctx is done.
type checker struct {
	*source
	ctx    context.Context // lives for one walk
	visits int
	// fields caches structFields: a profile repeats the same few types once per node.
	fields map[reflect.Type]map[string]reflect.Type
}

func (s *checker) structFields(t reflect.Type) map[string]reflect.Type {
	f, ok := s.fields[t]
	if !ok {
		f = structFields(t)
		s.fields[t] = f
	}

	return f
}

// check walks a YAML node against the Go type it will decode into, reporting unknown keys
// (with the closest valid key), duplicate keys and wrong scalar types with their position, and
// recording the position of every field for later semantic problems. The caller has bounded
// the tree's expansion (aliases, merge keys) with an expansion first.
func (s *checker) check(n *yaml.Node, t reflect.Type, path string) Problems {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}

	if s.visits++; s.visits%1024 == 0 && s.ctx.Err() != nil {
		return nil // the caller returns ctx's error
	}

	if _, known := s.pos[path]; path != "" && !known {
		s.pos[path] = Pos{n.Line, n.Column}
	}

	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}

	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}

	var ps Problems

	bad := func(expected, hint string) {
		ps = append(ps, Problem{File: s.file, Line: n.Line, Col: n.Column, Field: displayPath(path), Message: fmt.Sprintf("expected %s, got %s", expected, describe(n)), Hint: hint})
	}

	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			bad("a mapping of "+strings.Join(fieldNames(t), ", "), "write its fields on their own lines, indented below the key")

			return ps
		}

		fields := s.structFields(t)
		seen := map[string]int{}

		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := k.Value

			if key == "<<" && k.Tag == "!!merge" {
				// A YAML merge key (<<: *anchor): the merged mapping's keys must fit here too.
				ps = append(ps, s.checkMerge(v, t, path)...)

				continue
			}
			kpath := joinPath(path, key)

			if line, dup := seen[key]; dup {
				ps = append(ps, Problem{File: s.file, Line: k.Line, Col: k.Column, Field: displayPath(kpath), Message: fmt.Sprintf("key %q is repeated (first set at line %d)", key, line), Hint: "keep one of them", keyProblem: true})

				continue
			}

			seen[key] = k.Line

			s.pos[kpath] = Pos{k.Line, k.Column}

			ft, ok := fields[key]
			if !ok {
				ps = append(ps, Problem{File: s.file, Line: k.Line, Col: k.Column, Field: displayPath(kpath), Message: fmt.Sprintf("unknown key %q", key), Hint: suggest(key, fieldNames(t)), keyProblem: true})

				continue
			}

			ps = append(ps, s.check(v, ft, kpath)...)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			bad("a list", "write one item per line starting with '- ', or [a, b]")

			return ps
		}

		for i, item := range n.Content {
			ps = append(ps, s.check(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			bad("a mapping", "write key: value pairs indented below the key")

			return ps
		}

		for i := 0; i+1 < len(n.Content); i += 2 {
			kpath := joinPath(path, n.Content[i].Value)
			s.pos[kpath] = Pos{n.Content[i].Line, n.Content[i].Column}
			ps = append(ps, s.check(n.Content[i+1], t.Elem(), kpath)...)
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			bad("a string", "write a single value on the same line as the key")
		}
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			bad("a whole number", "write digits only, without quotes or units")
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			bad("true or false", "write true or false, without quotes")
		}
	case reflect.Interface:
		// Free-form (Helm values): anything goes, but remember where things are.
		s.recordPositions(n, path)
	default:
		panic(fmt.Sprintf("profile: unhandled field type %s", t))
	}

	return ps
}

// checkMerge checks the mappings merged in with "<<" (one alias, or a list of them) against t.
func (s *checker) checkMerge(v *yaml.Node, t reflect.Type, path string) Problems {
	for v.Kind == yaml.AliasNode {
		v = v.Alias
	}

	if v.Kind == yaml.SequenceNode {
		var ps Problems
		for _, item := range v.Content {
			ps = append(ps, s.checkMerge(item, t, path)...)
		}

		return ps
	}

	return s.check(v, t, path)
}

// recordPositions remembers the key positions of a free-form subtree.
func (s *source) recordPositions(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			kpath := joinPath(path, n.Content[i].Value)
			s.pos[kpath] = Pos{n.Content[i].Line, n.Content[i].Column}
			s.recordPositions(n.Content[i+1], kpath)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			ipath := fmt.Sprintf("%s[%d]", path, i)
			s.pos[ipath] = Pos{item.Line, item.Column}
			s.recordPositions(item, ipath)
		}
	}
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}

	switch n.Tag {
	case "!!int":
		return "the number " + n.Value
	case "!!float":
		return "the number " + n.Value
	case "!!bool":
		return n.Value
	}

	return strconv.Quote(n.Value)
}

// structFields maps the YAML keys of a struct (inline structs flattened) to their types.
func structFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}

	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}

		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")

		if name == "-" {
			continue
		}

		if strings.Contains(opts, "inline") {
			for k, v := range structFields(f.Type) {
				out[k] = v
			}

			continue
		}

		if name == "" {
			name = strings.ToLower(f.Name)
		}

		out[name] = f.Type
	}

	return out
}

func fieldNames(t reflect.Type) []string {
	var names []string
	for k := range structFields(t) {
		names = append(names, k)
	}

	sort.Strings(names)

	return names
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}

	return path + "." + key
}

func displayPath(path string) string {
	if path == "" {
		return "(top level)"
	}

	return path
}

// suggest names the valid key closest to an unknown one.
func suggest(key string, valid []string) string {
	best, bestDist := "", -1

	for _, v := range valid {
		d := levenshtein(strings.ToLower(key), strings.ToLower(v))
		if bestDist < 0 || d < bestDist {
			best, bestDist = v, d
		}
	}

	// Short keys are close to every other short key: only suggest near-identical ones.
	limit := max(2, len(key)/3)
	if len(key) <= 3 {
		limit = 1
	}

	if best != "" && bestDist <= limit {
		return fmt.Sprintf("did you mean %q?", best)
	}

	return "valid keys here: " + strings.Join(valid, ", ")
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)

	for j := range prev {
		prev[j] = j
	}

	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}

			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}

		prev, cur = cur, prev
	}

	return prev[len(b)]
}
