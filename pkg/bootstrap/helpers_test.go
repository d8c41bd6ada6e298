package bootstrap_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	talossecrets "github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	machinetype "github.com/siderolabs/talos/pkg/machinery/config/machine"

	"github.com/talforge/talforge/internal/testenv/talosnode"
	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/machineconfig"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/schematic"
)

// moduleRoot walks up from this file to go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()

	_, file, _, _ := runtime.Caller(0)

	for dir := filepath.Dir(file); ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}

		if filepath.Dir(dir) == dir {
			t.Fatal("go.mod not found above " + file)
		}
	}
}

// rendered is a profile rendered by talforge's own generator: per-node configs and the talosconfig.
type rendered struct {
	cluster     *profile.Cluster
	configs     map[string][]byte
	talosconfig []byte
	bundle      *talossecrets.Bundle
}

// renderProfile copies a profile of the repository (and the patch files it names) into a temporary
// project, loads it strictly and renders every node's config with pkg/machineconfig and a fresh secrets
// bundle.
func renderProfile(t *testing.T, name string) rendered {
	t.Helper()

	root := moduleRoot(t)
	project := t.TempDir()

	copyFile := func(rel string) {
		data, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}

		dst := filepath.Join(project, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}

		if err := os.WriteFile(dst, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	copyFile(filepath.Join("profiles", name+".yaml"))

	matches, err := filepath.Glob(filepath.Join(root, "patches", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}

	for _, m := range matches {
		copyFile(filepath.Join("patches", filepath.Base(m)))
	}

	// The profile names SOPS credential files; their content does not matter here, only that they exist.
	for _, f := range []string{"secrets/proxmox.sops.yaml", "secrets/aws-backup.sops.yaml"} {
		if err := os.MkdirAll(filepath.Join(project, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}

		if err := os.WriteFile(filepath.Join(project, f), []byte("placeholder: true\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	c, err := profile.Load(filepath.Join(project, "profiles", name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}

	contract, err := config.ParseContractFromVersion(c.Talos.Version)
	if err != nil {
		t.Fatal(err)
	}

	bundle, err := talossecrets.NewBundle(talossecrets.NewFixedClock(time.Now()), contract)
	if err != nil {
		t.Fatal(err)
	}

	img, err := schematic.ForCluster(c)
	if err != nil {
		t.Fatal(err)
	}

	gen, err := machineconfig.New(t.Context(), c, img, bundle)
	if err != nil {
		t.Fatal(err)
	}

	all, err := gen.All(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	r := rendered{cluster: c, configs: map[string][]byte{}, bundle: bundle}

	for _, cfg := range all {
		r.configs[cfg.Node.Name] = cfg.Bytes
	}

	if r.talosconfig, err = gen.Talosconfig(nil); err != nil {
		t.Fatal(err)
	}

	return r
}

// emulated is a rendered profile running on emulated Talos nodes, one loopback address per node.
type emulated struct {
	rendered

	etcd  *talosnode.Cluster
	nodes map[string]*talosnode.Node
}

type emulateOptions struct {
	// subnet is the 127.0.x. prefix; each test uses its own so addresses never collide.
	subnet int
	// configured starts the nodes already running these configs (by node name) instead of in maintenance.
	configured map[string][]byte
	bootDelay  time.Duration
	// autoReboots makes configured nodes reboot to take an AUTO apply.
	autoReboots bool
	// etcdStartDelay is how long etcd takes to start after an accepted Bootstrap.
	etcdStartDelay time.Duration
	// joinDelay is how long a further control plane takes to join a running etcd (default 50 ms).
	joinDelay time.Duration
	// startDelay defers each node's first boot, which a node that cannot boot yet (a configured worker
	// before any control plane) then retries.
	startDelay time.Duration
}

func emulate(t *testing.T, r rendered, opts emulateOptions) *emulated {
	t.Helper()

	e := &emulated{rendered: r, etcd: talosnode.NewCluster(), nodes: map[string]*talosnode.Node{}}

	if opts.bootDelay == 0 {
		opts.bootDelay = 100 * time.Millisecond
	}

	if opts.joinDelay == 0 {
		opts.joinDelay = 50 * time.Millisecond
	}

	for i, n := range r.cluster.Nodes {
		node, err := talosnode.Start(t.Context(), talosnode.Options{
			Address:        fmt.Sprintf("127.0.%d.%d:0", opts.subnet, i+1),
			Hostname:       "talos-" + n.Name,
			Cluster:        e.etcd,
			Config:         opts.configured[n.Name],
			BootDelay:      opts.bootDelay,
			JoinDelay:      opts.joinDelay,
			AutoReboots:    opts.autoReboots,
			EtcdStartDelay: opts.etcdStartDelay,
			StartDelay:     opts.startDelay,
			Logf:           t.Logf,
		})
		if err != nil {
			t.Fatal(err)
		}

		t.Cleanup(func() { _ = node.Close() }) // Close never fails

		e.nodes[n.Name] = node
	}

	return e
}

// input is the bootstrap.Cluster for the emulated nodes: the profile's nodes with the emulator addresses.
func (e *emulated) input(configs map[string][]byte, talosconfig []byte) bootstrap.Cluster {
	c := bootstrap.Cluster{Name: e.cluster.Metadata.Name, Talosconfig: talosconfig, VIP: e.cluster.Network.VIP}

	for _, n := range e.cluster.Nodes {
		role := machinetype.TypeWorker
		if n.Role == profile.RoleControlPlane {
			role = machinetype.TypeControlPlane
		}

		c.Nodes = append(c.Nodes, bootstrap.Node{
			Name: n.Name, IP: n.IP, Role: role, Config: configs[n.Name], Endpoint: e.nodes[n.Name].Addr(),
		})
	}

	return c
}

func (e *emulated) runner(t *testing.T, out io.Writer, opts bootstrap.Options) *bootstrap.Runner {
	t.Helper()

	return newRunner(t, e.input(e.configs, e.talosconfig), out, opts)
}

func newRunner(t *testing.T, c bootstrap.Cluster, out io.Writer, opts bootstrap.Options) *bootstrap.Runner {
	t.Helper()

	opts.Progress = out
	fast(&opts)

	r, err := bootstrap.New(c, opts)
	if err != nil {
		t.Fatal(err)
	}

	return r
}

// fast shortens every wait for emulated nodes; unset timeouts stay generous so a slow machine does not flake.
func fast(o *bootstrap.Options) {
	if o.PollInterval == 0 {
		o.PollInterval = 20 * time.Millisecond
	}

	if o.CallTimeout == 0 {
		o.CallTimeout = 3 * time.Second
	}

	for _, d := range []*time.Duration{&o.APITimeout, &o.BootstrapTimeout, &o.HealthTimeout} {
		if *d == 0 {
			*d = 30 * time.Second
		}
	}
}

func (e *emulated) calls(method string) map[string]int {
	out := map[string]int{}
	for name, n := range e.nodes {
		out[name] = n.Calls(method)
	}

	return out
}

// syncBuffer is a goroutine-safe progress sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()

	return b.buf.String()
}

// fakeKube is a Kube whose answers the test controls.
type fakeKube struct {
	mu       sync.Mutex
	versionE error
	nodes    []string
}

func (f *fakeKube) Server() string { return "https://10.20.0.10:6443" }

func (f *fakeKube) ServerVersion(context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	return "v1.37.0", f.versionE
}

func (f *fakeKube) NodeNames(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	return slices.Clone(f.nodes), nil
}

// secretValues returns every secret string of a bundle, to prove none of them is printed.
func secretValues(b *talossecrets.Bundle) []string {
	var out []string

	add := func(s string) {
		if s = strings.TrimSpace(s); len(s) >= 8 {
			out = append(out, s)
		}
	}

	add(b.Secrets.BootstrapToken)
	add(b.Secrets.SecretboxEncryptionSecret)
	add(b.Secrets.AESCBCEncryptionSecret)
	add(b.TrustdInfo.Token)
	add(b.Cluster.Secret)

	keys := [][]byte{b.Certs.OS.Key, b.Certs.K8s.Key, b.Certs.Etcd.Key}
	if b.Certs.K8sAggregator != nil {
		keys = append(keys, b.Certs.K8sAggregator.Key)
	}

	if b.Certs.K8sServiceAccount != nil {
		keys = append(keys, b.Certs.K8sServiceAccount.Key)
	}

	for _, key := range keys {
		add(string(key))
		add(base64.StdEncoding.EncodeToString(key))

		// Diffs and YAML dumps show a PEM key line by line.
		for line := range strings.Lines(string(key)) {
			if !strings.HasPrefix(line, "-----") {
				add(line)
			}
		}
	}

	return out
}
