package lifecycle_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talforge/talforge/internal/testenv/e2e"
	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/lifecycle"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/proxmox"
)

// benchScale is the 1/100: a real homelab's minutes become seconds.
const benchScale = 0.01

// benchJoin is how long a further control plane takes to join a running etcd: Talos starts
// its etcd as soon as the first member answers, so the model folds it into the bootstrap and
// the Env keeps it at a millisecond.
const benchJoin = time.Millisecond

// critStep is one step of the model's dependency graph of `up`.
type critStep struct {
	name  string
	took  time.Duration
	after []string
}

// upGraph is what `up` from an empty PVE has to wait for, per the latency model. Every node
// goes through the same chain at once (VMs are created in parallel, each boots and installs on
// its own), so one node's chain stands for all of them:
//
//	vm create → ISO boot → install ─┐ (every control plane configured: talforge decides that
//	                                │  etcd is empty only when all of them answer)
//	                                └→ etcd bootstrap → join → Longhorn rollout (Helm needs
//	                                   the kube-apiserver, which needs etcd)
//
// Nothing of the model can overlap another step of the chain, so the critical path is the sum:
// 30 + 250 + 600 + 200 (+1 join) + 900 ms = 1.981 s at 1/100. Generate, plan, the PVE tasks
// other than the create (TaskLatency each) and the API calls themselves are talforge's own
// time: that, and every wait longer than needed, is what the 10% budget allows for.
func upGraph(l e2e.Latency) []critStep {
	return []critStep{
		{name: "vm create", took: l.VMCreate},
		{name: "ISO boot", took: l.ISOBoot, after: []string{"vm create"}},
		{name: "install", took: l.Install, after: []string{"ISO boot"}},
		{name: "etcd bootstrap", took: l.Bootstrap + benchJoin, after: []string{"install"}},
		{name: "Longhorn rollout", took: l.LonghornRollout, after: []string{"etcd bootstrap"}},
	}
}

// criticalPath is the longest path through the graph (steps listed after what they follow).
func criticalPath(steps []critStep) time.Duration {
	end := map[string]time.Duration{}
	var longest time.Duration
	for _, s := range steps {
		var start time.Duration
		for _, a := range s.after {
			start = max(start, end[a])
		}
		end[s.name] = start + s.took
		longest = max(longest, end[s.name])
	}
	return longest
}

func TestCriticalPath(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []critStep
		want  time.Duration
	}{
		{"model at 1/100", upGraph(e2e.RealHomelab.Scaled(benchScale)), 1981 * time.Millisecond},
		{"parallel branches", []critStep{{"a", 3, nil}, {"b", 5, nil}, {"c", 1, []string{"a", "b"}}}, 6},
	} {
		if got := criticalPath(tc.steps); got != tc.want {
			t.Errorf("%s: critical path %s, want %s", tc.name, got, tc.want)
		}
	}
}

// benchProfile is the reference homelab's shape at n nodes: three control planes behind a
// VIP, the rest workers, Longhorn with its S3 backup target.
func benchProfile(n int) (string, []string) {
	var nodes strings.Builder
	var addrs []string
	for i := 1; i <= n; i++ {
		role, ip, name := "worker", fmt.Sprintf("127.0.71.%d", 20+i-3), fmt.Sprintf("lab-worker-%d", i-3)
		if i <= 3 {
			role, ip, name = "controlplane", fmt.Sprintf("127.0.71.%d", 10+i), fmt.Sprintf("lab-cp-%d", i)
		}
		fmt.Fprintf(&nodes, "  - {name: %s, role: %s, ip: %s}\n", name, role, ip)
		addrs = append(addrs, ip)
	}
	profile := strings.Replace(homelab, "  - {name: lab-cp-1, role: controlplane, ip: 127.0.71.11}\n  - {name: lab-worker-1, role: worker, ip: 127.0.71.21}\n", nodes.String(), 1)
	profile = strings.Replace(profile, "nameservers: [127.0.71.1]}", "nameservers: [127.0.71.1], vip: 127.0.71.10}", 1)
	return profile, addrs
}

// BenchmarkUp runs `up` from an empty PVE and a wiped cluster on the emulated homelab with
// the latency model of a real one (e2e.RealHomelab: VM create 3 s, ISO boot 25 s, install
// 60 s, etcd bootstrap 20 s, Longhorn rollout 90 s) scaled by 1/100, for 3 nodes (3 control
// planes + VIP) and 12 (3 + 9 workers). It reports the wall time, the model's critical path
// (upGraph) and their ratio, which must stay within 1.10.
//
// talforge's poll cadences are scaled by the same 1/100 (Talos and Longhorn 2 s → 20 ms;
// Proxmox tasks, proxmox.DefaultPoll: 50 ms → 0.5 ms, growing to 500 ms → 5 ms) so that they
// cost the same share of the critical path as they do on a real homelab; everything else is
// the product's default (Proxmox parallelism included).
func BenchmarkUp(b *testing.B) {
	for _, n := range []int{3, 12} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) { benchUp(b, n) })
	}
}

func benchUp(b *testing.B, n int) {
	model := e2e.RealHomelab.Scaled(benchScale)
	critical := criticalPath(upGraph(model))
	profile, addrs := benchProfile(n)
	env := shared.Start(b, e2e.Options{Addresses: addrs, Latency: model, TaskLatency: time.Millisecond, JoinDelay: benchJoin})
	proj := env.Project(b, "lab", profile)
	out := &syncBuffer{}
	opts := benchOptions(b, env, proj, out)

	// One untimed up first: it fills the chart cache (an operator's downloads each Longhorn
	// version once) and warms the emulators.
	resetLab(b, env, proj, opts)
	if _, err := lifecycle.Up(b.Context(), opts); err != nil {
		b.Fatalf("warm-up up: %v\n%s", err, out.String())
	}
	var total time.Duration
	var last *lifecycle.UpResult
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		resetLab(b, env, proj, opts)
		out.Reset()
		b.StartTimer()
		start := time.Now()
		res, err := lifecycle.Up(b.Context(), opts)
		wall := time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatalf("up: %v\n%s", err, out.String())
		}
		total += wall
		last = res
		var phases []string
		for _, p := range res.Phases {
			phases = append(phases, fmt.Sprintf("%s %s", p.Name, p.Took.Round(time.Millisecond)))
		}
		b.Logf("up of %d nodes: %s (%s)\n%s", n, wall.Round(time.Millisecond), strings.Join(phases, ", "), out.String())
		b.StartTimer()
	}
	wall := total / time.Duration(b.N)
	ratio := wall.Seconds() / critical.Seconds()
	b.ReportMetric(wall.Seconds(), "wall-s")
	b.ReportMetric(critical.Seconds(), "critical-path-s")
	b.ReportMetric(ratio, "wall/critical")
	b.ReportMetric(0, "ns/op") // the wall time above is the figure; ns/op counts the set-up's pauses
	if last != nil {
		b.Logf("%d nodes, last run: %s", n, last.CriticalPath)
	}
	if ratio > 1.10 {
		b.Fatalf("wall time %s is %.2f× the model's critical path %s (want ≤ 1.10)", wall.Round(time.Millisecond), ratio, critical)
	}
}

// scaled is d at the model's scale.
func scaled(d time.Duration) time.Duration { return time.Duration(float64(d) * benchScale) }

// benchOptions are lab.options() with talforge's poll cadences scaled like the model.
func benchOptions(b *testing.B, env *e2e.Env, proj *e2e.Project, out *syncBuffer) lifecycle.Options {
	l := &lab{env: env, proj: proj, charts: b.TempDir(), out: out}
	opts := l.options()
	opts.Detail = nil
	if os.Getenv("BENCH_DETAIL") != "" {
		opts.Detail = stampWriter{b: b, start: time.Now()}
	}
	poll := proxmox.DefaultPoll()
	poll.Initial, poll.Max = scaled(poll.Initial), scaled(poll.Max)
	opts.Proxmox = proxmox.Options{Poll: poll}
	opts.Talos.PollInterval = 20 * time.Millisecond
	opts.Longhorn.Poll = 20 * time.Millisecond
	opts.Renderers = []generate.Renderer{longhorn.Files}
	return opts
}

// resetLab starts an iteration from an empty PVE and a wiped cluster: the VMs of the last
// one are destroyed (the Env then loses etcd and wipes the apiserver) and clusters/lab is
// generated afresh (new secrets, no kubeconfig).
func resetLab(b *testing.B, env *e2e.Env, proj *e2e.Project, opts lifecycle.Options) {
	b.Helper()
	if len(env.PVE.VMs()) > 0 {
		resets := env.Resets()
		if _, err := lifecycle.Destroy(b.Context(), opts, lifecycle.DestroyOptions{}); err != nil {
			b.Fatalf("destroy: %v", err)
		}
		deadline := time.Now().Add(time.Minute)
		for env.Resets() == resets {
			if time.Now().After(deadline) {
				b.Fatal("the Env did not lose the cluster after every VM was destroyed")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if len(env.PVE.VMs()) != 0 {
		b.Fatalf("PVE not empty: %d VMs", len(env.PVE.VMs()))
	}
	out := filepath.Join(proj.Root, "clusters", "lab")
	if err := os.RemoveAll(out); err != nil {
		b.Fatal(err)
	}
	// The project is generated, as after `talforge generate` and a commit: the model has no
	// generate step (it is CPU time, the same on any homelab). up's generate phase still runs.
	if _, err := generate.Run(b.Context(), generate.Options{Profile: opts.Profile, Renderers: opts.Renderers}); err != nil {
		b.Fatalf("generate: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "kubeconfig.sops.yaml")); err == nil {
		b.Fatal("generate wrote a kubeconfig: the cluster would not start from scratch")
	}
}

// stampWriter logs each stage's own progress line with the time of day (BENCH_DETAIL=1), to
// see where a run spent its time.
type stampWriter struct {
	b     *testing.B
	start time.Time
}

func (w stampWriter) Write(p []byte) (int, error) {
	w.b.Logf("%s %s", time.Now().Format("15:04:05.000"), strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
