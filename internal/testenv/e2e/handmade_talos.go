// The Talos half of a hand-made cluster: what `talosctl apply-config --insecure`,
// `talosctl bootstrap` and `talosctl kubeconfig` do, through the real machinery client.

package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// handMadePoll is how often the fixture retries while nodes boot, install and join.
const handMadePoll = 20 * time.Millisecond

func (e *Env) handMadeTalos(ctx context.Context, o *HandMadeOptions, h *HandMade, gen *handMadeConfigs) error {
	// talosctl apply-config --insecure -n IP --file NODE.yaml, once per node; a node still
	// booting from the ISO refuses connections, so retry like the person does.
	for _, n := range h.Nodes {
		if err := retry(ctx, func(ctx context.Context) error { return e.ApplyInsecure(ctx, n.IP, gen.configs[n.Name]) }); err != nil {
			return fmt.Errorf("node %s: apply config in maintenance mode: %w", n.Name, err)
		}
	}
	// Wait until every node answers with the cluster's CA (installed and rebooted).
	for _, n := range h.Nodes {
		if err := retry(ctx, func(ctx context.Context) error {
			return e.withTalos(ctx, gen.talosconfig, n.IP, func(c *client.Client) error {
				_, err := c.Version(ctx)
				return err
			})
		}); err != nil {
			return fmt.Errorf("node %s: not configured: %w", n.Name, err)
		}
	}

	// talosctl bootstrap -n FIRST-CP, once; then every control plane joins etcd.
	first := o.ControlPlanes[0]
	attempts := 0
	if err := retry(ctx, func(ctx context.Context) error {
		attempts++
		return e.withTalos(ctx, gen.talosconfig, first.IP, func(c *client.Client) error {
			err := c.Bootstrap(ctx, &machine.BootstrapRequest{})
			switch {
			case status.Code(err) == codes.AlreadyExists && attempts > 1:
				return nil // an earlier attempt took, its answer was lost
			case status.Code(err) == codes.AlreadyExists:
				return stop(err)
			}
			return err
		})
	}); err != nil {
		return fmt.Errorf("bootstrap etcd on %s: %w", first.Name, err)
	}
	if err := retry(ctx, func(ctx context.Context) error {
		return e.withTalos(ctx, gen.talosconfig, first.IP, func(c *client.Client) error {
			resp, err := c.EtcdMemberList(ctx, &machine.EtcdMemberListRequest{})
			if err != nil {
				return err
			}
			var names []string
			for _, m := range resp.GetMessages() {
				for _, mem := range m.GetMembers() {
					names = append(names, mem.GetHostname())
				}
			}
			for _, cp := range o.ControlPlanes {
				if !slices.Contains(names, cp.Name) {
					return fmt.Errorf("etcd members %v: %s has not joined", names, cp.Name)
				}
			}
			return nil
		})
	}); err != nil {
		return err
	}

	// talosctl kubeconfig -n FIRST-CP.
	if err := e.withTalos(ctx, gen.talosconfig, first.IP, func(c *client.Client) error {
		var err error
		h.Kubeconfig, err = c.Kubeconfig(ctx)
		return err
	}); err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}

	// The kubelets register their Nodes (the Env's syncKube plays them).
	return retry(ctx, func(ctx context.Context) error {
		for _, n := range h.Nodes {
			if _, err := e.cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{}); err != nil {
				return fmt.Errorf("kubernetes node %s: %w", n.Name, err)
			}
		}
		return nil
	})
}

// ApplyInsecure is `talosctl apply-config --insecure` to the node at ip: no client certificate,
// the node's self-signed maintenance certificate not verified, mode auto.
func (e *Env) ApplyInsecure(ctx context.Context, ip string, cfg []byte) error {
	c, err := client.New(ctx,
		client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true}), // maintenance mode is insecure by design
		client.WithEndpoints(net.JoinHostPort(ip, strconv.Itoa(e.TalosPort))))
	if err != nil {
		return err
	}
	defer c.Close() //nolint:errcheck // nothing to do about a failed close
	_, err = c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: cfg, Mode: machine.ApplyConfigurationRequest_AUTO})
	return err
}

// withTalos calls fn with a client of the person's talosconfig aimed at one node (the
// talosconfig's endpoints name the nodes without the Env's port).
func (e *Env) withTalos(ctx context.Context, cfg *clientconfig.Config, ip string, fn func(*client.Client) error) error {
	c, err := client.New(ctx, client.WithConfig(cfg), client.WithEndpoints(net.JoinHostPort(ip, strconv.Itoa(e.TalosPort))))
	if err != nil {
		return err
	}
	defer c.Close() //nolint:errcheck // nothing to do about a failed close
	return fn(c)
}

// retry calls fn until it succeeds or ctx ends (then the last error, with ctx's).
func retry(ctx context.Context, fn func(context.Context) error) error {
	for {
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := fn(callCtx)
		cancel()
		var s stopError
		if err == nil || errors.As(err, &s) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(handMadePoll):
		}
	}
}

// stopError ends a retry: the condition will not change by waiting.
type stopError struct{ error }

func (s stopError) Unwrap() error { return s.error }

func stop(err error) error { return stopError{err} }
