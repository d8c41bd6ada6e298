package talosnode_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/cosi-project/runtime/pkg/safe"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"

	"github.com/talforge/talforge/internal/testenv/talosnode"
)

// testCluster is a machinery-generated cluster: one secrets bundle, control plane and worker configs and
// the admin talosconfig.
type testCluster struct {
	controlPlane []byte
	worker       []byte
	talosconfig  *clientconfig.Config
	bundle       *secrets.Bundle
}

func generateCluster(t *testing.T, name string) testCluster {
	t.Helper()

	contract, err := config.ParseContractFromVersion(talosnode.DefaultTalosVersion)
	if err != nil {
		t.Fatal(err)
	}

	bundle, err := secrets.NewBundle(secrets.NewFixedClock(time.Now()), contract)
	if err != nil {
		t.Fatal(err)
	}

	input, err := generate.NewInput(name, "https://127.0.0.1:6443", constants.DefaultKubernetesVersion,
		generate.WithVersionContract(contract),
		generate.WithSecretsBundle(bundle),
		generate.WithInstallDisk("/dev/sda"),
	)
	if err != nil {
		t.Fatal(err)
	}

	render := func(typ machine.Type) []byte {
		provider, err := input.Config(typ)
		if err != nil {
			t.Fatal(err)
		}

		raw, err := provider.Bytes()
		if err != nil {
			t.Fatal(err)
		}

		return raw
	}

	talosconfig, err := input.Talosconfig()
	if err != nil {
		t.Fatal(err)
	}

	return testCluster{controlPlane: render(machine.TypeControlPlane), worker: render(machine.TypeWorker), talosconfig: talosconfig, bundle: bundle}
}

func startNode(t *testing.T, opts talosnode.Options) *talosnode.Node {
	t.Helper()

	if opts.Logf == nil {
		opts.Logf = t.Logf
	}

	n, err := talosnode.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}

	t.Cleanup(func() { _ = n.Close() }) // Close never fails

	return n
}

func insecureClient(t *testing.T, addr string) *client.Client {
	t.Helper()

	c, err := client.New(t.Context(),
		client.WithTLSConfig(&tls.Config{InsecureSkipVerify: true}), // maintenance mode is insecure by design
		client.WithEndpoints(addr))
	if err != nil {
		t.Fatal(err)
	}

	t.Cleanup(func() { _ = c.Close() }) // test cleanup

	return c
}

func secureClient(t *testing.T, talosconfig *clientconfig.Config, addr string) *client.Client {
	t.Helper()

	c, err := client.New(t.Context(), client.WithConfig(talosconfig), client.WithEndpoints(addr))
	if err != nil {
		t.Fatal(err)
	}

	t.Cleanup(func() { _ = c.Close() }) // test cleanup

	return c
}

// eventually polls check until it returns nil or the deadline passes (then it fails with the last error).
func eventually(t *testing.T, timeout time.Duration, what string, check func(ctx context.Context) error) {
	t.Helper()

	deadline := time.Now().Add(timeout)

	var last error

	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		last = check(ctx)

		cancel()

		if last == nil {
			return
		}

		time.Sleep(20 * time.Millisecond)
	}

	t.Fatalf("%s: not reached within %s: %v", what, timeout, last)
}

// stageOf reads MachineStatus through a fresh client, so gRPC reconnect backoff never delays the answer.
func stageOf(ctx context.Context, t *testing.T, newClient func() *client.Client) (runtime.MachineStage, error) {
	t.Helper()

	c := newClient()
	defer c.Close() // test helper

	ms, err := safe.StateGetByID[*runtime.MachineStatus](ctx, c.COSI, runtime.MachineStatusID)
	if err != nil {
		return runtime.MachineStageUnknown, err
	}

	return ms.TypedSpec().Stage, nil
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()

	if err == nil {
		t.Fatalf("want gRPC code %s, got success", want)
	}

	if got := status.Code(unwrapNodeError(err)); got != want {
		t.Fatalf("want gRPC code %s, got %s (%v)", want, got, err)
	}
}

// unwrapNodeError strips machinery's multierror/NodeError wrapping so status.Code sees the gRPC status.
func unwrapNodeError(err error) error {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus().Err()
	}

	return err
}

// refused reports whether a plain TCP connect is refused (the node is down), as opposed to accepted.
func refused(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil
	}

	_ = conn.Close() // probe only

	return fmt.Errorf("%s accepts connections", addr)
}

// mutate replaces the first old with replacement in a config, failing when old is absent (so a changed
// generator cannot silently make a test vacuous).
func mutate(t *testing.T, cfg []byte, old, replacement string) []byte {
	t.Helper()

	if !bytes.Contains(cfg, []byte(old)) {
		t.Fatalf("test setup: %q not found in the generated config", old)
	}

	return bytes.Replace(cfg, []byte(old), []byte(replacement), 1)
}
