package machineconfig

import (
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/siderolabs/talos/pkg/machinery/config"
	configconfig "github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
)

// Encoding a node's config (machinery's encoder over yaml v4) was two thirds of the time to
// render it, and most of its documents are the same on many nodes by construction. A document
// of a rendered config is the fold of the patches that reach it over the base config's document
// of the same apiVersion, kind and name:
//
//   - configpatcher.StrategicMerge (config/configpatcher/strategic.go) merges a patch document
//     into the document with its (apiVersion, kind, name), appends it when there is none, and
//     deletes that document for a delete selector; no other document changes;
//   - a JSON6902 patch changes the v1alpha1 document (applyJSON6902), or the config's only
//     document (configpatcher.Apply).
//
// So nodes with the same base config (role, install disk) whose patches reaching a document are
// the same patch objects in the same order have that document byte for byte the same, and they
// share one encoding of it. A node's own patches (the built-in hostname, links, resolvers, VIP)
// make the documents they reach the node's own. Which patches reach a document is over-counted,
// never under-counted: a patch reaches every document of a kind it has, and a JSON6902 patch
// every document.

// sharedEncodings holds the encoded documents of one Generator.
type sharedEncodings struct {
	mu    sync.Mutex
	byKey map[documentKey]*sharedEncoding
}

type sharedEncoding struct {
	once sync.Once
	data []byte
	err  error
}

// get returns the encoding stored under key, encoding it once.
func (s *sharedEncodings) get(key documentKey, encode func() ([]byte, error)) ([]byte, error) {
	s.mu.Lock()

	if s.byKey == nil {
		s.byKey = map[documentKey]*sharedEncoding{}
	}

	e, ok := s.byKey[key]
	if !ok {
		e = &sharedEncoding{}
		s.byKey[key] = e
	}

	s.mu.Unlock()

	e.once.Do(func() { e.data, e.err = encode() })

	return e.data, e.err
}

// reach is what documents a patch can change.
type reach struct {
	every bool     // a JSON6902 patch
	kinds []string // the kinds of a strategic merge patch's documents and delete selectors
}

func reachOf(p configpatcher.Patch) reach {
	sm, ok := p.(configpatcher.StrategicMergePatch)
	if !ok { // a jsonpatch.Patch
		return reach{every: true}
	}

	var r reach

	for _, d := range sm.Documents() {
		if !slices.Contains(r.kinds, d.Kind()) {
			r.kinds = append(r.kinds, d.Kind())
		}
	}

	return r
}

func (r reach) reaches(d configconfig.Document) bool {
	return r.every || slices.Contains(r.kinds, d.Kind())
}

// documentKey names a document of a rendered config: its base config, its identity, and the
// shared patches that reach it, in order (each length-prefixed).
type documentKey struct {
	base                   baseKey
	apiVersion, kind, name string
	patches                string
}

// keyOf is the documentKey of document d of a node with base config k and patches; ok is false
// when a patch made for this node alone reaches d.
func keyOf(k baseKey, d configconfig.Document, patches []namedPatch) (key documentKey, ok bool) {
	key = documentKey{base: k, apiVersion: d.APIVersion(), kind: d.Kind()}

	if named, isNamed := d.(configconfig.NamedDocument); isNamed {
		key.name = named.Name()
	}

	var b strings.Builder

	for _, p := range patches {
		if !p.reach.reaches(d) {
			continue
		}

		if p.shareKey == "" {
			return documentKey{}, false
		}

		b.WriteString(strconv.Itoa(len(p.shareKey)))
		b.WriteByte(':')
		b.WriteString(p.shareKey)
	}

	key.patches = b.String()

	return key, true
}

// encode is cfg.EncodeBytes without comments, with the documents nodes share encoded once. It
// writes what container.encodeToBuf writes: the v1alpha1 document, then every other document
// in order, each after "---\n".
func (g *Generator) encode(cfg config.Provider, k baseKey, patches []namedPatch) ([]byte, error) {
	withoutComments := encoder.WithComments(encoder.CommentsDisabled)

	// container.Documents lists delete selectors for the v1alpha1 document before it, where
	// encodeToBuf has them after; a rendered config has no selectors, and one that had is
	// encoded by machinery alone.
	docs := cfg.Documents()
	for _, d := range docs {
		if _, ok := d.(configloader.Selector); ok {
			return cfg.EncodeBytes(withoutComments)
		}
	}

	encoded := make([][]byte, len(docs))
	size := 0

	for i, d := range docs {
		encode := func() ([]byte, error) { return encoder.NewEncoder(d, withoutComments).Encode() }

		var err error

		if key, ok := keyOf(k, d, patches); ok {
			encoded[i], err = g.encodings.get(key, encode)
		} else {
			encoded[i], err = encode()
		}

		if err != nil {
			return nil, err
		}

		size += len("---\n") + len(encoded[i])
	}

	out := make([]byte, 0, size)

	for _, b := range encoded {
		if len(out) > 0 {
			out = append(out, "---\n"...)
		}

		out = append(out, b...)
	}

	return out, nil
}
