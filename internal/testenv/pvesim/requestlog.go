// The request log tests assert on.

package pvesim

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// RequestRecord is one entry of the request log.
type RequestRecord struct {
	Seq     int
	Method  string
	Path    string // below /api2/json, unescaped
	Params  map[string]string
	TokenID string
	Status  int
	Message string
	Errors  map[string]string
	UPID    string
	Fault   string
}

// Mutating reports whether the request could change state (any method
// other than GET).
func (r RequestRecord) Mutating() bool { return r.Method != http.MethodGet }

func (s *Server) record(rec RequestRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	rec.Seq = s.seq
	s.reqlog = append(s.reqlog, rec)
}

// Requests returns a copy of the request log.
func (s *Server) Requests() []RequestRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]RequestRecord(nil), s.reqlog...)
}

// MutatingRequests returns the non-GET requests of the log.
func (s *Server) MutatingRequests() []RequestRecord {
	var out []RequestRecord
	for _, r := range s.Requests() {
		if r.Mutating() {
			out = append(out, r)
		}
	}
	return out
}

// ResetLog clears the request log (state is kept).
func (s *Server) ResetLog() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqlog = nil
}

// RequestSummary renders the log as "METHOD path -> status" lines, handy in
// test failure messages.
func (s *Server) RequestSummary() string {
	var b strings.Builder
	for _, r := range s.Requests() {
		fmt.Fprintf(&b, "%d %s %s -> %d", r.Seq, r.Method, r.Path, r.Status)
		if r.Message != "" {
			fmt.Fprintf(&b, " %q", strings.TrimSpace(r.Message))
		}
		if len(r.Errors) > 0 {
			keys := make([]string, 0, len(r.Errors))
			for k := range r.Errors {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(&b, " [%s: %s]", k, strings.TrimSpace(r.Errors[k]))
			}
		}
		if r.Fault != "" {
			fmt.Fprintf(&b, " (fault %s)", r.Fault)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
