package pvesim

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

var schemas struct {
	mu  sync.Mutex
	s   map[int]*Schema
	err map[int]error
}

// testSchema loads pve<major>-apischema.json once per test binary, or skips
// the test when the shared fixtures are absent.
func testSchema(t testing.TB, major int) *Schema {
	t.Helper()
	schemas.mu.Lock()
	defer schemas.mu.Unlock()
	if schemas.s == nil {
		schemas.s, schemas.err = map[int]*Schema{}, map[int]error{}
	}
	if s, ok := schemas.s[major]; ok {
		return s
	}
	if err, ok := schemas.err[major]; ok {
		skipOrFail(t, err)
	}
	p, err := FindSchema(major)
	if err == nil {
		var s *Schema
		s, err = LoadSchema(p)
		if err == nil {
			schemas.s[major] = s
			return s
		}
	}
	schemas.err[major] = err
	skipOrFail(t, err)
	return nil
}

// optSchema is testSchema for tests that do not depend on schema checks: without the fixture
// they run against an emulator without parameter checks.
func optSchema(t testing.TB, major int) *Schema {
	t.Helper()

	return SchemaForTest(t, major)
}

func skipOrFail(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrSchemaNotFound) && os.Getenv(EnvRequireSchema) != "1" {
		t.Skipf("PVE API schema fixture not found at %v; schema checks skipped", err)
	}
	t.Fatalf("loading PVE API schema: %v", err)
}

// fastOptions are emulator options for quick tests.
func fastOptions(s *Schema) Options {
	return Options{Schema: s, AuthFailDelay: -1, LockTimeout: 200 * time.Millisecond, DefaultLatency: 5 * time.Millisecond}
}

// answer is a raw HTTP response as a client sees it.
type answer struct {
	status int
	reason string
	raw    string
	body   map[string]any
}

func (a answer) data() any { return a.body["data"] }

func (a answer) errs() map[string]string {
	out := map[string]string{}
	if m, ok := a.body["errors"].(map[string]any); ok {
		for k, v := range m {
			out[k] = v.(string)
		}
	}
	return out
}

// call performs a raw API request with the default token.
func doReq(t testing.TB, s *Server, method, path string, params url.Values) answer {
	t.Helper()
	return doReqAuth(t, s, method, path, params, "PVEAPIToken="+DefaultTokenID+"="+DefaultTokenSecret)
}

func doReqAuth(t testing.TB, s *Server, method, path string, params url.Values, auth string) answer {
	t.Helper()
	u := s.URL() + path
	var body io.Reader
	if method == http.MethodGet || method == http.MethodDelete {
		if len(params) > 0 {
			u += "?" + params.Encode()
		}
	} else {
		body = strings.NewReader(params.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := s.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, reason: strings.TrimSpace(strings.TrimPrefix(resp.Status, resp.Status[:3])), raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			t.Fatalf("%s %s: body is not JSON: %q", method, path, raw)
		}
	}
	return a
}

// waitTask polls a task until it stops and returns its exit status.
func waitTask(t testing.TB, s *Server, upid string) string {
	t.Helper()
	node := strings.Split(upid, ":")[1]
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		a := doReq(t, s, "GET", "/nodes/"+node+"/tasks/"+url.PathEscape(upid)+"/status", nil)
		if a.status != 200 {
			t.Fatalf("task status: %d %s", a.status, a.reason)
		}
		d := a.data().(map[string]any)
		if d["status"] == "stopped" {
			return d["exitstatus"].(string)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("task %s did not finish", upid)
	return ""
}
