package pvesim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Default credentials of the token New creates when Options.Tokens is empty.
const (
	DefaultTokenID     = "root@pam!talforge"
	DefaultTokenSecret = "0b1c6f4e-2d0a-4b8e-9a57-3f6c1e2d4a5b"
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// Schema enables parameter checks. Nil disables them (the emulator
	// still works; tests that depend on schema checks must skip).
	Schema *Schema
	// Version is what GET /version reports; defaults to 9.1.1 (8.4.1 when
	// the schema is named pve8).
	Version string
	// Nodes are the cluster nodes; default {"pve"}.
	Nodes []string
	// Storages default to "local" (dir: iso, vztmpl, import, backup,
	// snippets) and "local-lvm" (lvmthin: images, rootdir).
	Storages []Storage
	// Tokens accepted by the server; default one token with full
	// privileges (DefaultTokenID / DefaultTokenSecret).
	Tokens []Token
	// Latency is the time a task of a type ("qmcreate", "qmstart",
	// "qmstop", "qmshutdown", "qmdestroy", "qmconfig", "qmresize",
	// "qmmove", "qmclone", "download") stays running.
	Latency map[string]time.Duration
	// DefaultLatency applies to task types missing from Latency.
	DefaultLatency time.Duration
	// LockTimeout is how long an operation waits for a VM config lock held
	// by a running task; PVE waits 10 s (the default).
	LockTimeout time.Duration
	// AuthFailDelay delays 401 answers; PVE delays them by 3 s (default).
	AuthFailDelay time.Duration
	// LegacyErrorBody omits the "message" field from error bodies like
	// libpve-http-server before 5.2.0 (early PVE 8).
	LegacyErrorBody bool
	// Download decides the outcome of a download-url task: the size of
	// the "downloaded" file or an error. Default: 100 MiB, success.
	Download func(url string) (int64, error)
	// Now is the clock for task start times (default time.Now).
	Now func() time.Time
}

// Server is a running emulator.
type Server struct {
	opts   Options
	schema *Schema
	ts     *httptest.Server
	routes []route

	mu       sync.Mutex
	vms      map[int]*VM
	volumes  map[string]*Volume
	storages map[string]*Storage
	tokens   map[string]*Token
	tasks    map[string]*task
	flocks   map[int]chan struct{}
	faults   []*faultRule
	reqlog   []RequestRecord
	seq      int
	pidSeq   int
	macSeq   int

	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// New creates and starts an HTTPS emulator (TLS with a self-signed
// certificate; see CACertPEM and HTTPClient).
func New(opts Options) *Server {
	s := newServer(opts)
	s.ts = httptest.NewUnstartedServer(s)
	s.ts.StartTLS()
	return s
}

func newServer(opts Options) *Server {
	if opts.Version == "" {
		opts.Version = "9.1.1"
		if opts.Schema != nil && opts.Schema.Name == "pve8" {
			opts.Version = "8.4.1"
		}
	}
	if len(opts.Nodes) == 0 {
		opts.Nodes = []string{"pve"}
	}
	if opts.Storages == nil {
		opts.Storages = []Storage{
			{ID: "local", Type: "dir", Content: []string{"iso", "vztmpl", "import", "backup", "snippets"}, Path: "/var/lib/vz"},
			{ID: "local-lvm", Type: "lvmthin", Content: []string{"images", "rootdir"}},
		}
	}
	if len(opts.Tokens) == 0 {
		opts.Tokens = []Token{{ID: DefaultTokenID, Secret: DefaultTokenSecret, ACL: AdminACL()}}
	}
	if opts.LockTimeout == 0 {
		opts.LockTimeout = 10 * time.Second
	}
	if opts.AuthFailDelay == 0 {
		opts.AuthFailDelay = 3 * time.Second
	}
	if opts.AuthFailDelay < 0 {
		opts.AuthFailDelay = 0
	}
	if opts.Download == nil {
		opts.Download = func(string) (int64, error) { return 100 << 20, nil }
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		opts: opts, schema: opts.Schema,
		vms: map[int]*VM{}, volumes: map[string]*Volume{}, storages: map[string]*Storage{},
		tokens: map[string]*Token{}, tasks: map[string]*task{}, flocks: map[int]chan struct{}{},
		closed: make(chan struct{}), pidSeq: 0x1a2b0,
	}
	for i := range opts.Storages {
		st := opts.Storages[i]
		s.storages[st.ID] = &st
	}
	for i := range opts.Tokens {
		t := opts.Tokens[i]
		s.tokens[t.ID] = &t
	}
	s.routes = s.buildRoutes()
	return s
}

// URL is the API base, e.g. https://127.0.0.1:41234/api2/json.
func (s *Server) URL() string { return s.ts.URL + "/api2/json" }

// Close stops the server and waits for running tasks to be abandoned.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.ts.CloseClientConnections()
		s.ts.Close()
		s.wg.Wait()
	})
}

// CACertPEM is the PEM-encoded self-signed certificate of the server, for
// tests of CA-file based verification.
func (s *Server) CACertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.ts.Certificate().Raw})
}

// CertPool trusts the server certificate.
func (s *Server) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.ts.Certificate())
	return p
}

// HTTPClient returns a client that trusts the server certificate.
func (s *Server) HTTPClient() *http.Client { return s.ts.Client() }

// Schema returns the schema the server checks against (nil if none).
func (s *Server) Schema() *Schema { return s.schema }

// apiError is an error answer in PVE's shape.
type apiError struct {
	Status int
	Msg    string
	Errors map[string]string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.Status, strings.TrimSpace(e.Msg)) }

func errStatus(status int, format string, a ...any) *apiError {
	return &apiError{Status: status, Msg: fmt.Sprintf(format, a...)}
}

func err500(format string, a ...any) *apiError { return errStatus(500, format, a...) }

func paramError(errs map[string]string) *apiError {
	return &apiError{Status: 400, Msg: "Parameter verification failed.\n", Errors: errs}
}

func permError(path, priv string) *apiError {
	return &apiError{Status: 403, Msg: "Permission check failed (" + path + ", " + priv + ")\n"}
}

// withTotal is a response with the "total" envelope attribute.
type withTotal struct {
	data  any
	total int
}

// call is the context of one API request.
type call struct {
	s        *Server
	r        *http.Request
	method   string
	path     string // below /api2/json
	template string
	uri      map[string]string
	params   Params
	token    *Token
	fault    *faultRule
	upid     string
}

type route struct {
	method   string
	template string
	segs     []string
	async    bool // starts a task
	handler  func(*call) (any, *apiError)
}

var rxAuth = regexp.MustCompile(`(?:^|\s)PVEAPIToken(?:=| )([^;]*)`)

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := RequestRecord{Method: r.Method}
	escaped := r.URL.EscapedPath()
	const prefix = "/api2/json"
	if !strings.HasPrefix(escaped, prefix) {
		s.finish(w, &rec, nil, errStatus(501, "no such uri"), nil)
		return
	}
	rel := strings.TrimPrefix(escaped, prefix)
	if rel == "" {
		rel = "/"
	}
	segs := strings.Split(strings.Trim(rel, "/"), "/")
	for i, sg := range segs {
		if u, err := url.PathUnescape(sg); err == nil {
			segs[i] = u
		}
	}
	rec.Path = "/" + strings.Join(segs, "/")
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))

	// Authentication comes first, as in pve-http-server.
	tok, authErr := s.authenticate(r.Header.Get("Authorization"))
	if authErr != nil {
		rec.Status, rec.Message = 401, authErr.Msg
		select {
		case <-time.After(s.opts.AuthFailDelay):
		case <-r.Context().Done():
		case <-s.closed:
		}
		s.finish(w, &rec, nil, authErr, nil)
		return
	}
	rec.TokenID = tok.ID

	c := &call{s: s, r: r, method: r.Method, path: rec.Path, token: tok}
	rt, uri := s.match(r.Method, segs)
	params, perr := parseParams(r, body)
	rec.Params = params.strings()
	if rt != nil {
		c.template, c.uri = rt.template, uri
	}
	fault := s.takeFault(r.Method, rec.Path)
	if fault != nil && fault.Act != nil {
		fault.Act()
	}
	if fault != nil && fault.Kind == FaultActor {
		rec.Fault = fault.Kind.String()
		fault = nil
	}
	if fault != nil {
		rec.Fault = fault.Kind.String()
		switch fault.Kind {
		case FaultDropBefore:
			s.record(rec)
			dropConnection(w)
			return
		case FaultHTTPError:
			st := fault.Status
			if st == 0 {
				st = 500
			}
			msg := fault.Message
			if msg == "" {
				msg = http.StatusText(st)
			}
			s.finish(w, &rec, nil, errStatus(st, "%s", msg), nil)
			return
		}
		c.fault = fault
	}
	if rt == nil {
		s.finish(w, &rec, nil, errStatus(501, "Method '%s %s' not implemented", r.Method, rec.Path), nil)
		return
	}
	if perr != nil {
		s.finish(w, &rec, nil, perr, nil)
		return
	}
	for k, v := range uri {
		if old, ok := params[k]; ok && old.S != v {
			s.finish(w, &rec, nil, paramError(map[string]string{k: "duplicate parameter (already defined in URI) with conflicting values"}), nil)
			return
		}
		params[k] = Value{S: v}
	}
	c.params = params
	if s.schema != nil {
		m := s.schema.Method(rt.template, r.Method)
		if m == nil {
			s.finish(w, &rec, nil, errStatus(501, "Method '%s %s' not implemented", r.Method, rec.Path), nil)
			return
		}
		if errs := m.Validate(params); errs != nil {
			s.finish(w, &rec, nil, paramError(errs), nil)
			return
		}
	}
	if node, ok := uri["node"]; ok && !s.hasNode(node) {
		s.finish(w, &rec, nil, errStatus(500, "no such cluster node '%s'", node), nil)
		return
	}
	if c.fault != nil && c.fault.Kind == FaultLockTimeout && !rt.async {
		vmid, _ := strconv.Atoi(params.Get("vmid"))
		s.finish(w, &rec, nil, err500("%s", lockTimeoutMsg(vmid)), nil)
		return
	}
	data, aerr := rt.handler(c)
	rec.UPID = c.upid
	if c.fault != nil && c.fault.Kind == FaultDropAfter {
		if aerr != nil {
			rec.Status, rec.Message = aerr.Status, aerr.Msg
		} else {
			rec.Status = 200
		}
		s.record(rec)
		dropConnection(w)
		return
	}
	s.finish(w, &rec, data, aerr, nil)
}

func (s *Server) hasNode(n string) bool {
	for _, x := range s.opts.Nodes {
		if x == n {
			return true
		}
	}
	return false
}

func (s *Server) match(method string, segs []string) (*route, map[string]string) {
	for i := range s.routes {
		rt := &s.routes[i]
		if rt.method != method || len(rt.segs) != len(segs) {
			continue
		}
		uri := map[string]string{}
		ok := true
		for j, sg := range rt.segs {
			if strings.HasPrefix(sg, "{") {
				uri[strings.Trim(sg, "{}")] = segs[j]
			} else if sg != segs[j] {
				ok = false
				break
			}
		}
		if ok {
			return rt, uri
		}
	}
	return nil, nil
}

// parseParams merges query and body parameters like pve-http-server's
// extract_params (form-urlencoded or JSON bodies).
func parseParams(r *http.Request, body []byte) (Params, *apiError) {
	p := Params{}
	add := func(vals url.Values) {
		for k, vs := range vals {
			p[k] = Value{S: strings.Join(vs, "\x00")}
		}
	}
	if q, err := url.ParseQuery(r.URL.RawQuery); err == nil {
		add(q)
	}
	if len(body) == 0 {
		return p, nil
	}
	ct := strings.TrimSpace(strings.SplitN(r.Header.Get("Content-Type"), ";", 2)[0])
	switch ct {
	case "", "application/x-www-form-urlencoded":
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return p, errStatus(400, "unable to parse request body")
		}
		add(vals)
	case "application/json":
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			return p, errStatus(400, "unable to parse JSON body")
		}
		for k, v := range obj {
			switch t := v.(type) {
			case nil:
			case string:
				p[k] = Value{S: t}
			case json.Number:
				p[k] = Value{S: t.String()}
			case bool:
				s := "0"
				if t {
					s = "1"
				}
				p[k] = Value{S: s, Ref: "JSON::PP::Boolean"}
			case map[string]any:
				p[k] = Value{Ref: "HASH"}
			case []any:
				p[k] = Value{Ref: "ARRAY"}
			}
		}
	default:
		return p, errStatus(415, "unsupported content type '%s'", ct)
	}
	return p, nil
}

func (p Params) strings() map[string]string {
	out := make(map[string]string, len(p))
	for k, v := range p {
		out[k] = v.S
	}
	return out
}

func dropConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// finish writes the answer and records the request.
func (s *Server) finish(w http.ResponseWriter, rec *RequestRecord, data any, aerr *apiError, _ error) {
	if aerr == nil {
		rec.Status = 200
		s.record(*rec)
		env := map[string]any{"data": data}
		if wt, ok := data.(withTotal); ok {
			env = map[string]any{"data": wt.data, "total": wt.total}
		}
		b, _ := json.Marshal(env)
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		w.Header().Set("Server", "pve-api-daemon/3.0")
		w.Header().Set("Cache-Control", "max-age=0")
		w.Header().Set("Pragma", "no-cache")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(200)
		_, _ = w.Write(b)
		return
	}
	rec.Status, rec.Message, rec.Errors = aerr.Status, aerr.Msg, aerr.Errors
	s.record(*rec)
	var body []byte
	if aerr.Status != 401 && aerr.Status != 501 {
		env := map[string]any{"data": nil}
		if !s.opts.LegacyErrorBody {
			env["message"] = aerr.Msg
		}
		if len(aerr.Errors) > 0 {
			env["errors"] = aerr.Errors
		}
		body, _ = json.Marshal(env)
	}
	writeRawError(w, aerr.Status, aerr.Msg, body)
}

// writeRawError writes a response whose reason phrase is the first line of
// msg, as pve-http-server does, and closes the connection (PVE disables
// keep-alive for status >= 400).
func writeRawError(w http.ResponseWriter, status int, msg string, body []byte) {
	reason := strings.SplitN(strings.TrimRight(msg, "\n"), "\n", 2)[0]
	if reason == "" {
		reason = http.StatusText(status)
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		w.WriteHeader(status)
		_, _ = w.Write(body)
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	bw := bufio.NewWriter(conn)
	_ = buf
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\n", status, reason)
	fmt.Fprintf(bw, "Date: %s\r\n", time.Now().UTC().Format(http.TimeFormat))
	fmt.Fprintf(bw, "Server: pve-api-daemon/3.0\r\n")
	fmt.Fprintf(bw, "Connection: close\r\n")
	if len(body) > 0 {
		fmt.Fprintf(bw, "Content-Type: application/json;charset=UTF-8\r\n")
	}
	fmt.Fprintf(bw, "Content-Length: %d\r\n\r\n", len(body))
	_, _ = bw.Write(body)
	_ = bw.Flush()
}

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

// sleep waits d or until the server closes; it reports false on close.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.closed:
		return false
	case <-ctx.Done():
		return false
	}
}
