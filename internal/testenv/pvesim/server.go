// The emulator itself: options, construction and lifetime.

package pvesim

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
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
	// Pools are the resource pools that exist (none by default).
	Pools []string
	// Storages default to those of a fresh install with LVM-thin (see
	// defaultStorages): "local" (dir: iso, vztmpl, backup, and import on
	// PVE 9) and "local-lvm" (lvmthin: images, rootdir).
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
	cts      map[int]Container // LXC containers: only their VMIDs, names and nodes matter here
	poolMu   sync.Mutex
	vmPools  map[int]string // VMID -> pool it is a member of
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
		opts.Storages = defaultStorages(opts.Version)
	}
	if len(opts.Tokens) == 0 {
		acl := AdminACL()
		if opts.Schema != nil && opts.Schema.Name == "pve8" {
			// PVE 8's Administrator role still has VM.Monitor (the guest agent's privilege
			// there); PVE 9 removed it.
			acl["/"] = append(append([]string(nil), acl["/"]...), "VM.Monitor")
		}
		opts.Tokens = []Token{{ID: DefaultTokenID, Secret: DefaultTokenSecret, ACL: acl}}
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
		vms: map[int]*VM{}, cts: map[int]Container{}, vmPools: map[int]string{}, volumes: map[string]*Volume{}, storages: map[string]*Storage{},
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

// defaultStorages are the storages the PVE installer configures on an LVM-thin install
// (pve-installer Proxmox/Install/StorageConfig.pm get_lvm_thin_config): "local" holds ISOs,
// container templates and backups, plus the import content type since PVE 9.0 (pve-installer
// commit ec1d5ee "enable import content type by default", 9.0.7); "local-lvm" holds disk
// images and container volumes. Neither has snippets.
func defaultStorages(version string) []Storage {
	local := []string{"iso", "vztmpl", "backup", "import"}
	if strings.HasPrefix(version, "8.") {
		local = local[:3]
	}
	return []Storage{
		{ID: "local", Type: "dir", Content: local, Path: "/var/lib/vz"},
		{ID: "local-lvm", Type: "lvmthin", Content: []string{"images", "rootdir"}},
	}
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
