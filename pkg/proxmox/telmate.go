// The Telmate-backed API client: construction, error conversion and request helpers.

package proxmox

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	pxapi "github.com/Telmate/proxmox-api-go/proxmox"
)

// ClientOptions configure the Telmate-backed API client.
type ClientOptions struct {
	// Endpoint is the API base URL, e.g. https://pve.lan:8006/api2/json.
	Endpoint string
	// Token authenticates every request.
	Token Token
	// TLS is the client TLS configuration (see TLSConfig); nil means system roots.
	TLS *tls.Config
	// RequestTimeout bounds one HTTP request (default 60 s).
	RequestTimeout time.Duration
}

// Telmate implements API with github.com/Telmate/proxmox-api-go. Every call is guarded
// against the client's panics on unexpected responses (docs/proxmox.md#telmate-client),
// which become errors wrapping ErrClientPanic.
type Telmate struct {
	c *pxapi.Client
}

var _ API = (*Telmate)(nil)

// NewTelmateAPI builds a client. It sends nothing; the first call contacts the server.
func NewTelmateAPI(opts ClientOptions) (*Telmate, error) {
	u, err := url.Parse(opts.Endpoint)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("proxmox endpoint %q: expected an https URL like https://pve.lan:8006/api2/json", opts.Endpoint)
	}

	if opts.Token.ID == "" {
		return nil, errors.New("proxmox API token is missing")
	}

	timeout := opts.RequestTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}

	tlsCfg := opts.TLS
	if tlsCfg == nil {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}

	base := &http.Transport{
		TLSClientConfig:     tlsCfg,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 16,
		Proxy:               http.ProxyFromEnvironment,
	}
	hc := &http.Client{Transport: &reasonTransport{base: base}, Timeout: timeout}

	// taskTimeout (s) only bounds DeleteVM, the one call where Telmate waits for the task.
	c, err := pxapi.NewClient(strings.TrimRight(opts.Endpoint, "/"), hc, "", tlsCfg, "", 3600, false)
	if err != nil {
		return nil, fmt.Errorf("proxmox client: %w", err)
	}

	var id pxapi.ApiTokenID
	if err := id.Parse(opts.Token.ID); err != nil {
		return nil, fmt.Errorf("proxmox API token id %q: %w", opts.Token.ID, err)
	}

	c.SetAPIToken(id, pxapi.ApiTokenSecret(opts.Token.secret))

	return &Telmate{c: c}, nil
}

// reasonTransport copies the HTTP reason phrase into error bodies that lack a "message"
// field: PVE before libpve-http-server 5.2.0 answers only {"data":null} and carries the error
// text in the status line (docs/proxmox.md#api-errors), while Telmate's ApiError reads only
// the body. It changes nothing else on the wire.
type reasonTransport struct{ base http.RoundTripper }

func (t *reasonTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode < 400 {
		return resp, err
	}

	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()

	if rerr != nil {
		return nil, rerr
	}

	reason := strings.TrimSpace(strings.TrimPrefix(resp.Status, strconv.Itoa(resp.StatusCode)))

	if len(bytes.TrimSpace(body)) == 0 {
		// 401 and 501 answers have no body: Telmate would treat that as transient and retry
		// with 1-3 s sleeps; a JSON body turns it into an ApiError carrying the reason.
		body, _ = json.Marshal(map[string]any{"data": nil, "message": reason})
	}

	var obj map[string]any
	if json.Unmarshal(body, &obj) == nil {
		if _, ok := obj["message"].(string); !ok {
			obj["message"] = reason
		}
		// Telmate type-asserts errors to a map; a null there would panic.
		if e, ok := obj["errors"]; ok && e == nil {
			delete(obj, "errors")
		}

		body, _ = json.Marshal(obj)
	}

	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))

	return resp, nil
}

// Compiled on first use, not at package initialisation, to keep start-up cheap (issue 16).
var rxStatusError = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(\d{3}) ?(.*)$`)
})

// convertErr maps Telmate's errors to APIError / ErrConnection.
func convertErr(err error) error {
	if err == nil {
		return nil
	}

	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}

	var ae *pxapi.ApiError
	if errors.As(err, &ae) {
		out := &APIError{Status: atoiLoose(ae.Code), Message: strings.TrimSpace(ae.Message)}
		if len(ae.Errors) > 0 {
			out.Errors = map[string]string{}
			for k, v := range ae.Errors {
				out.Errors[k] = strings.TrimSpace(fmt.Sprint(v))
			}
		}

		return out
	}

	if m := rxStatusError().FindStringSubmatch(err.Error()); m != nil {
		st, _ := strconv.Atoi(m[1])
		return &APIError{Status: st, Message: m[2]}
	}

	var (
		ue *url.Error
		ne net.Error
	)

	if errors.As(err, &ue) || errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		strings.HasPrefix(err.Error(), "error performing http request") || strings.HasPrefix(err.Error(), "error reading response body") {
		return fmt.Errorf("%w: %s", ErrConnection, err.Error())
	}

	return err
}

// guard runs a Telmate call, turning panics into ErrClientPanic and errors into this
// package's error types.
func guard[T any](op string, f func() (T, error)) (res T, err error) {
	defer func() {
		if r := recover(); r != nil {
			var zero T
			res, err = zero, fmt.Errorf("%w: %s: %v", ErrClientPanic, op, r)
		}
	}()

	res, err = f()
	if err != nil {
		err = convertErr(err)
	}

	return res, err
}

func vmRef(node string, vmid int) *pxapi.VmRef {
	r := pxapi.NewVmRef(pxapi.GuestID(vmid))
	r.SetNode(node)
	r.SetVmType(pxapi.GuestQemu)

	return r
}

func qemuPath(node string, vmid int) string {
	return "/nodes/" + node + "/qemu/" + strconv.Itoa(vmid)
}

func stringify(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	case bool:
		if t {
			return "1"
		}

		return "0"
	case nil:
		return ""
	}

	return fmt.Sprint(v)
}

// post sends a POST and returns the UPID from the answer (empty for synchronous answers).
func (t *Telmate) post(ctx context.Context, op, path string, params Params) (string, error) {
	return guard(op, func() (string, error) {
		body, err := t.c.CreateItemReturnStatus(ctx, toAny(params), path)
		if err != nil {
			return "", err
		}

		return upidFromBody(body)
	})
}

func (t *Telmate) put(ctx context.Context, op, path string, params Params) (string, error) {
	return guard(op, func() (string, error) {
		body, err := t.c.UpdateItemReturnStatus(ctx, toAny(params), path)
		if err != nil {
			return "", err
		}

		return upidFromBody(body)
	})
}

func upidFromBody(body string) (string, error) {
	var env struct {
		Data any `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		return "", fmt.Errorf("unexpected API answer %q: %w", body, err)
	}

	switch d := env.Data.(type) {
	case nil:
		return "", nil
	case string:
		if _, err := upidNode(d); err != nil {
			return "", err
		}

		return d, nil
	}

	return "", fmt.Errorf("unexpected API answer %q: data is not a task id", body)
}

func toAny(p Params) map[string]any {
	m := make(map[string]any, len(p))
	for k, v := range p {
		m[k] = v
	}

	return m
}
