package bootstrap

import (
	"context"
	"sync"

	"github.com/siderolabs/talos/pkg/machinery/client"
)

// connMode is how a connection authenticates: as the cluster (mTLS with the talosconfig) or as a
// maintenance client (the node's self-signed certificate is not verified).
type connMode int

const (
	modeSecure connMode = iota
	modeMaintenance
)

type connKey struct {
	node string
	mode connMode
}

// sharedConn is one node's connection and the calls using it.
type sharedConn struct {
	client *client.Client
	users  int
	// dropped: no new call gets it; the last user closes it.
	dropped bool
}

// conns keeps one connection per node and mode between calls. The waits ask every node again each
// PollInterval (apid, etcd, the bootstrap), and a fresh client per call cost a TLS handshake on
// both ends each time: on the critical path of `up`, as the nodes are waited for (issue 16).
//
// A connection is kept only while its calls succeed: the first failed call drops it, so the next
// attempt dials afresh. A node that rebooted, went back to maintenance mode or belongs to another
// cluster is therefore seen by the same TLS handshake as before, and gRPC's reconnect backoff never
// delays a wait. A dropped connection is closed when its last call returns, so a call running on
// another goroutine is never cut off.
type conns struct {
	mu   sync.Mutex
	open map[connKey]*sharedConn
	// closed: Close ran; later calls still work, on connections of their own.
	closed bool
}

// acquire returns the node's connection in mode, dialing it when there is none. dial does no I/O
// (gRPC connects on the first call).
func (p *conns) acquire(key connKey, dial func() (*client.Client, error)) (*sharedConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()

	if sc := p.open[key]; sc != nil {
		sc.users++

		return sc, nil
	}

	c, err := dial()
	if err != nil {
		return nil, err
	}

	sc := &sharedConn{client: c, users: 1, dropped: p.closed}

	if !p.closed {
		if p.open == nil {
			p.open = map[connKey]*sharedConn{}
		}

		p.open[key] = sc
	}

	return sc, nil
}

// release ends one call on sc; failed drops the connection.
func (p *conns) release(key connKey, sc *sharedConn, failed bool) {
	p.mu.Lock()

	sc.users--

	if failed && !sc.dropped {
		sc.dropped = true

		if p.open[key] == sc {
			delete(p.open, key)
		}
	}

	closeIt := sc.dropped && sc.users == 0

	p.mu.Unlock()

	if closeIt {
		_ = sc.client.Close() //nolint:errcheck // nothing to do about a failed close of a probe connection
	}
}

// closeAll drops every connection; each closes now or when its last call returns.
func (p *conns) closeAll() {
	p.mu.Lock()

	p.closed = true

	var idle []*client.Client

	for key, sc := range p.open {
		sc.dropped = true

		if sc.users == 0 {
			idle = append(idle, sc.client)
		}

		delete(p.open, key)
	}

	p.mu.Unlock()

	for _, c := range idle {
		_ = c.Close() //nolint:errcheck // see release
	}
}

// call runs fn on the node's connection in mode. An error from fn drops the connection.
func (r *Runner) call(ctx context.Context, n Node, mode connMode, fn func(*client.Client) error) error {
	key := connKey{node: n.Name, mode: mode}

	sc, err := r.conns.acquire(key, func() (*client.Client, error) {
		if mode == modeMaintenance {
			return r.insecureClient(ctx, n)
		}

		return r.secureClient(ctx, n)
	})
	if err != nil {
		return err
	}

	err = fn(sc.client)
	r.conns.release(key, sc, err != nil)

	return err
}

// Close closes the connections the Runner keeps to the nodes. A Runner that is used after Close
// dials again for each call.
func (r *Runner) Close() error {
	r.conns.closeAll()

	return nil
}
