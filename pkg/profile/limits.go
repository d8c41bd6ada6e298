package profile

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"gopkg.in/yaml.v3"
)

// Limits on every input talforge reads: the profile, the patches and the secret files it names.
// They bound the time and memory of loading whatever the input holds, so that a hostile or
// broken file is refused in milliseconds instead of taking minutes and gigabytes.
const (
	// MaxFileBytes is the largest input file. yaml.v3 turns 1 MiB of the densest YAML ([a,a,...])
	// into ~500,000 nodes in ~0.3 s and ~130 MB; a profile is a few KiB, a patch with an inline
	// manifest a few hundred. Bigger manifests belong in cluster.extraManifests (by URL).
	MaxFileBytes = 1 << 20
	// MaxYAMLNodes is the most YAML nodes one file may expand to, every alias and merge key
	// counted each time it is used: what a decoder builds from it. YAML aliases let a few
	// hundred bytes stand for billions of nodes ("billion laughs"); yaml.v3's own alias limit
	// applies only when decoding, too late for the walks before it and not at all to machinery's
	// patch decoding into free-form fields such as machine.kubelet.extraConfig.
	MaxYAMLNodes = 100_000
	// MaxYAMLValueBytes is the most scalar text one file may expand to, aliases counted each
	// time they are used: an alias to a long string repeated is the same bomb with fewer nodes.
	MaxYAMLValueBytes = 8 << 20
	// MaxProblems is how many problems Load lists; the rest are counted in one last line.
	MaxProblems = 100
)

// Errors the input limits return, for errors.Is.
var (
	// ErrTooLarge: a file or its alias expansion exceeds a limit above.
	ErrTooLarge = errors.New("input too large")
	// ErrOutsideRoot: a referenced file lies outside the project root and profile.externalDirs.
	ErrOutsideRoot = errors.New("outside the project root")
	// ErrNotRegular: a referenced file is a device, FIFO or directory.
	ErrNotRegular = errors.New("not a regular file")
)

// LimitError says which input exceeds which limit, and where (Line is 0 for the file's size).
type LimitError struct {
	File      string
	Line, Col int
	// Message says what exceeds the limit and names the limit.
	Message string
}

func (e *LimitError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Message)
	}

	return e.File + ": " + e.Message
}

func (e *LimitError) Is(target error) bool { return target == ErrTooLarge }

// limitHint says how to fix a LimitError.
const limitHint = "write the values out instead of nesting aliases, and keep each input file under 1 MiB"

// readBounded reads r up to MaxFileBytes, refusing more without reading it all.
func readBounded(name string, r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}

	if len(data) > MaxFileBytes {
		return nil, tooBig(name)
	}

	return data, nil
}

func tooBig(name string) *LimitError {
	return &LimitError{File: name, Message: fmt.Sprintf("is larger than %d bytes (1 MiB), the limit for any file talforge reads", MaxFileBytes)}
}

// CheckYAML refuses data (every YAML document in it) when it is larger than MaxFileBytes or
// when expanding its aliases and merge keys would build more than MaxYAMLNodes nodes or
// MaxYAMLValueBytes of values, with a *LimitError naming name, the line and the limit. Run it
// before handing YAML to any decoder that expands aliases (machinery's configpatcher, sops,
// yaml.Unmarshal into maps). It only parses: the cost is linear in len(data). A YAML syntax
// error is returned as yaml.v3 reports it.
func CheckYAML(name string, data []byte) error {
	if len(data) > MaxFileBytes {
		return tooBig(name)
	}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	ex := newExpansion(name)

	for {
		var doc yaml.Node

		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}

			return err
		}

		if err := ex.add(&doc); err != nil {
			return err
		}
	}
}

// cost is what a YAML subtree expands to.
type cost struct{ nodes, bytes int }

// expansion computes the expanded size of YAML documents without expanding them: each anchored
// node's cost is computed once and reused for every alias to it, so the work is linear in the
// parsed nodes however deep the aliases nest.
type expansion struct {
	file  string
	memo  map[*yaml.Node]cost
	busy  map[*yaml.Node]bool
	total cost
}

func newExpansion(file string) *expansion {
	return &expansion{file: file, memo: map[*yaml.Node]cost{}, busy: map[*yaml.Node]bool{}}
}

// add accounts for one more document of the file.
func (e *expansion) add(doc *yaml.Node) error {
	c, err := e.size(doc)
	if err != nil {
		return err
	}

	return e.within(&e.total, c, doc)
}

// within adds c to sum and refuses a sum above the limits, blaming n.
func (e *expansion) within(sum *cost, c cost, n *yaml.Node) error {
	sum.nodes += c.nodes
	sum.bytes += c.bytes

	// Each operand is within the limits (checked when it was summed), so this cannot overflow.
	switch {
	case sum.nodes > MaxYAMLNodes:
		return &LimitError{File: e.file, Line: n.Line, Col: n.Column, Message: fmt.Sprintf("with its aliases and merge keys expanded (each every time it is used), the file passes %d YAML nodes here, at %s: the limit for any file talforge reads", MaxYAMLNodes, describeNode(n))}
	case sum.bytes > MaxYAMLValueBytes:
		return &LimitError{File: e.file, Line: n.Line, Col: n.Column, Message: fmt.Sprintf("with its aliases expanded (each every time it is used), the file passes %d bytes of values here, at %s: the limit for any file talforge reads", MaxYAMLValueBytes, describeNode(n))}
	}

	return nil
}

func (e *expansion) size(n *yaml.Node) (cost, error) {
	target := n
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return cost{nodes: 1}, nil // yaml.v3 refuses an unknown anchor while parsing
		}

		target = n.Alias
	}

	if c, ok := e.memo[target]; ok {
		return c, nil
	}

	if e.busy[target] {
		// yaml.v3 parses "&a [*a]" into a cycle; its decoder refuses it, walks must not loop.
		return cost{}, &LimitError{File: e.file, Line: n.Line, Col: n.Column, Message: fmt.Sprintf("alias *%s refers to a node that contains it (an endless expansion)", n.Value)}
	}

	e.busy[target] = true
	defer delete(e.busy, target)

	sum := cost{nodes: 1, bytes: len(target.Value)}

	for _, child := range target.Content {
		c, err := e.size(child)
		if err != nil {
			return cost{}, err
		}

		// Blame the child that tips the sum over the limit: for a bomb, the alias that
		// repeats the too-large anchor.
		if err := e.within(&sum, c, child); err != nil {
			return cost{}, err
		}
	}

	// Only anchored nodes are reached twice; memoising them is enough to stay linear.
	if target.Anchor != "" {
		e.memo[target] = sum
	}

	return sum, nil
}

func describeNode(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.AliasNode:
		return "alias *" + n.Value
	case n.Anchor != "":
		return "&" + n.Anchor
	case n.Kind == yaml.DocumentNode:
		return "the end of the document"
	}

	return "this value"
}

// capped returns ps with at most MaxProblems problems, the last one counting those left out.
// Repeated problems (one mistake inside an anchor reported at every alias) are listed once.
func (ps Problems) capped(file string) Problems {
	if len(ps) == 0 {
		return ps
	}

	seen := make(map[string]bool, len(ps))
	out := make(Problems, 0, min(len(ps), MaxProblems+1))
	more := 0

	for _, p := range ps {
		key := p.String()
		if seen[key] {
			continue
		}

		seen[key] = true

		if len(out) == MaxProblems {
			more++

			continue
		}

		out = append(out, p)
	}

	if more > 0 {
		out = append(out, Problem{File: file, Message: fmt.Sprintf("... and %d more problems (only the first %d are listed)", more, MaxProblems), Hint: "fix the ones above and run talforge validate again"})
	}

	return out
}
