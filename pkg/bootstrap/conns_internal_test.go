package bootstrap

import (
	"crypto/tls"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/client"
)

// idleClient is a client that never connects: gRPC dials on the first call, and none is made.
func idleClient(t *testing.T) *client.Client {
	t.Helper()

	c, err := client.New(t.Context(), client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true}), client.WithEndpoints("127.0.0.1:1")) //nolint:gosec // never used
	if err != nil {
		t.Fatal(err)
	}

	return c
}

// closedAlready reports whether c was closed: gRPC refuses a second Close.
func closedAlready(c *client.Client) bool { return c.Close() != nil }

func TestConnsDropAndClose(t *testing.T) {
	var (
		p     conns
		dials int
	)

	dial := func() (*client.Client, error) {
		dials++

		return idleClient(t), nil
	}
	key := connKey{node: "cp-1", mode: modeSecure}

	a, err := p.acquire(key, dial)
	if err != nil {
		t.Fatal(err)
	}

	b, _ := p.acquire(key, dial) //nolint:errcheck // dial never fails here
	if a != b || dials != 1 {
		t.Fatalf("second acquire: same connection %v, %d dials; want the same connection, 1 dial", a == b, dials)
	}

	other, _ := p.acquire(connKey{node: "cp-1", mode: modeMaintenance}, dial) //nolint:errcheck // dial never fails here
	if other == a || dials != 2 {
		t.Fatalf("the maintenance connection is the secure one (%v) or was not dialed (%d dials)", other == a, dials)
	}

	p.release(key, a, true) // a failed call: dropped, but b still uses it

	if a.client == nil || !a.dropped || a.users != 1 {
		t.Fatalf("after a failed call: dropped %v, users %d; want dropped with one user left", a.dropped, a.users)
	}

	c, _ := p.acquire(key, dial) //nolint:errcheck // dial never fails here
	if c == a || dials != 3 {
		t.Fatalf("acquire after a drop reused the dropped connection (%v) or did not dial (%d dials)", c == a, dials)
	}

	p.release(key, b, false) // the last user of the dropped connection closes it

	if !closedAlready(a.client) {
		t.Fatal("the dropped connection was not closed when its last call returned")
	}

	p.release(key, c, false) // a successful call keeps the connection open

	if closedAlready(c.client) {
		t.Fatal("a connection whose call succeeded was closed")
	}
}

func TestConnsCloseAll(t *testing.T) {
	var p conns

	dial := func() (*client.Client, error) { return idleClient(t), nil }
	idleKey, busyKey := connKey{node: "cp-1"}, connKey{node: "cp-2"}

	idle, _ := p.acquire(idleKey, dial) //nolint:errcheck // dial never fails here
	p.release(idleKey, idle, false)

	busy, _ := p.acquire(busyKey, dial) //nolint:errcheck // dial never fails here

	p.closeAll()

	if !closedAlready(idle.client) {
		t.Error("closeAll left an idle connection open")
	}

	if busy.users != 1 || !busy.dropped {
		t.Fatalf("busy connection: users %d, dropped %v", busy.users, busy.dropped)
	}

	p.release(busyKey, busy, false)

	if !closedAlready(busy.client) {
		t.Error("a connection in use during closeAll was not closed when its call returned")
	}

	late, _ := p.acquire(idleKey, dial) //nolint:errcheck // dial never fails here
	p.release(idleKey, late, false)

	if !closedAlready(late.client) {
		t.Error("a connection made after closeAll was kept open")
	}
}
