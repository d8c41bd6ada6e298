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

var rxStatusError = regexp.MustCompile(`^(\d{3}) ?(.*)$`)

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

	if m := rxStatusError.FindStringSubmatch(err.Error()); m != nil {
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

// Version implements API.
func (t *Telmate) Version(ctx context.Context) (string, error) {
	return guard("version", func() (string, error) {
		v, err := t.c.GetVersion(ctx)
		if err != nil {
			return "", err
		}

		return v.String(), nil
	})
}

// ListVMs implements API.
func (t *Telmate) ListVMs(ctx context.Context) ([]VMResource, error) {
	return guard("list VMs", func() ([]VMResource, error) {
		raws, err := pxapi.ListGuests(ctx, t.c)
		if err != nil {
			return nil, err
		}

		out := make([]VMResource, 0, len(raws))

		for _, raw := range raws {
			r := raw.Get()
			if r.Type != pxapi.GuestQemu {
				continue
			}

			vm := VMResource{VMID: int(r.ID), Node: string(r.Node), Name: string(r.Name), Running: r.Status == pxapi.PowerStateRunning,
				Locked: r.Locked, Template: r.Template}
			for _, tag := range r.Tags {
				vm.Tags = append(vm.Tags, string(tag))
			}

			out = append(out, vm)
		}

		return out, nil
	})
}

// NextID implements API.
func (t *Telmate) NextID(ctx context.Context) (int, error) {
	return guard("nextid", func() (int, error) {
		id, err := t.c.GetNextID(ctx, nil)
		return int(id), err
	})
}

// IsFreeID implements API.
func (t *Telmate) IsFreeID(ctx context.Context, vmid int) (bool, error) {
	return guard("nextid", func() (bool, error) {
		_, err := t.c.GetItemConfigString(ctx, "/cluster/nextid?vmid="+strconv.Itoa(vmid), "API", "cluster/nextid")
		if err == nil {
			return true, nil
		}

		var ae *pxapi.ApiError
		if errors.As(err, &ae) && ae.Code == "400" {
			return false, nil
		}

		return false, err
	})
}

// VMConfig implements API.
func (t *Telmate) VMConfig(ctx context.Context, node string, vmid int) (map[string]string, error) {
	return guard("read config", func() (map[string]string, error) {
		raw, err := t.c.GetVmConfig(ctx, vmRef(node, vmid))
		if err != nil {
			return nil, err
		}

		out := make(map[string]string, len(raw))
		for k, v := range raw {
			out[k] = stringify(v)
		}

		return out, nil
	})
}

// PendingKeys implements API.
func (t *Telmate) PendingKeys(ctx context.Context, node string, vmid int) ([]string, error) {
	return guard("read pending config", func() ([]string, error) {
		list, err := t.c.GetItemListInterfaceArray(ctx, qemuPath(node, vmid)+"/pending")
		if err != nil {
			return nil, err
		}

		var keys []string

		for _, e := range list {
			m := e.(map[string]any)
			_, pending := m["pending"]
			_, del := m["delete"]

			if pending || del {
				keys = append(keys, m["key"].(string))
			}
		}

		return keys, nil
	})
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

// CreateVM implements API.
func (t *Telmate) CreateVM(ctx context.Context, node string, vmid int, params Params) (string, error) {
	p := Params{"vmid": strconv.Itoa(vmid)}
	for k, v := range params {
		p[k] = v
	}

	return t.post(ctx, "create VM", "/nodes/"+node+"/qemu", p)
}

// CloneVM implements API.
func (t *Telmate) CloneVM(ctx context.Context, node string, template, newID int, params Params) (string, error) {
	p := Params{"newid": strconv.Itoa(newID), "full": "1"}
	for k, v := range params {
		p[k] = v
	}

	return t.post(ctx, "clone VM", qemuPath(node, template)+"/clone", p)
}

// UpdateVM implements API.
func (t *Telmate) UpdateVM(ctx context.Context, node string, vmid int, params Params) (string, error) {
	return t.post(ctx, "update VM config", qemuPath(node, vmid)+"/config", params)
}

// ResizeDisk implements API.
func (t *Telmate) ResizeDisk(ctx context.Context, node string, vmid int, disk, size, digest string) (string, error) {
	p := Params{"disk": disk, "size": size}
	if digest != "" {
		p["digest"] = digest
	}

	return t.put(ctx, "resize disk", qemuPath(node, vmid)+"/resize", p)
}

// StartVM implements API.
func (t *Telmate) StartVM(ctx context.Context, node string, vmid int) (string, error) {
	return t.post(ctx, "start VM", qemuPath(node, vmid)+"/status/start", nil)
}

// StopVM implements API.
func (t *Telmate) StopVM(ctx context.Context, node string, vmid int) (string, error) {
	return t.post(ctx, "stop VM", qemuPath(node, vmid)+"/status/stop", nil)
}

// DeleteVM implements API. Telmate's DeleteVmParams waits for the task itself (polling every
// 2 s); on failure the task log is looked up through the node's task list.
func (t *Telmate) DeleteVM(ctx context.Context, node string, vmid int, purge, destroyUnreferenced bool) error {
	params := map[string]any{}
	if purge {
		params["purge"] = 1
	}

	if destroyUnreferenced {
		params["destroy-unreferenced-disks"] = 1
	}

	_, err := guard("delete VM", func() (struct{}, error) {
		_, err := t.c.DeleteVmParams(ctx, vmRef(node, vmid), params)
		return struct{}{}, err
	})
	if err == nil {
		return nil
	}

	var ae *APIError
	if errors.As(err, &ae) || errors.Is(err, ErrConnection) || errors.Is(err, ErrClientPanic) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	// What remains is the task's exit status.
	te := &TaskError{ExitStatus: err.Error()}
	if upid, lerr := t.lastTask(ctx, node, vmid, "qmdestroy"); lerr == nil && upid != "" {
		te.UPID = upid
		te.LogTail, _ = t.TaskLog(ctx, upid, 10)
	}

	return te
}

// lastTask finds the newest task of a type for a VM (GET /nodes/{node}/tasks).
func (t *Telmate) lastTask(ctx context.Context, node string, vmid int, typ string) (string, error) {
	return guard("list tasks", func() (string, error) {
		q := url.Values{"vmid": {strconv.Itoa(vmid)}, "typefilter": {typ}, "limit": {"1"}}
		list, err := t.c.GetItemListInterfaceArray(ctx, "/nodes/"+node+"/tasks?"+q.Encode())
		if err != nil || len(list) == 0 {
			return "", err
		}

		return list[0].(map[string]any)["upid"].(string), nil
	})
}

// MoveDisk implements API.
func (t *Telmate) MoveDisk(ctx context.Context, node string, vmid int, req MoveDiskRequest) (string, error) {
	p := Params{"disk": req.Disk, "target-vmid": strconv.Itoa(req.TargetVMID), "target-disk": req.TargetDisk}
	if req.Digest != "" {
		p["digest"] = req.Digest
	}

	if req.TargetDigest != "" {
		p["target-digest"] = req.TargetDigest
	}

	return t.post(ctx, "move disk", qemuPath(node, vmid)+"/move_disk", p)
}

// StorageContent implements API.
func (t *Telmate) StorageContent(ctx context.Context, node, storage, content string) ([]StorageVolume, error) {
	return guard("list storage content", func() ([]StorageVolume, error) {
		files, err := pxapi.ListFiles(ctx, t.c, node, storage, pxapi.ContentType(content))
		if err != nil {
			return nil, err
		}

		out := make([]StorageVolume, 0, len(*files))
		for _, f := range *files {
			out = append(out, StorageVolume{VolID: storage + ":" + content + "/" + f.Name, Size: int64(f.Size)})
		}

		return out, nil
	})
}

// DownloadURL implements API (the parameters of Telmate's DownloadIsoFromUrl, without its
// 2 s task polling).
func (t *Telmate) DownloadURL(ctx context.Context, node, storage string, req DownloadRequest) (string, error) {
	return t.post(ctx, "download-url", "/nodes/"+node+"/storage/"+storage+"/download-url",
		Params{"content": req.Content, "filename": req.Filename, "url": req.URL})
}

// TaskStatus implements API.
func (t *Telmate) TaskStatus(ctx context.Context, upid string) (TaskStatus, error) {
	node, err := upidNode(upid)
	if err != nil {
		return TaskStatus{}, err
	}

	return guard("task status", func() (TaskStatus, error) {
		m, err := t.c.GetItemConfigMapStringInterface(ctx, "/nodes/"+node+"/tasks/"+upid+"/status", "task", "status")
		if err != nil {
			return TaskStatus{}, err
		}

		st := TaskStatus{Running: m["status"] != "stopped"}
		if !st.Running {
			st.ExitStatus = stringify(m["exitstatus"])
		}

		return st, nil
	})
}

// TaskLog implements API.
func (t *Telmate) TaskLog(ctx context.Context, upid string, n int) ([]string, error) {
	node, err := upidNode(upid)
	if err != nil {
		return nil, err
	}

	base := "/nodes/" + node + "/tasks/" + upid + "/log"

	return guard("task log", func() ([]string, error) {
		head, err := t.c.GetItemConfig(ctx, base+"?start=0&limit=1", "task", "log")
		if err != nil {
			return nil, err
		}

		start := max(0, atoiLoose(head["total"])-n)

		page, err := t.c.GetItemConfig(ctx, fmt.Sprintf("%s?start=%d&limit=%d", base, start, n), "task", "log")
		if err != nil {
			return nil, err
		}

		var lines []string
		for _, e := range page["data"].([]any) {
			lines = append(lines, stringify(e.(map[string]any)["t"]))
		}

		return lines, nil
	})
}
