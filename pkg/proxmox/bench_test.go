package proxmox

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/talforge/talforge/internal/testenv/pvesim"
	"github.com/talforge/talforge/pkg/profile"
)

// benchLatency is the emulated PVE task latency of the Speed section of issue 3.
var benchLatency = map[string]time.Duration{"qmcreate": 300 * time.Millisecond, "qmstart": 100 * time.Millisecond}

func benchCluster(b *testing.B, n int) *profile.Cluster {
	b.Helper()

	var nodes strings.Builder
	for i := 1; i <= n; i++ {
		role := "worker"
		if i <= 3 {
			role = "controlplane"
		}

		fmt.Fprintf(&nodes, "  - {name: node-%02d, role: %s, ip: 10.30.0.%d}\n", i, role, 10+i)
	}

	c, err := profile.Parse(filepath.Join(b.TempDir(), "profiles", "bench.yaml"), []byte(`apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: bench}
talos: {version: v1.14.1}
network: {cidr: 10.30.0.0/24, gateway: 10.30.0.1, nameservers: [10.30.0.1]}
proxmox:
  endpoint: https://pve.bench:8006/api2/json
  node: pve
  storage: local-lvm
  defaults: {cores: 2, memory: 4096, disk: 20G, longhornDisk: 50G}
nodes:
`+nodes.String()+`longhorn: {replicaCount: 1}
`))
	if err != nil {
		b.Fatal(err)
	}

	return c
}

// applyOnce provisions n VMs on a fresh emulator and returns the wall time of Apply (the
// observation before it is not timed: it is the same for every parallelism).
func applyOnce(b *testing.B, n, parallelism int, poll Backoff) time.Duration {
	b.Helper()
	b.StopTimer()

	c := benchCluster(b, n)
	e := newEnvWith(b, c, pvesim.Options{Schema: pveSchema(b), AuthFailDelay: -1, Latency: benchLatency, DefaultLatency: 10 * time.Millisecond})
	e.srv.SeedVolume(pvesim.Volume{VolID: e.boot.VolID(), Content: "iso", Format: "iso", Size: 100 << 20})

	ctx := context.Background()
	p := e.plan(ctx)
	ex := NewExecutor(e.api, Options{Parallelism: parallelism, Poll: poll})

	b.StartTimer()

	start := time.Now()

	if _, err := ex.Apply(ctx, p); err != nil {
		b.Fatalf("apply: %v", err)
	}

	wall := time.Since(start)

	b.StopTimer()
	e.srv.Close()
	b.StartTimer()

	return wall
}

func median(ds []time.Duration) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

// BenchmarkProvision12VMs provisions 12 VMs (create 300 ms, start 100 ms emulated) at
// parallelism 1, 4 and 12 and reports the wall time against the target
// 1.3 × ceil(N/p) × the single-VM critical path (measured first, median of 3).
// "ratio" is wall / (ceil(N/p) × critical path) and must stay ≤ 1.3.
// The telmate-2s variants poll tasks on Telmate's fixed 2 s schedule for comparison.
func BenchmarkProvision12VMs(b *testing.B) {
	const n = 12

	own := DefaultPoll()
	telmate := Backoff{Initial: 2 * time.Second, Max: 2 * time.Second, Factor: 1}

	cases := []struct {
		name string
		p    int
		poll Backoff
	}{
		{"p=1", 1, own}, {"p=4", 4, own}, {"p=12", 12, own}, {"telmate-2s/p=12", 12, telmate},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var crit []time.Duration
			for range 3 {
				crit = append(crit, applyOnce(b, 1, 1, tc.poll))
			}

			critical := median(crit)

			var total time.Duration

			b.ResetTimer()

			for range b.N {
				total += applyOnce(b, n, tc.p, tc.poll)
			}

			wall := total / time.Duration(b.N)
			waves := math.Ceil(float64(n) / float64(tc.p))
			target := time.Duration(1.3 * waves * float64(critical))

			b.ReportMetric(wall.Seconds(), "wall-s")
			b.ReportMetric(critical.Seconds(), "critical-path-s")
			b.ReportMetric(target.Seconds(), "target-s")
			b.ReportMetric(wall.Seconds()/(waves*critical.Seconds()), "ratio")

			if wall > target {
				b.Errorf("wall %s exceeds the target %s (1.3 × %v × critical path %s)", wall, target, waves, critical)
			}
		})
	}
}
