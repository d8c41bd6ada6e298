package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/talforge/talforge/internal/testenv/kubeenv"
	"github.com/talforge/talforge/internal/testenv/talosnode"
)

// emuProfile is a bare-metal profile on loopback addresses, so emulated Talos nodes can answer on the
// nodes' own IPs.
const emuProfile = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata:
  name: emu
talos:
  version: v1.14.1
network:
  cidr: 127.0.70.0/24
  gateway: 127.0.70.1
  vip: 127.0.70.10
nodes:
  - {name: cp-1, role: controlplane, ip: 127.0.70.11}
  - {name: cp-2, role: controlplane, ip: 127.0.70.12}
  - {name: cp-3, role: controlplane, ip: 127.0.70.13}
  - {name: worker-1, role: worker, ip: 127.0.70.21}
`

var emuNodes = map[string]string{"cp-1": "127.0.70.11", "cp-2": "127.0.70.12", "cp-3": "127.0.70.13", "worker-1": "127.0.70.21"}

type cliResult struct {
	code        int
	out, errOut string
}

func runCLI(t *testing.T, args ...string) cliResult {
	t.Helper()

	var out, errOut bytes.Buffer

	code := run(t.Context(), args, streams{in: strings.NewReader(""), out: &out, errOut: &errOut})

	return cliResult{code: code, out: out.String(), errOut: errOut.String()}
}

// project writes the profile into a fresh project with its own age identity and runs `talforge generate`.
func project(t *testing.T) string {
	t.Helper()

	root := t.TempDir()
	t.Setenv("HOME", root)
	t.Setenv("SOPS_AGE_KEY_FILE", filepath.Join(root, "age-keys.txt"))
	t.Setenv("TALFORGE_PROFILE", "")

	profilePath := filepath.Join(root, "profiles", "emu.yaml")
	if err := os.MkdirAll(filepath.Dir(profilePath), 0o755); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(profilePath, []byte(emuProfile), 0o600); err != nil {
		t.Fatal(err)
	}

	if res := runCLI(t, "generate", "-p", profilePath); res.code != 0 {
		t.Fatalf("generate: exit %d\n%s%s", res.code, res.out, res.errOut)
	}

	return profilePath
}

// freePort finds a port that is free on every node address.
func freePort(t *testing.T) int {
	t.Helper()

	for range 20 {
		lis, err := net.Listen("tcp", net.JoinHostPort(emuNodes["cp-1"], "0"))
		if err != nil {
			t.Fatal(err)
		}

		port := lis.Addr().(*net.TCPAddr).Port
		_ = lis.Close() // probe

		free := true

		for _, ip := range emuNodes {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				free = false

				break
			}

			_ = l.Close() // probe
		}

		if free {
			return port
		}
	}

	t.Fatal("no port free on all node addresses")

	return 0
}

func startNodes(t *testing.T, port int, etcd *talosnode.Cluster) map[string]*talosnode.Node {
	t.Helper()

	nodes := map[string]*talosnode.Node{}

	for name, ip := range emuNodes {
		n, err := talosnode.Start(t.Context(), talosnode.Options{
			Address: net.JoinHostPort(ip, strconv.Itoa(port)), Cluster: etcd, Hostname: "unset-" + name,
			BootDelay: 100 * time.Millisecond, JoinDelay: 50 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}

		t.Cleanup(func() { _ = n.Close() }) // Close never fails

		nodes[name] = n
	}

	return nodes
}

// TestBootstrapCommandEndToEnd runs the CLI against emulated Talos nodes and a real kube-apiserver: generate,
// bootstrap (apply, etcd, health, kubeconfig stored encrypted), kubeconfig --out, and a second bootstrap
// that changes nothing.
func TestBootstrapCommandEndToEnd(t *testing.T) {
	kube := kubeenv.Start(t)
	profilePath := project(t)
	port := freePort(t)

	etcd := talosnode.NewCluster()
	etcd.SetKubeconfig(kube.Kubeconfig)
	nodes := startNodes(t, port, etcd)

	// No kubelets here: register the nodes the way kubelets would.
	cs, err := kubernetes.NewForConfig(kube.Config)
	if err != nil {
		t.Fatal(err)
	}

	flags := []string{"-p", profilePath, "--talos-port", strconv.Itoa(port), "--poll-interval", "20ms", "--timeout", "30s"}

	// Before any node registered, the last phase times out naming the missing nodes.
	short := append([]string{"bootstrap"}, flags...)
	short[len(short)-1] = "3s"

	res := runCLI(t, short...)
	t.Logf("first bootstrap (no node registered yet), stdout:\n%s\nstderr:\n%s", res.out, res.errOut)

	if res.code != 1 || !strings.Contains(res.errOut, "health: nodes registered") || !strings.Contains(res.errOut, "cp-1: not registered") {
		t.Fatalf("bootstrap without registered nodes: exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.out, res.errOut)
	}

	for name := range emuNodes {
		if _, err := cs.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	res = runCLI(t, append([]string{"bootstrap"}, flags...)...)
	if res.code != 0 {
		t.Fatalf("bootstrap: exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.out, res.errOut)
	}

	for _, want := range []string{"etcd: already bootstrapped (first control plane cp-1)", "cluster emu is up"} {
		if !strings.Contains(res.out, want) {
			t.Errorf("bootstrap output lacks %q:\n%s", want, res.out)
		}
	}

	if etcd.BootstrapCalls() != 1 || nodes["cp-1"].Calls(machine.MachineService_Bootstrap_FullMethodName) != 1 {
		t.Fatalf("Bootstrap calls: cluster %d, cp-1 %d; want 1", etcd.BootstrapCalls(), nodes["cp-1"].Calls(machine.MachineService_Bootstrap_FullMethodName))
	}

	outDir := filepath.Join(filepath.Dir(filepath.Dir(profilePath)), "clusters", "emu")

	stored, err := os.ReadFile(filepath.Join(outDir, "kubeconfig.sops.yaml"))
	if err != nil {
		t.Fatal(err)
	}

	if !bytes.Contains(stored, []byte("sops:")) || bytes.Contains(stored, []byte(kube.Host)) {
		t.Fatal("the stored kubeconfig is not encrypted")
	}

	// A second run changes nothing.
	res = runCLI(t, append([]string{"bootstrap"}, flags...)...)
	if res.code != 0 || strings.Count(res.out, "unchanged") != len(emuNodes) || !strings.Contains(res.out, "etcd: already bootstrapped") {
		t.Fatalf("second bootstrap: exit %d\n%s\n%s", res.code, res.out, res.errOut)
	}

	if strings.Contains(res.out, "wrote") {
		t.Fatalf("second bootstrap rewrote files:\n%s", res.out)
	}

	if etcd.BootstrapCalls() != 1 {
		t.Fatalf("second bootstrap called Bootstrap (%d calls)", etcd.BootstrapCalls())
	}

	// kubeconfig --out: the decrypted copy, mode 0600, usable.
	dest := filepath.Join(t.TempDir(), "kubeconfig")

	res = runCLI(t, append([]string{"kubeconfig", "--out", dest}, flags...)...)
	if res.code != 0 {
		t.Fatalf("kubeconfig: exit %d\n%s", res.code, res.errOut)
	}

	info, err := os.Stat(dest)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("kubeconfig file: %v, mode %v; want 0600", err, info.Mode().Perm())
	}

	data, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}

	cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil || cfg.Host != kube.Host {
		t.Fatalf("written kubeconfig: %v, server %q; want %s", err, cfg.Host, kube.Host)
	}

	cs2, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := cs2.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{}); err != nil {
		t.Fatalf("the written kubeconfig does not work: %v", err)
	}

	res = runCLI(t, append([]string{"health"}, flags...)...)
	if res.code != 0 || !strings.Contains(res.out, "cluster emu is healthy") {
		t.Fatalf("health: exit %d\n%s\n%s", res.code, res.out, res.errOut)
	}
}

// TestTalosCommandsInput covers what the commands refuse before touching any node.
func TestTalosCommandsInput(t *testing.T) {
	profilePath := project(t)

	noGenerate := filepath.Join(t.TempDir(), "profiles", "emu.yaml")
	if err := os.MkdirAll(filepath.Dir(noGenerate), 0o755); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(noGenerate, []byte(emuProfile), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"bad mode", []string{"apply", "-p", profilePath, "--mode", "reboot"}, exitInvalid, "invalid apply mode \"reboot\": expected one of auto, no-reboot, staged"},
		{"kubeconfig without --out", []string{"kubeconfig", "-p", profilePath}, exitInvalid, "--out PATH is required"},
		{"not generated", []string{"apply", "-p", noGenerate}, exitFailure, "run `talforge generate` first"},
		{"nodes down", []string{"apply", "-p", profilePath, "--talos-port", "1", "--poll-interval", "20ms", "--timeout", "300ms"}, 1,
			"node cp-1 (127.0.70.11:1): wait for Talos API: timed out after 300ms; last seen: connection refused"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCLI(t, tt.args...)
			if res.code != tt.code || !strings.Contains(res.errOut, tt.want) {
				t.Fatalf("exit %d, want %d; stderr lacks %q:\n%s", res.code, tt.code, tt.want, res.errOut)
			}
		})
	}

	// Dry run against maintenance nodes: nothing applied, and the plan says so.
	port := freePort(t)
	nodes := startNodes(t, port, talosnode.NewCluster())

	res := runCLI(t, "bootstrap", "-p", profilePath, "--dry-run", "--talos-port", strconv.Itoa(port), "--poll-interval", "20ms")
	if res.code != 0 || strings.Count(res.out, "would install") != len(emuNodes) || !strings.Contains(res.out, "etcd: would be bootstrapped") {
		t.Fatalf("dry run: exit %d\n%s\n%s", res.code, res.out, res.errOut)
	}

	for name, n := range nodes {
		if got := n.Calls(machine.MachineService_ApplyConfiguration_FullMethodName); got != 0 {
			t.Fatalf("dry run sent %d configs to %s", got, name)
		}
	}
}
