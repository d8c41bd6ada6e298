package talosnode_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"

	"github.com/talforge/talforge/internal/testenv/talosnode"
)

// eventLog records Options.OnEvent calls of any number of nodes.
type eventLog struct {
	mu     sync.Mutex
	events []talosnode.Event
}

func (l *eventLog) add(e talosnode.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()

	l.events = append(l.events, e)
}

// of returns the events of one node as "up|down <stage> <version>".
func (l *eventLog) of(addr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()

	var out []string

	for _, e := range l.events {
		if e.Addr != addr {
			continue
		}

		what := "down"
		if e.Up {
			what = "up"
		}

		out = append(out, fmt.Sprintf("%s %s %s", what, e.Stage, e.Version))
	}

	return out
}

// versionOf asks the Version RPC through a fresh client, so reconnect backoff never delays the answer.
func versionOf(ctx context.Context, newClient func() *client.Client) (string, error) {
	c := newClient()
	defer c.Close() // probe

	resp, err := c.Version(ctx)
	if err != nil {
		return "", err
	}

	return resp.GetMessages()[0].GetVersion().GetTag(), nil
}

// waitForVersion waits until the node answers Version with want.
func waitForVersion(t *testing.T, newClient func() *client.Client, want string) {
	t.Helper()

	eventually(t, settle, "node runs "+want, func(ctx context.Context) error {
		got, err := versionOf(ctx, newClient)
		if err == nil && got != want {
			return fmt.Errorf("version %s", got)
		}

		return err
	})
}

// lifecycleUpgrade runs LifecycleService.Upgrade to its end and returns the progress messages and
// the exit code (-1 when none came).
func lifecycleUpgrade(ctx context.Context, c *client.Client, image string) (messages []string, exitCode int32, err error) {
	if image != "" {
		if err := pull(ctx, c, image); err != nil {
			return nil, -1, err
		}
	}

	return lifecycleUpgradeOnly(ctx, c, image)
}

// pull is ImageService.Pull into the system containerd, as talosctl upgrade does first.
func pull(ctx context.Context, c *client.Client, image string) error {
	stream, err := c.ImageClient.Pull(ctx, &machine.ImageServicePullRequest{ImageRef: image})
	if err != nil {
		return err
	}

	for {
		if _, err := stream.Recv(); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// lifecycleUpgradeOnly is LifecycleService.Upgrade without the pull before it.
func lifecycleUpgradeOnly(ctx context.Context, c *client.Client, image string) (messages []string, exitCode int32, err error) {
	stream, err := c.LifecycleClient.Upgrade(ctx, &machine.LifecycleServiceUpgradeRequest{
		Source: &machine.InstallArtifactsSource{ImageName: image},
	})
	if err != nil {
		return nil, -1, err
	}

	exitCode = -1

	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return messages, exitCode, nil
		}

		if err != nil {
			return messages, exitCode, err
		}

		switch p := resp.GetProgress().GetResponse().(type) {
		case *machine.LifecycleServiceInstallProgress_Message:
			messages = append(messages, p.Message)
		case *machine.LifecycleServiceInstallProgress_ExitCode:
			exitCode = p.ExitCode
		}
	}
}

// legacyUpgrade calls the deprecated MachineService.Upgrade, as talosctl does for nodes without
// LifecycleService.
func legacyUpgrade(ctx context.Context, c *client.Client, image string, opts ...client.UpgradeOption) (*machine.UpgradeResponse, error) {
	//lint:ignore SA1019 the legacy API is what is under test
	return c.UpgradeWithOptions(ctx, append([]client.UpgradeOption{client.WithUpgradeImage(image)}, opts...)...)
}

// TestLegacyUpgradeOnOldNode: a v1.12 node has no LifecycleService; the legacy Upgrade reboots it
// into the image's version, which then has it.
func TestLegacyUpgradeOnOldNode(t *testing.T) {
	tc := generateCluster(t, "emu")
	events := &eventLog{}
	node := startNode(t, talosnode.Options{
		Address:      "127.0.0.41:0",
		Hostname:     "cp-1",
		Config:       tc.controlPlane,
		TalosVersion: "v1.12.6",
		BootDelay:    200 * time.Millisecond,
		OnEvent:      events.add,
	})
	ctx := t.Context()
	secure := func() *client.Client { return secureClient(t, tc.talosconfig, node.Addr()) }
	admin := secure()

	if got, err := versionOf(ctx, secure); err != nil || got != "v1.12.6" {
		t.Fatalf("Version = %q, %v; want v1.12.6", got, err)
	}

	_, _, err := lifecycleUpgrade(ctx, admin, "ghcr.io/siderolabs/installer:v1.13.4")
	wantCode(t, err, codes.Unimplemented)

	if err := admin.Bootstrap(ctx, &machine.BootstrapRequest{}); err != nil {
		t.Fatal(err)
	}

	resp, err := legacyUpgrade(ctx, admin, "ghcr.io/siderolabs/installer:v1.13.4")
	if err != nil {
		t.Fatalf("legacy upgrade: %v", err)
	}

	if msg := resp.GetMessages()[0]; msg.GetAck() != "Upgrade request received" || msg.GetActorId() == "" {
		t.Fatalf("legacy upgrade answered %v", msg)
	}

	eventually(t, settle, "node down for the upgrade", func(context.Context) error { return refused(node.Addr()) })
	waitForVersion(t, secure, "v1.13.4")

	if got := node.Version(); got != "v1.13.4" {
		t.Fatalf("Node.Version = %s", got)
	}

	want := []string{"up running v1.12.6", "down upgrading v1.12.6", "up running v1.13.4"}
	if got := events.of(node.Addr()); !slices.Equal(got, want) {
		t.Fatalf("events = %q, want %q", got, want)
	}

	// v1.13.4 > 1.13.0-alpha.2: the node serves LifecycleService now.
	_, _, err = lifecycleUpgrade(ctx, secure(), "")
	wantCode(t, err, codes.InvalidArgument)
}

// TestLifecycleUpgrade: a v1.14 node installs through the LifecycleService stream and boots the new
// version only once the client reboots it.
func TestLifecycleUpgrade(t *testing.T) {
	tc := generateCluster(t, "emu")
	events := &eventLog{}
	node := startNode(t, talosnode.Options{Address: "127.0.0.42:0", Config: tc.controlPlane, BootDelay: 200 * time.Millisecond, OnEvent: events.add})
	ctx := t.Context()
	secure := func() *client.Client { return secureClient(t, tc.talosconfig, node.Addr()) }
	admin := secure()

	refusals := []struct {
		name  string
		image string
		code  codes.Code
	}{
		{"no image", "", codes.InvalidArgument},
	}

	for _, tt := range refusals {
		_, _, err := lifecycleUpgrade(ctx, admin, tt.image)
		wantCode(t, err, tt.code)
	}

	// The installer runs from the containerd store only: an image not pulled fails.
	if _, _, err := lifecycleUpgradeOnly(ctx, admin, "factory.talos.dev/installer/abc:v1.14.3"); status.Code(err) != codes.Internal ||
		!strings.Contains(err.Error(), "not found in containerd store") {
		t.Fatalf("upgrade without a pull = %v, want Internal: not found in containerd store", err)
	}

	// An image whose tag is no version: the installer fails, nothing is staged.
	messages, exitCode, err := lifecycleUpgrade(ctx, admin, "ghcr.io/siderolabs/installer:latest")
	if err != nil || exitCode != 1 || len(messages) == 0 {
		t.Fatalf("upgrade to :latest = %q, exit code %d, %v; want messages and exit code 1", messages, exitCode, err)
	}

	messages, exitCode, err = lifecycleUpgrade(ctx, admin, "factory.talos.dev/installer/abc:v1.14.2")
	if err != nil || exitCode != 0 {
		t.Fatalf("upgrade = %q, exit code %d, %v; want exit code 0", messages, exitCode, err)
	}

	if len(messages) < 2 || !strings.Contains(strings.Join(messages, "\n"), "v1.14.2") {
		t.Fatalf("progress messages %q do not tell about v1.14.2", messages)
	}

	// No reboot yet: the node still runs the old version.
	if got, err := versionOf(ctx, secure); err != nil || got != talosnode.DefaultTalosVersion || !node.Up() {
		t.Fatalf("before the reboot: Version = %q, %v, up %v; want %s and up", got, err, node.Up(), talosnode.DefaultTalosVersion)
	}

	reboot, err := admin.RebootWithResponse(ctx)
	if err != nil {
		t.Fatalf("reboot: %v", err)
	}

	if reboot.GetMessages()[0].GetActorId() == "" {
		t.Fatal("reboot answered no actor id")
	}

	eventually(t, settle, "node down for the reboot", func(context.Context) error { return refused(node.Addr()) })
	waitForVersion(t, secure, "v1.14.2")

	want := []string{"up running v1.14.1", "down rebooting v1.14.1", "up running v1.14.2"}
	if got := events.of(node.Addr()); !slices.Equal(got, want) {
		t.Fatalf("events = %q, want %q", got, want)
	}
}

// TestLegacyUpgradeRefusals covers what the legacy Upgrade refuses before it acknowledges.
func TestLegacyUpgradeRefusals(t *testing.T) {
	tc := generateCluster(t, "emu")
	ctx := t.Context()

	maintenance := startNode(t, talosnode.Options{Address: "127.0.0.43:0"})
	_, err := legacyUpgrade(ctx, insecureClient(t, maintenance.Addr()), "ghcr.io/siderolabs/installer:v1.14.2")
	wantCode(t, err, codes.PermissionDenied) // maintenance clients are os:reader; Upgrade needs os:admin

	node := startNode(t, talosnode.Options{Address: "127.0.0.44:0", Config: tc.controlPlane})
	admin := secureClient(t, tc.talosconfig, node.Addr())

	tests := []struct {
		name    string
		image   string
		opts    []client.UpgradeOption
		code    codes.Code
		message string
	}{
		{"no image", "", []client.UpgradeOption{client.WithUpgradeForce(true)}, codes.Unknown, "error validating installer image"},
		{"tag is no version", "ghcr.io/siderolabs/installer:latest", []client.UpgradeOption{client.WithUpgradeForce(true)}, codes.Unknown, "error validating installer image"},
		{"etcd not bootstrapped", "ghcr.io/siderolabs/installer:v1.14.2", nil, codes.Unknown, "error validating etcd for upgrade"},
		{"staged", "ghcr.io/siderolabs/installer:v1.14.2", []client.UpgradeOption{client.WithUpgradeForce(true), client.WithUpgradeStage(true)}, codes.Unimplemented, "staged upgrades"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := legacyUpgrade(ctx, admin, tt.image, tt.opts...)
			wantCode(t, err, tt.code)

			if !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("error %q does not mention %q", err, tt.message)
			}
		})
	}

	if node.Version() != talosnode.DefaultTalosVersion || !node.Up() {
		t.Fatalf("refused upgrades changed the node: version %s, up %v", node.Version(), node.Up())
	}
}

// TestLegacyUpgradeChecksEtcd: a control plane refuses the legacy upgrade while another etcd member's
// node is down, unless forced.
func TestLegacyUpgradeChecksEtcd(t *testing.T) {
	tc := generateCluster(t, "emu")
	cluster := talosnode.NewCluster()
	events := &eventLog{}
	ctx := t.Context()

	var cps []*talosnode.Node

	for i, ip := range []string{"127.0.0.51", "127.0.0.52", "127.0.0.53"} {
		cps = append(cps, startNode(t, talosnode.Options{
			Address:   ip + ":0",
			Hostname:  fmt.Sprintf("cp-%d", i+1),
			Cluster:   cluster,
			Config:    tc.controlPlane,
			BootDelay: 100 * time.Millisecond,
			OnEvent:   events.add,
		}))
	}

	first := secureClient(t, tc.talosconfig, cps[0].Addr())

	if err := first.Bootstrap(ctx, &machine.BootstrapRequest{}); err != nil {
		t.Fatal(err)
	}

	eventually(t, settle, "three etcd members", func(context.Context) error {
		if got := cluster.EtcdMembers(); len(got) != 3 {
			return fmt.Errorf("members %v", got)
		}

		return nil
	})

	cps[1].RefuseFor(time.Second)

	_, err := legacyUpgrade(ctx, first, "ghcr.io/siderolabs/installer:v1.14.2")
	wantCode(t, err, codes.Unknown)

	if !strings.Contains(err.Error(), "error validating etcd for upgrade: etcd member cp-2 is not healthy") {
		t.Fatalf("refusal %q does not name cp-2", err)
	}

	// Once cp-2 is back the same upgrade goes through.
	eventually(t, settle, "upgrade accepted", func(ctx context.Context) error {
		_, err := legacyUpgrade(ctx, first, "ghcr.io/siderolabs/installer:v1.14.2")

		return err
	})

	waitForVersion(t, func() *client.Client { return secureClient(t, tc.talosconfig, cps[0].Addr()) }, "v1.14.2")

	// Forced, the check is skipped: cp-3 upgrades while cp-2 is down.
	cps[1].RefuseFor(time.Second)

	third := secureClient(t, tc.talosconfig, cps[2].Addr())
	if _, err := legacyUpgrade(ctx, third, "ghcr.io/siderolabs/installer:v1.14.2", client.WithUpgradeForce(true)); err != nil {
		t.Fatalf("forced upgrade: %v", err)
	}

	waitForVersion(t, func() *client.Client { return secureClient(t, tc.talosconfig, cps[2].Addr()) }, "v1.14.2")

	if got := events.of(cps[2].Addr()); !slices.Contains(got, "down upgrading v1.14.1") {
		t.Fatalf("cp-3 events %q have no upgrade", got)
	}
}

// TestFailNextUpgradeBoot: after either upgrade path the node never comes back.
func TestFailNextUpgradeBoot(t *testing.T) {
	tc := generateCluster(t, "emu")

	tests := []struct {
		name    string
		addr    string
		upgrade func(context.Context, *client.Client) error
	}{
		{"LifecycleService then Reboot", "127.0.0.61:0", func(ctx context.Context, c *client.Client) error {
			if _, exitCode, err := lifecycleUpgrade(ctx, c, "ghcr.io/siderolabs/installer:v1.14.2"); err != nil || exitCode != 0 {
				return fmt.Errorf("upgrade: exit code %d, %w", exitCode, err)
			}

			return c.Reboot(ctx)
		}},
		{"legacy Upgrade", "127.0.0.62:0", func(ctx context.Context, c *client.Client) error {
			_, err := legacyUpgrade(ctx, c, "ghcr.io/siderolabs/installer:v1.14.2", client.WithUpgradeForce(true))

			return err
		}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events := &eventLog{}
			node := startNode(t, talosnode.Options{Address: tt.addr, Config: tc.controlPlane, BootDelay: 100 * time.Millisecond, OnEvent: events.add})
			node.FailNextUpgradeBoot()

			if err := tt.upgrade(t.Context(), secureClient(t, tc.talosconfig, node.Addr())); err != nil {
				t.Fatal(err)
			}

			eventually(t, settle, "node down", func(context.Context) error { return refused(node.Addr()) })

			time.Sleep(500 * time.Millisecond) // five boot delays

			if err := refused(node.Addr()); err != nil || node.Up() {
				t.Fatalf("node came back from the failed upgrade boot: %v", err)
			}

			if got := node.Version(); got != talosnode.DefaultTalosVersion {
				t.Fatalf("Node.Version = %s after a failed upgrade boot", got)
			}

			if got := events.of(node.Addr()); len(got) != 2 || !strings.HasPrefix(got[1], "down ") {
				t.Fatalf("events = %q, want up then down", got)
			}
		})
	}
}

// TestInstallVersionFromImage: a node installed from maintenance mode runs the version of the
// config's installer image.
func TestInstallVersionFromImage(t *testing.T) {
	tc := generateCluster(t, "emu")
	cfg := mutate(t, tc.controlPlane, "installer: {}", "installer:\n    image: ghcr.io/siderolabs/installer:v1.13.4")
	node := startNode(t, talosnode.Options{Address: "127.0.0.45:0", BootDelay: 100 * time.Millisecond})
	ctx := t.Context()

	if _, err := insecureClient(t, node.Addr()).ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: cfg, Mode: machine.ApplyConfigurationRequest_AUTO}); err != nil {
		t.Fatal(err)
	}

	secure := func() *client.Client { return secureClient(t, tc.talosconfig, node.Addr()) }

	waitForVersion(t, secure, "v1.13.4")

	if stage := node.Stage(); stage != runtime.MachineStageRunning {
		t.Fatalf("stage = %s", stage)
	}
}
