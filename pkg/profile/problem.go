package profile

import (
	"fmt"
	"strings"
)

// Problem is one thing wrong (or worth a warning) in a profile.
type Problem struct {
	// File is the profile (or referenced file) the problem is in.
	File string
	// Line and Col locate the offending value when YAML gives a position (1-based; 0 = unknown).
	Line, Col int
	// Field is the path of the offending field, e.g. nodes[1].ip.
	Field string
	// Message says what is wrong and what was expected.
	Message string
	// Hint says how to fix it.
	Hint string

	// keyProblem marks an unknown or repeated key, after which the profile still decodes.
	keyProblem bool
}

func (p Problem) String() string {
	var b strings.Builder

	b.WriteString(p.File)

	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)

		if p.Col > 0 {
			fmt.Fprintf(&b, ":%d", p.Col)
		}
	}

	b.WriteString(": ")

	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}

	b.WriteString(p.Message)

	if p.Hint != "" {
		b.WriteString(" (fix: " + p.Hint + ")")
	}

	return b.String()
}

// Problems is a list of problems; as an error it reports all of them.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}

	if len(ps) == 1 {
		return lines[0]
	}

	return fmt.Sprintf("%d problems:\n  %s", len(ps), strings.Join(lines, "\n  "))
}

// Pos is a 1-based line and column in the profile.
type Pos struct{ Line, Col int }

// source remembers where a profile came from and where each field was written, so that
// semantic problems found after decoding still point at a line.
type source struct {
	file string
	root string
	pos  map[string]Pos
}

// at returns the position of field, or of its nearest ancestor that has one.
func (s *source) at(field string) Pos {
	if s == nil {
		return Pos{}
	}

	for f := field; f != ""; f = parentPath(f) {
		if p, ok := s.pos[f]; ok {
			return p
		}
	}

	return Pos{}
}

func parentPath(field string) string {
	i := strings.LastIndexAny(field, ".[")
	if i < 0 {
		return ""
	}

	return field[:i]
}

// problems collects problems while validating, filling in file and position.
type problems struct {
	src  *source
	list Problems
	seen map[string]bool
}

func (ps *problems) add(field, hint, format string, args ...any) {
	pos := ps.src.at(field)
	msg := fmt.Sprintf(format, args...)

	// A default inherited by several nodes is one mistake: report it once. A map, not a scan of
	// the list: a profile with thousands of nodes must not make validation quadratic.
	key := field + "\x00" + msg
	if ps.seen[key] {
		return
	}

	if ps.seen == nil {
		ps.seen = map[string]bool{}
	}

	ps.seen[key] = true

	ps.list = append(ps.list, Problem{
		File:    ps.src.file,
		Line:    pos.Line,
		Col:     pos.Col,
		Field:   field,
		Message: msg,
		Hint:    hint,
	})
}
