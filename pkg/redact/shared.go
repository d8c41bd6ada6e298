package redact

import (
	"bytes"
	"sync"
)

// Shared redacts many configs that have documents in common, as the nodes of one cluster do
// (every worker's v1alpha1 document is usually the same): each distinct document is redacted
// once. Its YAML gives exactly what YAML gives for the same config. Safe for concurrent use.
type Shared struct {
	mu   sync.Mutex
	docs map[string]*sharedDoc
}

type sharedDoc struct {
	once sync.Once
	out  []byte
	err  error
}

// NewShared returns an empty Shared.
func NewShared() *Shared { return &Shared{docs: map[string]*sharedDoc{}} }

// YAML is YAML(data), with every document redacted at most once per Shared.
func (s *Shared) YAML(data []byte) ([]byte, error) {
	docs := splitDocuments(data)
	out := make([]byte, 0, len(data))

	for i, doc := range docs {
		red, err := s.document(doc)
		if err != nil {
			return nil, err
		}

		if len(red) == 0 { // a piece that holds no document (comments only): not machinery's
			return YAML(data)
		}

		if i > 0 {
			out = append(out, "---\n"...)
		}

		out = append(out, red...)
	}

	return out, nil
}

func (s *Shared) document(doc []byte) ([]byte, error) {
	s.mu.Lock()

	d, ok := s.docs[string(doc)]
	if !ok {
		d = &sharedDoc{}
		s.docs[string(doc)] = d
	}

	s.mu.Unlock()

	d.once.Do(func() { d.out, d.err = YAML(doc) })

	return d.out, d.err
}

// splitDocuments splits a config as machinery encodes it (config/container's encodeToBuf:
// each document encoded on its own, joined by "---\n") into its documents. A line that is
// exactly "---" can only be such a separator: yaml's emitter indents the content of every
// block scalar and every continuation line under its key, so no value starts a line at column
// zero with it. Anything else (a stream that does not end in a newline, a leading separator)
// is returned whole, for YAML to decode as a stream.
func splitDocuments(data []byte) [][]byte {
	if len(data) == 0 || data[len(data)-1] != '\n' || bytes.HasPrefix(data, []byte("---")) {
		return [][]byte{data}
	}

	var docs [][]byte

	for {
		i := bytes.Index(data, []byte("\n---\n"))
		if i < 0 {
			return append(docs, data)
		}

		docs = append(docs, data[:i+1])
		data = data[i+5:]
	}
}
