package talosnode_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cosi-project/runtime/pkg/safe"
	"google.golang.org/grpc/codes"
	"gopkg.in/yaml.v3"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	"github.com/siderolabs/talos/pkg/machinery/role"

	"github.com/talforge/talforge/internal/testenv/talosnode"
)

const settle = 10 * time.Second // upper bound for any emulated boot in these tests; they finish far sooner

// TestMaintenanceToConfigured walks one control plane through the real flow with the real machinery client:
// maintenance (insecure, read-only) → apply → install reboot → configured (mTLS with the config's OS CA).
func TestMaintenanceToConfigured(t *testing.T) {
	tc := generateCluster(t, "emu")
	node := startNode(t, talosnode.Options{Address: "127.0.0.2:0", BootDelay: 200 * time.Millisecond})
	ctx := t.Context()

	maint := insecureClient(t, node.Addr())

	version, err := maint.Version(ctx)
	if err != nil {
		t.Fatalf("Version in maintenance: %v", err)
	}

	if got := version.GetMessages()[0].GetVersion().GetTag(); got != talosnode.DefaultTalosVersion {
		t.Fatalf("Version tag = %q, want %q", got, talosnode.DefaultTalosVersion)
	}

	ms, err := safe.StateGetByID[*runtime.MachineStatus](ctx, maint.COSI, runtime.MachineStatusID)
	if err != nil {
		t.Fatalf("read MachineStatus in maintenance: %v", err)
	}

	if ms.TypedSpec().Stage != runtime.MachineStageMaintenance {
		t.Fatalf("stage = %s, want maintenance", ms.TypedSpec().Stage)
	}

	// Read-only except ApplyConfiguration.
	wantCode(t, maint.Bootstrap(ctx, &machine.BootstrapRequest{}), codes.PermissionDenied)
	_, err = maint.Kubeconfig(ctx)
	wantCode(t, err, codes.PermissionDenied)
	_, err = safe.StateGetByID[*configres.MachineConfig](ctx, maint.COSI, configres.ActiveID)
	wantCode(t, err, codes.PermissionDenied)

	invalid := []struct {
		name string
		data []byte
	}{
		{"not yaml", []byte("{{{")},
		{"unknown field", append(bytes.Clone(tc.controlPlane), []byte("\nbogusTopLevelKey: 1\n")...)},
		{"invalid cluster endpoint", mutate(t, tc.controlPlane, "endpoint: https://127.0.0.1:6443", "endpoint: 127.0.0.1")},
		{"invalid install disk selector", mutate(t, tc.controlPlane, `disk.dev_path == "/dev/sda"`, `disk.dev_path ==`)},
	}

	for _, tt := range invalid {
		_, err := maint.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: tt.data, Mode: machine.ApplyConfigurationRequest_AUTO})
		if err == nil {
			t.Fatalf("%s: invalid config accepted", tt.name)
		}

		wantCode(t, err, codes.InvalidArgument)
	}

	if node.Stage() != runtime.MachineStageMaintenance {
		t.Fatalf("invalid configs changed the stage to %s", node.Stage())
	}

	resp, err := maint.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: tc.controlPlane, Mode: machine.ApplyConfigurationRequest_AUTO})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}

	if len(resp.GetMessages()) != 1 {
		t.Fatalf("apply response has %d messages, want 1", len(resp.GetMessages()))
	}

	// The node installs: down (connection refused), then back with the cluster's CA.
	eventually(t, settle, "node down for install", func(context.Context) error { return refused(node.Addr()) })

	secure := func() *client.Client { return secureClient(t, tc.talosconfig, node.Addr()) }

	eventually(t, settle, "node running configured", func(ctx context.Context) error {
		stage, err := stageOf(ctx, t, secure)
		if err != nil {
			return err
		}

		if stage != runtime.MachineStageRunning {
			return fmt.Errorf("stage %s", stage)
		}

		return nil
	})

	admin := secure()

	mc, err := safe.StateGetByID[*configres.MachineConfig](ctx, admin.COSI, configres.ActiveID)
	if err != nil {
		t.Fatalf("read MachineConfig as os:admin: %v", err)
	}

	if mc.Provider().Machine().Type().String() != "controlplane" {
		t.Fatalf("live machine type = %s", mc.Provider().Machine().Type())
	}

	if !bytes.Equal(node.ActiveConfig(), tc.controlPlane) {
		t.Fatal("active config differs from the applied bytes")
	}

	mt, err := safe.StateGetByID[*configres.MachineType](ctx, admin.COSI, configres.MachineTypeID)
	if err != nil || !mt.MachineType().IsControlPlane() {
		t.Fatalf("MachineType = %v, %v; want controlplane", mt, err)
	}

	// The maintenance credentials no longer work: a client certificate from the OS CA is required.
	insecureAgain := insecureClient(t, node.Addr())
	if _, err := insecureAgain.Version(ctx); err == nil {
		t.Fatal("configured node answered a client without a certificate")
	}
}

// TestConfiguredModeAuthorization checks the mTLS and role rules of a configured node.
func TestConfiguredModeAuthorization(t *testing.T) {
	tc := generateCluster(t, "emu")
	other := generateCluster(t, "other")
	node := startNode(t, talosnode.Options{Address: "127.0.0.3:0", Config: tc.controlPlane})
	ctx := t.Context()

	readerConfig := withRole(t, tc, role.Reader)

	tests := []struct {
		name        string
		talosconfig func() *client.Client
		versionErr  bool
		readConfig  bool
		canApply    bool
	}{
		{"admin from talosconfig", func() *client.Client { return secureClient(t, tc.talosconfig, node.Addr()) }, false, true, true},
		{"os:reader certificate", func() *client.Client { return secureClient(t, readerConfig, node.Addr()) }, false, false, false},
		{"certificate from another cluster's CA", func() *client.Client { return secureClient(t, other.talosconfig, node.Addr()) }, true, false, false},
		{"no client certificate", func() *client.Client { return insecureClient(t, node.Addr()) }, true, false, false},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.talosconfig()

			_, err := c.Version(ctx)
			if tt.versionErr != (err != nil) {
				t.Fatalf("Version error = %v, want error: %v", err, tt.versionErr)
			}

			if tt.versionErr {
				if status := unwrapNodeError(err).Error(); !strings.Contains(status, "Unavailable") && !strings.Contains(status, "certificate") {
					t.Fatalf("refusal does not look like a TLS failure: %v", err)
				}

				return
			}

			_, err = safe.StateGetByID[*configres.MachineConfig](ctx, c.COSI, configres.ActiveID)
			if tt.readConfig != (err == nil) {
				t.Fatalf("read MachineConfig error = %v, want readable: %v", err, tt.readConfig)
			}

			if !tt.readConfig {
				wantCode(t, err, codes.PermissionDenied)
			}

			_, err = safe.StateGetByID[*runtime.MachineStatus](ctx, c.COSI, runtime.MachineStatusID)
			if err != nil {
				t.Fatalf("MachineStatus is not sensitive, any role reads it: %v", err)
			}

			_, err = c.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: tc.controlPlane, Mode: machine.ApplyConfigurationRequest_NO_REBOOT, DryRun: true})
			if tt.canApply != (err == nil) {
				t.Fatalf("apply error = %v, want allowed: %v", err, tt.canApply)
			}
		})
	}
}

// TestApplyModesWhenConfigured covers the configured-mode apply behaviour talforge relies on.
func TestApplyModesWhenConfigured(t *testing.T) {
	tc := generateCluster(t, "emu")
	node := startNode(t, talosnode.Options{Address: "127.0.0.4:0", Config: tc.controlPlane, BootDelay: 100 * time.Millisecond})
	ctx := t.Context()
	admin := secureClient(t, tc.talosconfig, node.Addr())

	changed := mutate(t, tc.controlPlane, `"/dev/sda"`, `"/dev/vda"`)

	// Dry run changes nothing.
	if _, err := admin.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: changed, Mode: machine.ApplyConfigurationRequest_AUTO, DryRun: true}); err != nil {
		t.Fatal(err)
	}

	if !bytes.Equal(node.ActiveConfig(), tc.controlPlane) {
		t.Fatal("dry run changed the config")
	}

	// Staged: persistent changes, active does not.
	resp, err := admin.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: changed, Mode: machine.ApplyConfigurationRequest_STAGED})
	if err != nil {
		t.Fatal(err)
	}

	if got := resp.GetMessages()[0].GetMode(); got != machine.ApplyConfigurationRequest_STAGED {
		t.Fatalf("staged apply answered mode %s", got)
	}

	persistent, err := safe.StateGetByID[*configres.MachineConfig](ctx, admin.COSI, configres.PersistentID)
	if err != nil {
		t.Fatal(err)
	}

	persistentBytes, err := persistent.Provider().Bytes()
	if err != nil {
		t.Fatal(err)
	}

	if !bytes.Contains(persistentBytes, []byte(`"/dev/vda"`)) {
		t.Fatalf("persistent config does not select /dev/vda:\n%s", persistentBytes)
	}

	if !bytes.Equal(node.ActiveConfig(), tc.controlPlane) {
		t.Fatal("staged apply changed the active config")
	}

	// AUTO applies in place.
	resp, err = admin.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: changed, Mode: machine.ApplyConfigurationRequest_AUTO})
	if err != nil {
		t.Fatal(err)
	}

	if got := resp.GetMessages()[0].GetMode(); got != machine.ApplyConfigurationRequest_NO_REBOOT {
		t.Fatalf("AUTO answered mode %s, want NO_REBOOT", got)
	}

	if !bytes.Equal(node.ActiveConfig(), changed) {
		t.Fatal("AUTO apply did not change the active config")
	}

	// Changing the role in place is refused.
	_, err = admin.ApplyConfiguration(ctx, &machine.ApplyConfigurationRequest{Data: tc.worker, Mode: machine.ApplyConfigurationRequest_AUTO})
	wantCode(t, err, codes.InvalidArgument)
}

// TestBootstrapOnceSharedEtcd runs three control planes and a worker on one Cluster.
func TestBootstrapOnceSharedEtcd(t *testing.T) {
	tc := generateCluster(t, "emu")
	cluster := talosnode.NewCluster()
	ctx := t.Context()

	var cps []*talosnode.Node

	for i, ip := range []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"} {
		cps = append(cps, startNode(t, talosnode.Options{
			Address:              ip + ":0",
			Hostname:             fmt.Sprintf("cp-%d", i+1),
			Cluster:              cluster,
			Config:               tc.controlPlane,
			JoinDelay:            100 * time.Millisecond,
			BootstrapNotReadyFor: 150 * time.Millisecond,
		}))
	}

	worker := startNode(t, talosnode.Options{Address: "127.0.0.21:0", Hostname: "worker-1", Cluster: cluster, Config: tc.worker})

	first := secureClient(t, tc.talosconfig, cps[0].Addr())

	// Before bootstrap etcd has no member to answer.
	_, err := first.EtcdMemberList(ctx, &machine.EtcdMemberListRequest{})
	if err == nil {
		t.Fatal("member list answered before bootstrap")
	}

	etcd, err := first.ServiceInfo(ctx, "etcd")
	if err != nil || len(etcd) != 1 || etcd[0].Service.GetState() != "Preparing" {
		t.Fatalf("etcd service before bootstrap = %v, %v; want Preparing", etcd, err)
	}

	// Services still starting: FailedPrecondition "bootstrap is not available yet", then success.
	eventually(t, settle, "bootstrap accepted", func(ctx context.Context) error {
		return first.Bootstrap(ctx, &machine.BootstrapRequest{})
	})

	wantCode(t, first.Bootstrap(ctx, &machine.BootstrapRequest{}), codes.AlreadyExists)

	// A worker cannot bootstrap.
	wc := secureClient(t, tc.talosconfig, worker.Addr())
	wantCode(t, wc.Bootstrap(ctx, &machine.BootstrapRequest{}), codes.FailedPrecondition)

	eventually(t, settle, "all control planes in etcd", func(ctx context.Context) error {
		resp, err := first.EtcdMemberList(ctx, &machine.EtcdMemberListRequest{})
		if err != nil {
			return err
		}

		var names []string
		for _, m := range resp.GetMessages()[0].GetMembers() {
			names = append(names, m.GetHostname())
		}

		slices.Sort(names)

		if !slices.Equal(names, []string{"cp-1", "cp-2", "cp-3"}) {
			return fmt.Errorf("members %v", names)
		}

		return nil
	})

	// A joined control plane refuses a second bootstrap too.
	third := secureClient(t, tc.talosconfig, cps[2].Addr())
	wantCode(t, third.Bootstrap(ctx, &machine.BootstrapRequest{}), codes.AlreadyExists)

	etcd, err = third.ServiceInfo(ctx, "etcd")
	if err != nil || len(etcd) != 1 || etcd[0].Service.GetState() != "Running" || !etcd[0].Service.GetHealth().GetHealthy() {
		t.Fatalf("etcd service after join = %v, %v; want Running and healthy", etcd, err)
	}

	if got := cluster.BootstrapCalls(); got != 3 {
		t.Fatalf("BootstrapCalls = %d, want 3 (one success, two AlreadyExists)", got)
	}

	if got := cluster.ConflictingBootstraps(); got != 0 {
		t.Fatalf("ConflictingBootstraps = %d", got)
	}

	if got := cps[0].Calls(machine.MachineService_Bootstrap_FullMethodName); got < 2 {
		t.Fatalf("node counted %d Bootstrap calls, want >= 2", got)
	}
}

// TestWorkerCertificateFromTrustd: a worker config has no OS CA key; the worker comes up configured only
// once a control plane of its cluster published the CA (trustd).
func TestWorkerCertificateFromTrustd(t *testing.T) {
	tc := generateCluster(t, "emu")
	cluster := talosnode.NewCluster()
	worker := startNode(t, talosnode.Options{Address: "127.0.0.22:0", Cluster: cluster, Config: tc.worker, StartDelay: 10 * time.Millisecond})

	time.Sleep(100 * time.Millisecond)

	if worker.Up() {
		t.Fatal("worker came up without trustd")
	}

	startNode(t, talosnode.Options{Address: "127.0.0.14:0", Cluster: cluster, Config: tc.controlPlane})

	eventually(t, settle, "worker answers with the cluster CA", func(ctx context.Context) error {
		c := secureClient(t, tc.talosconfig, worker.Addr())
		defer c.Close() // probe

		_, err := c.Version(ctx)

		return err
	})
}

func TestKubeconfig(t *testing.T) {
	tc := generateCluster(t, "emu")
	ctx := t.Context()

	t.Run("configured content", func(t *testing.T) {
		cluster := talosnode.NewCluster()
		want := []byte("apiVersion: v1\nkind: Config\nclusters: []\n")
		cluster.SetKubeconfig(want)

		node := startNode(t, talosnode.Options{Address: "127.0.0.5:0", Cluster: cluster, Config: tc.controlPlane})
		c := secureClient(t, tc.talosconfig, node.Addr())

		got, err := c.Kubeconfig(ctx)
		if err != nil {
			t.Fatal(err)
		}

		if !bytes.Equal(got, want) {
			t.Fatalf("kubeconfig = %q, want %q", got, want)
		}
	})

	t.Run("generated admin kubeconfig", func(t *testing.T) {
		node := startNode(t, talosnode.Options{Address: "127.0.0.6:0", Config: tc.controlPlane})
		c := secureClient(t, tc.talosconfig, node.Addr())

		got, err := c.Kubeconfig(ctx)
		if err != nil {
			t.Fatal(err)
		}

		var doc struct {
			Clusters []struct {
				Cluster struct {
					Server string `yaml:"server"`
					CA     string `yaml:"certificate-authority-data"`
				} `yaml:"cluster"`
			} `yaml:"clusters"`
			CurrentContext string `yaml:"current-context"`
		}

		if err := yaml.Unmarshal(got, &doc); err != nil {
			t.Fatalf("kubeconfig is not YAML: %v", err)
		}

		if len(doc.Clusters) != 1 || doc.Clusters[0].Cluster.Server != "https://127.0.0.1:6443" || doc.Clusters[0].Cluster.CA == "" {
			t.Fatalf("kubeconfig clusters = %+v", doc.Clusters)
		}

		if doc.CurrentContext != "admin@emu" {
			t.Fatalf("current-context = %q", doc.CurrentContext)
		}
	})

	t.Run("workers have none", func(t *testing.T) {
		cluster := talosnode.NewCluster()
		startNode(t, talosnode.Options{Address: "127.0.0.7:0", Cluster: cluster, Config: tc.controlPlane})
		worker := startNode(t, talosnode.Options{Address: "127.0.0.23:0", Cluster: cluster, Config: tc.worker})

		var c *client.Client

		eventually(t, settle, "worker up", func(ctx context.Context) error {
			c = secureClient(t, tc.talosconfig, worker.Addr())
			_, err := c.Version(ctx)

			return err
		})

		_, err := c.Kubeconfig(ctx)
		wantCode(t, err, codes.FailedPrecondition)
	})
}

func TestFaultInjection(t *testing.T) {
	tc := generateCluster(t, "emu")

	t.Run("slow boot refuses connections until up", func(t *testing.T) {
		node := startNode(t, talosnode.Options{Address: "127.0.0.31:0", StartDelay: 300 * time.Millisecond})

		if err := refused(node.Addr()); err != nil {
			t.Fatalf("slow-booting node: %v", err)
		}

		eventually(t, settle, "maintenance API up", func(ctx context.Context) error {
			stage, err := stageOf(ctx, t, func() *client.Client { return insecureClient(t, node.Addr()) })
			if err == nil && stage != runtime.MachineStageMaintenance {
				return fmt.Errorf("stage %s", stage)
			}

			return err
		})
	})

	t.Run("connection refused for a while on the same address", func(t *testing.T) {
		node := startNode(t, talosnode.Options{Address: "127.0.0.32:0", Config: tc.controlPlane})
		addr := node.Addr()

		node.RefuseFor(300 * time.Millisecond)

		if err := refused(addr); err != nil {
			t.Fatal(err)
		}

		eventually(t, settle, "back on the same address", func(ctx context.Context) error {
			c := secureClient(t, tc.talosconfig, addr)
			defer c.Close() // probe

			_, err := c.Version(ctx)

			return err
		})

		if node.Addr() != addr {
			t.Fatalf("address moved from %s to %s", addr, node.Addr())
		}
	})

	t.Run("reboot in the middle of apply, config taken", func(t *testing.T) {
		node := startNode(t, talosnode.Options{Address: "127.0.0.33:0", BootDelay: 200 * time.Millisecond})
		node.InterruptNext(machine.MachineService_ApplyConfiguration_FullMethodName, true)

		c := insecureClient(t, node.Addr())

		_, err := c.ApplyConfiguration(t.Context(), &machine.ApplyConfigurationRequest{Data: tc.controlPlane, Mode: machine.ApplyConfigurationRequest_AUTO})
		wantCode(t, err, codes.Unavailable)

		eventually(t, settle, "configured after the interrupted apply", func(ctx context.Context) error {
			stage, err := stageOf(ctx, t, func() *client.Client { return secureClient(t, tc.talosconfig, node.Addr()) })
			if err == nil && stage != runtime.MachineStageRunning {
				return fmt.Errorf("stage %s", stage)
			}

			return err
		})
	})

	t.Run("reboot in the middle of kubeconfig, call lost", func(t *testing.T) {
		node := startNode(t, talosnode.Options{Address: "127.0.0.34:0", Config: tc.controlPlane, BootDelay: 200 * time.Millisecond})
		node.InterruptNext(machine.MachineService_Kubeconfig_FullMethodName, false)

		c := secureClient(t, tc.talosconfig, node.Addr())

		if _, err := c.Kubeconfig(t.Context()); err == nil {
			t.Fatal("interrupted kubeconfig call succeeded")
		}

		eventually(t, settle, "kubeconfig after the reboot", func(ctx context.Context) error {
			c := secureClient(t, tc.talosconfig, node.Addr())
			defer c.Close() // probe

			_, err := c.Kubeconfig(ctx)

			return err
		})
	})

	t.Run("never leaves maintenance", func(t *testing.T) {
		node := startNode(t, talosnode.Options{Address: "127.0.0.35:0", BootDelay: 100 * time.Millisecond})
		node.SetStuckInMaintenance(true)

		c := insecureClient(t, node.Addr())
		if _, err := c.ApplyConfiguration(t.Context(), &machine.ApplyConfigurationRequest{Data: tc.controlPlane, Mode: machine.ApplyConfigurationRequest_AUTO}); err != nil {
			t.Fatal(err)
		}

		eventually(t, settle, "went down to install", func(context.Context) error {
			if node.Stage() == runtime.MachineStageMaintenance {
				return errors.New("still up in maintenance")
			}

			return nil
		})

		eventually(t, settle, "back in maintenance", func(ctx context.Context) error {
			stage, err := stageOf(ctx, t, func() *client.Client { return insecureClient(t, node.Addr()) })
			if err == nil && stage != runtime.MachineStageMaintenance {
				return fmt.Errorf("stage %s", stage)
			}

			return err
		})

		if node.ActiveConfig() != nil {
			t.Fatal("stuck node has a config")
		}
	})

	t.Run("concurrent apply refused while installing", func(t *testing.T) {
		node := startNode(t, talosnode.Options{Address: "127.0.0.36:0", BootDelay: time.Second})
		c := insecureClient(t, node.Addr())
		req := &machine.ApplyConfigurationRequest{Data: tc.controlPlane, Mode: machine.ApplyConfigurationRequest_AUTO}

		if _, err := c.ApplyConfiguration(t.Context(), req); err != nil {
			t.Fatal(err)
		}

		_, err := c.ApplyConfiguration(t.Context(), req)
		if err == nil {
			t.Fatal("second apply accepted while the first installs")
		}
	})
}

// withRole returns a talosconfig whose client certificate carries only the given role, signed by the
// cluster's OS CA (what `talosctl config new --roles` produces).
func withRole(t *testing.T, tc testCluster, r role.Role) *clientconfig.Config {
	t.Helper()

	crt, err := tc.bundle.GenerateTalosAPIClientCertificate(role.MakeSet(r))
	if err != nil {
		t.Fatal(err)
	}

	return clientconfig.NewConfig("reader", nil, tc.bundle.Certs.OS.Crt, crt)
}
