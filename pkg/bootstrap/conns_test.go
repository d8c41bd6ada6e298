package bootstrap_test

import (
	"testing"
	"time"

	"github.com/talforge/talforge/pkg/bootstrap"
)

// TestConnectionsAreReused checks that the waits ask each node again on the connection they
// already have (one TLS handshake per node, not one per poll and call), and that a node that
// went down and came back is still reached: the failed call drops its connection and the
// next one dials afresh.
func TestConnectionsAreReused(t *testing.T) {
	r := renderProfile(t, "ha")
	e := emulate(t, r, emulateOptions{subnet: 17, configured: r.configs})

	var out syncBuffer

	run := e.runner(t, &out, bootstrap.Options{})
	t.Cleanup(func() { _ = run.Close() })

	if _, err := run.BootstrapHealthy(t.Context()); err != nil {
		t.Fatal(err)
	}

	for range 5 {
		if err := run.TalosHealth(t.Context()); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := run.Kubeconfig(t.Context()); err != nil {
		t.Fatal(err)
	}

	// Every node answered 6 apid checks, every control plane also the etcd checks, Bootstrap
	// (cp-1) and the kubeconfig: with a client per call that was one handshake each.
	for name, n := range e.nodes {
		if got := n.Conns(); got != 1 {
			t.Errorf("%s accepted %d connections, want 1 (one per node, reused)", name, got)
		}
	}

	cp1 := e.nodes["cp-1"]
	cp1.RefuseFor(50 * time.Millisecond) // drops the open connection; back in the same mode

	if err := run.TalosHealth(t.Context()); err != nil {
		t.Fatalf("health after cp-1 came back: %v\n%s", err, out.String())
	}

	if got := cp1.Conns(); got != 2 {
		t.Errorf("cp-1 accepted %d connections after it came back, want 2 (the dropped one, one new)", got)
	}

	_ = run.Close()

	if err := run.TalosHealth(t.Context()); err != nil {
		t.Fatalf("health after Close: %v", err)
	}
}
