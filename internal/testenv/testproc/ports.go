package testproc

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// FreePorts returns n distinct TCP ports free on 127.0.0.1 at the time of the call. They
// are held until all n are chosen, so they differ; another process may take one before
// the child binds it (see [ErrPortRace]).
func FreePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port on 127.0.0.1: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// portRaceAttempts bounds RetryPortRace: a lost race is rare, three in a row mean
// something else holds ports.
const portRaceAttempts = 3

// RetryPortRace calls launch until it succeeds, fails with an error other than
// [ErrPortRace], ctx ends, or three attempts lost the race; it returns the first success
// or the last error. launch must choose new ports on every call and clean up after a
// failed attempt.
func RetryPortRace[T any](ctx context.Context, launch func(context.Context) (T, error)) (T, error) {
	var lastErr error
	for attempt := 0; attempt < portRaceAttempts; attempt++ {
		v, err := launch(ctx)
		if err == nil {
			return v, nil
		}
		lastErr = err
		if !errors.Is(err, ErrPortRace) || ctx.Err() != nil {
			break
		}
	}
	var zero T
	return zero, lastErr
}
