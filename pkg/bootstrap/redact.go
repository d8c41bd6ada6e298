package bootstrap

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"gopkg.in/yaml.v3"

	"github.com/talforge/talforge/pkg/redact"
)

// minSecretLen keeps short values ("true", small numbers) that happen to sit in redacted fields from being
// scrubbed out of every message.
const minSecretLen = 8

// secretStrings returns the values a config shows only redacted (package redact: every value not on its
// allow-list of safe fields, which covers the fields machinery redacts): the scalars that differ between the
// config and its redacted encoding. Node messages quoting the config are scrubbed of them.
func secretStrings(cfg config.Provider) ([]string, error) {
	plain, err := cfg.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
	if err != nil {
		return nil, err
	}

	masked, err := redact.Config(cfg)
	if err != nil {
		return nil, err
	}

	plainDocs, err := yamlDocuments(plain)
	if err != nil {
		return nil, err
	}

	maskedDocs, err := yamlDocuments(masked)
	if err != nil {
		return nil, err
	}

	var out []string

	for i := range min(len(plainDocs), len(maskedDocs)) {
		collectDifferences(plainDocs[i], maskedDocs[i], &out)
	}

	return out, nil
}

func yamlDocuments(data []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))

	var docs []*yaml.Node

	for {
		var doc yaml.Node

		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}

		if err != nil {
			return nil, err
		}

		docs = append(docs, &doc)
	}
}

// collectDifferences walks two trees of the same shape and records the plain scalars that were masked.
func collectDifferences(plain, masked *yaml.Node, out *[]string) {
	if plain.Kind == yaml.ScalarNode && masked.Kind == yaml.ScalarNode {
		if plain.Value != masked.Value && len(plain.Value) >= minSecretLen {
			*out = append(*out, plain.Value)
		}

		return
	}

	if plain.Kind != masked.Kind || len(plain.Content) != len(masked.Content) {
		// Redaction changed the shape (a whole subtree replaced): every scalar below is secret.
		collectScalars(plain, out)

		return
	}

	for i := range plain.Content {
		collectDifferences(plain.Content[i], masked.Content[i], out)
	}
}

func collectScalars(n *yaml.Node, out *[]string) {
	if n.Kind == yaml.ScalarNode && len(n.Value) >= minSecretLen {
		*out = append(*out, n.Value)
	}

	for _, c := range n.Content {
		collectScalars(c, out)
	}
}

// scrubber replaces known secret values in text that talforge did not write itself (node error messages).
type scrubber struct {
	secrets []string
}

func (s *scrubber) add(values []string) {
	for _, v := range values {
		s.secrets = append(s.secrets, v)

		// A multi-line secret (a PEM key) is quoted line by line, indented, in YAML dumps: scrub each line.
		for line := range strings.Lines(v) {
			if line = strings.TrimSpace(line); len(line) >= minSecretLen && !strings.HasPrefix(line, "-----") {
				s.secrets = append(s.secrets, line)
			}
		}
	}

	// Longest first, so a secret that contains another is replaced whole.
	slices.SortFunc(s.secrets, func(a, b string) int { return len(b) - len(a) })
	s.secrets = slices.Compact(s.secrets)
}

func (s *scrubber) scrub(text string) string {
	for _, secret := range s.secrets {
		text = strings.ReplaceAll(text, secret, redacted)
	}

	return text
}
