// Request dispatch: authentication, routing, parameter parsing and answers in PVE's shape, as
// pve-http-server gives them.

package pvesim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

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
	// joins is the pool a VM this call creates (joinsVMID) joins: PVE's check_vm_perm counts
	// the pool's ACLs for it before the VM exists.
	joins     string
	joinsVMID int
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
		// pveproxy forwards /nodes/<node>/... to that host and fails to resolve it.
		s.finish(w, &rec, nil, errStatus(500, "hostname lookup '%s' failed - failed to get address info for: %s: Name or service not known", node, node), nil)
		return
	}
	// Faults fire only on requests PVE would accept: a fault test must not pass with
	// parameters the schema refuses.
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
