package proxmox

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/talforge/talforge/internal/testenv/pvesim"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/schematic"
)

// pveSchema is the PVE 9 API schema fixture (pvesim.SchemaForTest: required under CI).
func pveSchema(t testing.TB) *pvesim.Schema {
	t.Helper()

	return pvesim.SchemaForTest(t, 9)
}

// env is a PVE emulator plus a Telmate client and the cluster profile under test.
type env struct {
	t       testing.TB
	srv     *pvesim.Server
	api     *Telmate
	cluster *profile.Cluster
	img     *schematic.Image
	specs   []VMSpec
	boot    BootImage
	events  *eventLog
}

type eventLog struct {
	mu  sync.Mutex
	all []string
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, e.String())
}

func (l *eventLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()

	return strings.Join(l.all, "\n")
}

func loadProfile(t testing.TB, name string) *profile.Cluster {
	t.Helper()

	c, err := profile.Load(filepath.Join("..", "..", "profiles", name+".yaml"))
	if err != nil {
		t.Fatalf("loading profile %s: %v", name, err)
	}

	return c
}

type envOption func(*pvesim.Options)

func withLatency(l map[string]time.Duration) envOption {
	return func(o *pvesim.Options) { o.Latency = l }
}

func newEnv(t testing.TB, profileName string, opts ...envOption) *env {
	t.Helper()

	c := loadProfile(t, profileName)
	nodes := map[string]bool{c.Proxmox.Node: true}

	for _, n := range c.Nodes {
		nodes[n.PVENode] = true
	}

	o := pvesim.Options{Schema: pveSchema(t), Nodes: sortedKeys(nodes), AuthFailDelay: -1,
		LockTimeout: 100 * time.Millisecond, DefaultLatency: 10 * time.Millisecond}
	for _, f := range opts {
		f(&o)
	}

	return newEnvWith(t, c, o)
}

func newEnvWith(t testing.TB, c *profile.Cluster, o pvesim.Options) *env {
	t.Helper()

	srv := pvesim.New(o)
	t.Cleanup(srv.Close)

	tok, err := ParseToken(pvesim.DefaultTokenID + "=" + pvesim.DefaultTokenSecret)
	if err != nil {
		t.Fatal(err)
	}

	api, err := NewTelmateAPI(ClientOptions{Endpoint: srv.URL(), Token: tok, TLS: &tls.Config{RootCAs: srv.CertPool(), MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}

	e := &env{t: t, srv: srv, api: api, cluster: c, events: &eventLog{}}
	e.refresh()

	return e
}

// refresh recomputes the specs from the (possibly modified) profile.
func (e *env) refresh() {
	e.t.Helper()

	img, err := schematic.ForCluster(e.cluster)
	if err != nil {
		e.t.Fatal(err)
	}

	specs, boot, err := Desired(e.cluster, img)
	if err != nil {
		e.t.Fatal(err)
	}

	e.img, e.specs, e.boot = img, specs, boot
}

func (e *env) executor(opts Options) *Executor {
	if opts.Retry.Initial == 0 {
		opts.Retry = Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond, Factor: 2}
	}

	if opts.Poll.Initial == 0 {
		opts.Poll = Backoff{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond, Factor: 1.5}
	}

	opts.Events = e.events.add

	return NewExecutor(e.api, opts)
}

func (e *env) plan(ctx context.Context) *Plan {
	e.t.Helper()

	p, err := Observe(ctx, e.api, e.cluster.Metadata.Name, e.specs, e.boot)
	if err != nil {
		e.t.Fatalf("observe: %v\n%s", err, e.srv.RequestSummary())
	}

	p.Findings = LintSpecs(e.specs, e.img)

	return p
}

// provision plans and applies once.
func (e *env) provision(ctx context.Context, opts Options) (*Plan, *Result, error) {
	e.t.Helper()
	p := e.plan(ctx)
	r, err := e.executor(opts).Apply(ctx, p)

	return p, r, err
}

// owned returns the VMs carrying one of the cluster's ownership tags (node VMs and holders),
// by name.
func (e *env) owned() map[string][]pvesim.VM {
	out := map[string][]pvesim.VM{}
	for _, vm := range e.srv.VMs() {
		if o := ParseOwnership(vm.Tags()); o.Cluster == e.cluster.Metadata.Name && o.Kind != KindNone {
			out[vm.Name()] = append(out[vm.Name()], vm)
		}
	}

	return out
}

// assertConverged checks: exactly one running VM per node, no duplicates, no VM or volume
// left over.
func (e *env) assertConverged() {
	e.t.Helper()

	owned := e.owned()
	for _, s := range e.specs {
		vms := owned[s.Name]
		if len(vms) != 1 {
			e.t.Errorf("node %s: %d VMs (want exactly 1)", s.Name, len(vms))
			continue
		}

		if !vms[0].Running {
			e.t.Errorf("node %s: VM %d not running", s.Name, vms[0].ID)
		}

		if vms[0].Node != s.PVENode {
			e.t.Errorf("node %s: on %s, want %s", s.Name, vms[0].Node, s.PVENode)
		}
	}

	if len(owned) != len(e.specs) {
		names := make([]string, 0, len(owned))
		for n := range owned {
			names = append(names, n)
		}

		sort.Strings(names)
		e.t.Errorf("owned VMs %v, want %d nodes", names, len(e.specs))
	}

	ids := map[int]bool{}
	for _, vm := range e.srv.VMs() {
		ids[vm.ID] = true
	}

	for _, v := range e.srv.Volumes() {
		if v.VMID != 0 && !ids[v.VMID] {
			e.t.Errorf("orphan volume %s (VM %d does not exist)", v.VolID, v.VMID)
		}
	}
}

func (e *env) vmByName(name string) pvesim.VM {
	e.t.Helper()

	vms := e.owned()[name]
	if len(vms) != 1 {
		e.t.Fatalf("VM %s: found %d", name, len(vms))
	}

	return vms[0]
}

func summary(srv *pvesim.Server) string { return srv.RequestSummary() }

func mutating(srv *pvesim.Server) []string {
	var out []string
	for _, r := range srv.MutatingRequests() {
		out = append(out, fmt.Sprintf("%s %s -> %d", r.Method, r.Path, r.Status))
	}

	return out
}

// touching are the mutating requests that concern one of the VM ids, or create or clone a VM
// with the name or one of the ids: what a node in conflict must never get.
func touching(srv *pvesim.Server, name string, ids ...int) []string {
	var out []string

	for _, r := range srv.MutatingRequests() {
		hit := name != "" && r.Params["name"] == name
		for _, id := range ids {
			vmid := fmt.Sprint(id)
			hit = hit || strings.Contains(r.Path+"/", "/qemu/"+vmid+"/") ||
				r.Params["vmid"] == vmid || r.Params["newid"] == vmid || r.Params["target-vmid"] == vmid
		}

		if hit {
			out = append(out, fmt.Sprintf("%s %s %v -> %d", r.Method, r.Path, r.Params, r.Status))
		}
	}

	return out
}
