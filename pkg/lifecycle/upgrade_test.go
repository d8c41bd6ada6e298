package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/talforge/talforge/internal/testenv/e2e"
	"github.com/talforge/talforge/internal/testenv/talosnode"
	"github.com/talforge/talforge/pkg/lifecycle"
	"github.com/talforge/talforge/pkg/rollout"
)

// upgradeLab is a cluster on Proxmox with Longhorn (S3 backups off: the upgrade does not need
// them) at Talos version, with the given control planes and workers on 127.0.73.x.
func upgradeLab(t *testing.T, version string, controlPlanes, workers int, opts e2e.Options) (*lab, map[string]string) {
	t.Helper()
	ips := map[string]string{}
	var nodes strings.Builder
	add := func(name, role, ip string) {
		ips[name] = ip
		opts.Addresses = append(opts.Addresses, ip)
		fmt.Fprintf(&nodes, "  - {name: %s, role: %s, ip: %s}\n", name, role, ip)
	}
	for i := 1; i <= controlPlanes; i++ {
		add(fmt.Sprintf("lab-cp-%d", i), "controlplane", fmt.Sprintf("127.0.73.%d", 10+i))
	}
	for i := 1; i <= workers; i++ {
		add(fmt.Sprintf("lab-worker-%d", i), "worker", fmt.Sprintf("127.0.73.%d", 20+i))
	}
	profileText := `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
talos: {version: ` + version + `}
network: {cidr: 127.0.73.0/24, gateway: 127.0.73.1, nameservers: [127.0.73.1]}
proxmox:
  endpoint: {{PVE_URL}}
  tokenFile: secrets/proxmox.sops.yaml
  caFile: pve-ca.pem
  node: pve
  storage: local-lvm
  defaults: {cores: 2, memory: 4096, disk: 20G, longhornDisk: 10G}
nodes:
` + nodes.String() + `longhorn:
  version: 1.10.2
  repoURL: {{REPO_URL}}
  replicaCount: 2
`
	l := newLabOf(t, profileText, opts)
	l.up(t.Context(), l.options())
	return l, ips
}

// setTalosVersion edits the profile's talos.version.
func (l *lab) setTalosVersion(from, to string) {
	l.t.Helper()
	l.editProfile("version: "+from+"}", "version: "+to+"}")
}

// editProfile replaces old by new in the profile, once.
func (l *lab) editProfile(old, new string) {
	l.t.Helper()
	data, err := os.ReadFile(l.proj.Profile)
	if err != nil {
		l.t.Fatal(err)
	}
	edited := strings.Replace(string(data), old, new, 1)
	if edited == string(data) {
		l.t.Fatalf("profile has no %q", old)
	}
	if err := os.WriteFile(l.proj.Profile, []byte(edited), 0o600); err != nil {
		l.t.Fatal(err)
	}
}

// versions are the Talos versions the nodes run, by name.
func (l *lab) versions(ips map[string]string) map[string]string {
	out := map[string]string{}
	for name, ip := range ips {
		if n := l.env.TalosNode(ip); n != nil {
			out[name] = n.Version()
		}
	}
	return out
}

// downs replays the nodes' API events: the order in which nodes went down, and the largest
// number of nodes down at once.
func downs(events []talosnode.Event, names map[string]string) (order []string, most int) {
	byAddr := map[string]string{}
	for name, ip := range names {
		byAddr[ip] = name
	}
	down := map[string]bool{}
	for _, ev := range events {
		name := byAddr[strings.Split(ev.Addr, ":")[0]]
		if name == "" {
			continue
		}
		if ev.Up {
			delete(down, name)
			continue
		}
		if !down[name] {
			order = append(order, name)
		}
		down[name] = true
		most = max(most, len(down))
	}
	return order, most
}

// TestUpgradeTalosOneNodeAtATime: a 3+3 cluster on Talos v1.13.4 with two Longhorn volumes is
// taken to v1.14.1 by `talforge upgrade`, interrupted once and resumed. Control planes go
// first, then workers, never two nodes down at once; the second worker waits until the
// replica of volume web on the first worker rebuilt; every node ends on the new version,
// uncordoned, with its config for the new version applied; up refused the upgrade before.
func TestUpgradeTalosOneNodeAtATime(t *testing.T) {
	l, ips := upgradeLab(t, "v1.13.4", 3, 3, e2e.Options{RebuildTime: 1500 * time.Millisecond})
	ctx := t.Context()
	for name, v := range l.versions(ips) {
		if v != "v1.13.4" {
			t.Fatalf("%s runs %s after up, want v1.13.4 (the ISO and the install image of the profile's version)", name, v)
		}
	}
	mgr := l.env.Manager()
	for vol, nodes := range map[string][]string{"web": {"lab-worker-1", "lab-worker-2"}, "db": {"lab-worker-2", "lab-worker-3"}} {
		if err := mgr.CreateVolume(ctx, vol, nil); err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if err := mgr.SetReplica(ctx, vol, n, true); err != nil {
				t.Fatal(err)
			}
		}
	}

	l.setTalosVersion("v1.13.4", "v1.14.1")
	applies := l.env.TalosCalls("/machine.MachineService/ApplyConfiguration")
	_, err := lifecycle.Up(ctx, l.options())
	if !errors.Is(err, lifecycle.ErrUpgradeNeeded) || !strings.Contains(err.Error(), "talforge upgrade") {
		t.Fatalf("up with a new Talos version = %v, want a refusal pointing at talforge upgrade", err)
	}
	if n := l.env.TalosCalls("/machine.MachineService/ApplyConfiguration"); n != applies {
		t.Errorf("the refused up applied %d config(s)", n-applies)
	}
	plan, err := lifecycle.Plan(ctx, l.options())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range plan.Nodes {
		if !strings.HasPrefix(n.Action, "upgrade pending: runs Talos v1.13.4") {
			t.Errorf("plan for %s: %q, want the pending upgrade", n.Name, n.Action)
		}
	}
	var planText strings.Builder
	plan.Print(&planText)
	for _, want := range []string{"Upgrade first, with `talforge upgrade`", "1. lab-cp-1: v1.13.4 -> v1.14.1 (LifecycleService.Upgrade)", "6. lab-worker-3: v1.13.4 -> v1.14.1"} {
		if !strings.Contains(planText.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, planText.String())
		}
	}

	dry, err := lifecycle.Upgrade(ctx, l.options(), true)
	if err != nil {
		t.Fatal(err)
	}
	var planned []string
	for _, s := range dry.Steps {
		planned = append(planned, s.Node)
		if s.API != rollout.APILifecycle || s.From != "v1.13.4" || s.To != "v1.14.1" {
			t.Errorf("step %s", s)
		}
	}
	order := []string{"lab-cp-1", "lab-cp-2", "lab-cp-3", "lab-worker-1", "lab-worker-2", "lab-worker-3"}
	if !slices.Equal(planned, order) {
		t.Errorf("planned order %v, want %v", planned, order)
	}
	if !strings.HasSuffix(dry.Image, ":v1.14.1") || !strings.Contains(dry.Image, "installer") {
		t.Errorf("installer image %q", dry.Image)
	}
	if got := l.env.TalosCalls("/machine.LifecycleService/Upgrade"); got != 0 {
		t.Fatalf("the dry run upgraded %d node(s)", got)
	}

	before := len(l.env.TalosEvents())
	// Ctrl-C while the second control plane reboots; the next run goes on from there.
	stop, cancel := context.WithCancel(ctx)
	opts := l.options()
	opts.Detail = cancelOn{testLog{t}, "lab-cp-2: waiting for Talos v1.14.1", cancel}
	if _, err := lifecycle.Upgrade(stop, opts, false); err == nil || !strings.Contains(err.Error(), "run `talforge upgrade` again") {
		t.Fatalf("interrupted upgrade = %v", err)
	}
	// The node reboots into the new version on its own, whoever watches.
	for deadline := time.Now().Add(10 * time.Second); l.env.TalosNode(ips["lab-cp-2"]).Version() != "v1.14.1"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("lab-cp-2 did not reboot into v1.14.1")
		}
	}
	st, err := lifecycle.Status(ctx, l.options())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range st.Nodes {
		if wantCordoned := n.Name == "lab-cp-2"; (n.Kubernetes.Upgrading != "") != wantCordoned {
			t.Errorf("status of %s after the interrupt: upgrading %q", n.Name, n.Kubernetes.Upgrading)
		}
	}

	detail := &syncBuffer{}
	opts = l.options()
	opts.Detail = io.MultiWriter(testLog{t}, detail)
	rep, err := lifecycle.Upgrade(ctx, opts, false)
	if err != nil {
		t.Fatalf("resumed upgrade: %v", err)
	}
	if want := order[1:]; !slices.Equal(rep.Upgraded, want) {
		t.Errorf("the resumed run upgraded %v, want %v", rep.Upgraded, want)
	}
	if rep.Steps[0].Node != "lab-cp-2" || !rep.Steps[0].Resume {
		t.Errorf("the resumed run began with %s, want to finish lab-cp-2", rep.Steps[0])
	}

	for name, v := range l.versions(ips) {
		if v != "v1.14.1" {
			t.Errorf("%s runs %s, want v1.14.1", name, v)
		}
	}
	gone, most := downs(l.env.TalosEvents()[before:], ips)
	if most != 1 {
		t.Errorf("%d nodes were down at once", most)
	}
	if !slices.Equal(gone, order) {
		t.Errorf("nodes went down in the order %v, want %v, each once", gone, order)
	}
	if got := l.env.TalosCalls("/machine.LifecycleService/Upgrade"); got != 6 {
		t.Errorf("LifecycleService.Upgrade called %d times, want 6 (one per node; v1.13.4 has it)", got)
	}
	if got := l.env.TalosCalls("/machine.MachineService/Upgrade"); got != 0 {
		t.Errorf("the deprecated MachineService.Upgrade called %d times", got)
	}
	// The storage gate held lab-worker-2 until web's replica on lab-worker-1 rebuilt.
	held := strings.Index(detail.String(), "lab-worker-1: waiting for the storage gate after lab-worker-1 is back: volume web is degraded (replica on lab-worker-1 rebuilding)")
	drained := strings.Index(detail.String(), "lab-worker-2: cordoned")
	if held < 0 || drained < held {
		t.Errorf("lab-worker-2 was not held by the storage gate until web rebuilt (held at %d, cordoned at %d):\n%s", held, drained, detail.String())
	}
	nodes, err := l.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable || n.Annotations[rollout.AnnotationUpgrading] != "" {
			t.Errorf("node %s left cordoned", n.Name)
		}
		if !strings.Contains(n.Status.NodeInfo.OSImage, "v1.14.1") || !ready(n) {
			t.Errorf("node %s: %s, ready %v", n.Name, n.Status.NodeInfo.OSImage, ready(n))
		}
	}
	// The configs for v1.14.1 are what the nodes run: up has nothing to apply.
	applies = l.env.TalosCalls("/machine.MachineService/ApplyConfiguration")
	l.up(ctx, l.options())
	if n := l.env.TalosCalls("/machine.MachineService/ApplyConfiguration"); n != applies {
		t.Errorf("up after the upgrade applied %d config(s): the upgrade left old configs", n-applies)
	}
	if again, err := lifecycle.Upgrade(ctx, l.options(), false); err != nil || len(again.Steps) != 0 {
		t.Errorf("a second upgrade: %v, %v", again.Steps, err)
	}
}

func ready(n corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// cancelOn passes writes on and cancels once a line containing marker went by.
type cancelOn struct {
	next   io.Writer
	marker string
	cancel context.CancelFunc
}

func (c cancelOn) Write(p []byte) (int, error) {
	if strings.Contains(string(p), c.marker) {
		c.cancel()
	}
	return c.next.Write(p)
}

// TestUpgradeAPIByVersionAndANodeThatNeverComesBack: a Talos 1.12 cluster is upgraded with the
// deprecated MachineService.Upgrade (the only call it has), a 1.14 one with
// LifecycleService.Upgrade; and when a node does not come back from its upgrade the run stops
// and names it, with the rest of the cluster serving and untouched.
func TestUpgradeAPIByVersionAndANodeThatNeverComesBack(t *testing.T) {
	tests := []struct {
		name, from, to string
		api            string
		lost           string // a node that does not come back from its upgrade
	}{
		{name: "talos 1.12: deprecated MachineService.Upgrade", from: "v1.12.6", to: "v1.13.4", api: rollout.APILegacy},
		{name: "talos 1.14: LifecycleService.Upgrade, a worker lost", from: "v1.14.0", to: "v1.14.1", api: rollout.APILifecycle, lost: "lab-worker-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, ips := upgradeLab(t, tt.from, 1, 2, e2e.Options{})
			ctx := t.Context()
			l.setTalosVersion(tt.from, tt.to)
			if tt.lost != "" {
				l.env.TalosNode(ips[tt.lost]).FailNextUpgradeBoot()
			}
			opts := l.options()
			opts.Rollout.NodeTimeout = 3 * time.Second
			rep, err := lifecycle.Upgrade(ctx, opts, false)
			legacy := l.env.TalosCalls("/machine.MachineService/Upgrade")
			lifecycleCalls := l.env.TalosCalls("/machine.LifecycleService/Upgrade")
			if tt.api == rollout.APILegacy && (legacy != 3 || lifecycleCalls != 0) || tt.api == rollout.APILifecycle && legacy != 0 {
				t.Errorf("MachineService.Upgrade %d call(s), LifecycleService.Upgrade %d, want %s for every node", legacy, lifecycleCalls, tt.api)
			}
			if tt.lost == "" {
				if err != nil {
					t.Fatal(err)
				}
				for name, v := range l.versions(ips) {
					if v != tt.to {
						t.Errorf("%s runs %s, want %s", name, v, tt.to)
					}
				}
				if len(rep.Upgraded) != 3 {
					t.Errorf("upgraded %v", rep.Upgraded)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "node "+tt.lost) || !strings.Contains(err.Error(), "does not come back") {
				t.Fatalf("upgrade with %s lost = %v, want an error naming it", tt.lost, err)
			}
			if !slices.Equal(rep.Upgraded, []string{"lab-cp-1"}) {
				t.Errorf("upgraded %v before the lost node, want lab-cp-1", rep.Upgraded)
			}
			// The cluster still serves: every other node up, Ready, and the next worker untouched.
			st, err := lifecycle.Status(ctx, l.options())
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range st.Nodes {
				up := n.Talos.Mode == "configured" && n.Kubernetes.Ready == "True"
				switch {
				case n.Name == tt.lost && (up || n.Kubernetes.Upgrading != tt.to):
					t.Errorf("%s: %+v, want down and marked for the upgrade", n.Name, n)
				case n.Name != tt.lost && !up:
					t.Errorf("%s is not serving: %+v", n.Name, n)
				}
			}
			if v := l.versions(ips)["lab-worker-2"]; v != tt.from {
				t.Errorf("lab-worker-2 runs %s: a node was upgraded after one did not come back", v)
			}
		})
	}
}

// TestUpgradeKubernetesOnly: with the Talos version unchanged and talos.kubernetes one minor
// up, up refuses and `talforge upgrade` applies each node's config in turn (control plane
// first), no node rebooted, until every kubelet reports the new version; the removed-API
// check read the real kube-apiserver's metrics and found nothing in use.
func TestUpgradeKubernetesOnly(t *testing.T) {
	l, ips := upgradeLab(t, "v1.14.1, kubernetes: v1.36.0", 1, 2, e2e.Options{})
	ctx := t.Context()
	kubelets := func() map[string]string {
		nodes, err := l.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, n := range nodes.Items {
			out[n.Name] = n.Status.NodeInfo.KubeletVersion
		}
		return out
	}
	for name, v := range kubelets() {
		if v != "v1.36.0" {
			t.Fatalf("%s: kubelet %s after up, want v1.36.0", name, v)
		}
	}
	l.editProfile("kubernetes: v1.36.0}", "kubernetes: v1.37.0}")
	if _, err := lifecycle.Up(ctx, l.options()); !errors.Is(err, lifecycle.ErrUpgradeNeeded) || !strings.Contains(err.Error(), "runs Kubernetes v1.36.0, the profile says v1.37.0") {
		t.Fatalf("up with a new Kubernetes version = %v, want a refusal", err)
	}
	before := len(l.env.TalosEvents())
	rep, err := lifecycle.Upgrade(ctx, l.options(), false)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, s := range rep.Steps {
		kinds = append(kinds, s.Node+" "+s.Kind)
	}
	if want := []string{"lab-cp-1 kubernetes", "lab-worker-1 kubernetes", "lab-worker-2 kubernetes"}; !slices.Equal(kinds, want) {
		t.Errorf("steps %v, want %v", kinds, want)
	}
	for name, v := range kubelets() {
		if v != "v1.37.0" {
			t.Errorf("%s: kubelet %s, want v1.37.0", name, v)
		}
	}
	if gone, _ := downs(l.env.TalosEvents()[before:], ips); len(gone) != 0 {
		t.Errorf("nodes rebooted for a Kubernetes upgrade: %v", gone)
	}
	if n := l.env.TalosCalls("/machine.LifecycleService/Upgrade") + l.env.TalosCalls("/machine.MachineService/Upgrade"); n != 0 {
		t.Errorf("%d Talos upgrade call(s) for a Kubernetes upgrade", n)
	}
	applies := l.env.TalosCalls("/machine.MachineService/ApplyConfiguration")
	l.up(ctx, l.options())
	if n := l.env.TalosCalls("/machine.MachineService/ApplyConfiguration"); n != applies {
		t.Errorf("up after the upgrade applied %d config(s)", n-applies)
	}
}

// TestUpgradeDrainHeldByAPodDisruptionBudget: a budget that allows no disruption holds the
// drain of the first worker; the run stops naming the budget, with the worker cordoned but
// never taken down, and once the budget is gone the next run finishes it (kube-apiserver's own
// Eviction API enforces the budget here).
func TestUpgradeDrainHeldByAPodDisruptionBudget(t *testing.T) {
	l, ips := upgradeLab(t, "v1.14.0", 1, 2, e2e.Options{})
	ctx := t.Context()
	pod, err := l.cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: "lab-worker-1", Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if _, err := l.cs.CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	one := intstr.FromInt32(1)
	pdb, err := l.cs.PolicyV1().PodDisruptionBudgets("default").Create(ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// kube-controller-manager's disruption controller: one healthy pod of one wanted.
	pdb.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation, CurrentHealthy: 1, DesiredHealthy: 1, ExpectedPods: 1}
	if _, err := l.cs.PolicyV1().PodDisruptionBudgets("default").UpdateStatus(ctx, pdb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	l.setTalosVersion("v1.14.0", "v1.14.1")
	opts := l.options()
	opts.Rollout.DrainTimeout = 2 * time.Second
	rep, err := lifecycle.Upgrade(ctx, opts, false)
	if err == nil || !strings.Contains(err.Error(), "node lab-worker-1") || !strings.Contains(err.Error(), "pod default/web-0 is held by PodDisruptionBudget default/web") {
		t.Fatalf("upgrade with a drain held = %v, want an error naming the node, the pod and the budget", err)
	}
	if !slices.Equal(rep.Upgraded, []string{"lab-cp-1"}) {
		t.Errorf("upgraded %v", rep.Upgraded)
	}
	if v := l.versions(ips); v["lab-worker-1"] != "v1.14.0" || v["lab-worker-2"] != "v1.14.0" {
		t.Errorf("versions after the held drain: %v", v)
	}
	if n, _ := l.cs.CoreV1().Nodes().Get(ctx, "lab-worker-1", metav1.GetOptions{}); n == nil || !n.Spec.Unschedulable {
		t.Error("lab-worker-1 is not left cordoned")
	}

	if err := l.cs.PolicyV1().PodDisruptionBudgets("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if rep, err = lifecycle.Upgrade(ctx, l.options(), false); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Upgraded, []string{"lab-worker-1", "lab-worker-2"}) {
		t.Errorf("the second run upgraded %v", rep.Upgraded)
	}
	if _, err := l.cs.CoreV1().Pods("default").Get(ctx, "web-0", metav1.GetOptions{}); err == nil {
		t.Error("web-0 was not evicted")
	}
}
