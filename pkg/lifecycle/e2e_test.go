package lifecycle_test

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/talforge/talforge/pkg/gitops"
	"github.com/talforge/talforge/pkg/lifecycle"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/proxmox"
)

const (
	applyRPC      = "/machine.MachineService/ApplyConfiguration"
	bootstrapRPC  = "/machine.MachineService/Bootstrap"
	kubeconfigRPC = "/machine.MachineService/Kubeconfig"
)

// TestUpFromEmptyProxmoxThenNothingChanges: `up` takes an empty PVE to a cluster with
// Longhorn and its backup target; a second `up` sends no mutating PVE request, no
// ApplyConfiguration or Bootstrap, upgrades nothing with Helm and writes no file.
func TestUpFromEmptyProxmoxThenNothingChanges(t *testing.T) {
	l := newLab(t)
	if len(l.env.PVE.VMs()) != 0 {
		t.Fatal("the PVE emulator should start empty")
	}

	// Plan on nothing: everything would be created, nothing is waited for or written.
	plan, err := lifecycle.Plan(t.Context(), l.options())
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	var pb strings.Builder
	plan.Print(&pb)
	for _, want := range []string{"Plan: 2 to create, 0 to update, 0 to start, 0 unchanged.", "+ lab-cp-1      would install (configs not generated yet)",
		"etcd: would bootstrap on lab-cp-1", "Longhorn: + install 1.10.2 (after bootstrap)", "Changes pending"} {
		if !strings.Contains(pb.String(), want) {
			t.Errorf("plan before up lacks %q:\n%s", want, pb.String())
		}
	}
	if !plan.Changes || len(l.env.PVE.MutatingRequests()) > 0 {
		t.Errorf("plan: changes %v, mutating PVE requests %v", plan.Changes, l.env.PVE.MutatingRequests())
	}
	if _, err := os.Stat(l.outDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("plan wrote %s: %v", l.outDir(), err)
	}

	// Status of nothing: reported, not failed.
	st, err := lifecycle.Status(t.Context(), l.options())
	if err != nil {
		t.Fatalf("status before up: %v", err)
	}
	if st.Nodes[0].VM == nil || st.Nodes[0].VM.State != "missing" || st.Nodes[0].Talos.Mode != "unknown" || len(st.Problems) != 2 ||
		!strings.Contains(st.Problems[0], "secrets bundle does not exist yet") || !strings.Contains(st.Problems[1], "no kubeconfig.sops.yaml yet") {
		t.Errorf("status before up: %+v", st)
	}

	// The first up commits what it wrote.
	gitInit(t, l.proj.Root)
	opts := l.options()
	opts.Commit = true
	var (
		mu          sync.Mutex
		phase       string
		connectedIn []string
	)
	opts.OnPhase = func(name string) { mu.Lock(); phase = name; mu.Unlock() }
	opts.ConnectPVE = func(ctx context.Context, c *profile.Cluster) (proxmox.API, error) {
		mu.Lock()
		connectedIn = append(connectedIn, phase)
		mu.Unlock()
		return lifecycle.ConnectProfilePVE(ctx, c)
	}
	start := time.Now()
	res := l.up(t.Context(), opts)
	t.Logf("first up: %s", time.Since(start).Round(time.Millisecond))
	// Proxmox is read while generate runs (the plan needs the profile, not generate's output),
	// over the one connection of the run.
	if !slices.Equal(connectedIn, []string{lifecycle.PhaseGenerate}) {
		t.Errorf("up connected to Proxmox during the phases %q, want once, during generate", connectedIn)
	}
	if !res.Committed {
		t.Error("up --commit did not commit")
	}
	msg := git(t, l.proj.Root, "log", "-1", "--format=%B")
	for _, want := range []string{"talforge up lab: generate, provision, apply, bootstrap, longhorn", "provision: 2 created, 0 updated, 2 started",
		"update secrets.sops.yaml", "update kubeconfig.sops.yaml", "update nodes/lab-cp-1.yaml.enc", "update longhorn/values.yaml"} {
		if !strings.Contains(msg, want) {
			t.Errorf("commit message lacks %q:\n%s", want, msg)
		}
	}
	if dirty := git(t, l.proj.Root, "status", "--porcelain", "--", "clusters"); dirty != "" {
		t.Errorf("clusters/ not fully committed:\n%s", dirty)
	}
	l.assertUp()
	if !res.Changed() {
		t.Error("the first up reports no change")
	}
	progress := l.out.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^validate\s+cluster\s+.*lab\.yaml: cluster lab, 2 node\(s\)\s+\(\d+\.\ds\)$`),
		regexp.MustCompile(`(?m)^provision\s+lab-cp-1\s+created, started \(VMID \d+\)\s+\(\d+\.\ds\)$`),
		regexp.MustCompile(`(?m)^provision\s+lab-worker-1\s+created, started \(VMID \d+\)\s+\(\d+\.\ds\)$`),
		regexp.MustCompile(`(?m)^apply\s+lab-cp-1\s+installed\s+\(\d+\.\ds\)$`),
		regexp.MustCompile(`(?m)^apply\s+lab-worker-1\s+installed\s+\(\d+\.\ds\)$`),
		regexp.MustCompile(`(?m)^bootstrap\s+lab-cp-1\s+etcd bootstrapped\s+\(\d+\.\ds\)$`),
		regexp.MustCompile(`(?m)^longhorn\s+cluster\s+1\.10\.2 install \(Helm revision 1\); BackupTarget default available: s3://lab-longhorn@eu-central-1/\s+\(\d+\.\ds\)$`),
	} {
		if !want.MatchString(progress) {
			t.Errorf("progress lacks %s", want)
		}
	}
	t.Logf("first run:\n%s", progress)
	// The run waited for each phase in turn; in the per-node phases, for one of the nodes.
	cp := res.CriticalPath
	if cp == nil || len(cp.Steps) != len(res.Phases) || res.Phases[4].Name != lifecycle.PhaseApply || res.Phases[4].Node == "" || cp.Total <= 0 || cp.Share <= 0 || cp.Share > 1 ||
		!regexp.MustCompile(`^critical path: .*apply \d+\.\ds \(lab-(cp|worker)-1\) → .*longhorn \d+\.\ds; longest phase: [a-z]+ \(\d+%\)$`).MatchString(cp.String()) {
		t.Errorf("critical path %+v: %q", cp, cp.String())
	}
	if l.env.BootstrapCalls() != 1 {
		t.Errorf("Bootstrap called %d times", l.env.BootstrapCalls())
	}

	// Second run: observe everything, change nothing.
	before := l.files()
	applies, bootstraps, rev := l.env.TalosCalls(applyRPC), l.env.TalosCalls(bootstrapRPC), l.helmRevision()
	l.env.PVE.ResetLog()
	l.out.Reset()
	start = time.Now()
	head := git(t, l.proj.Root, "rev-parse", "HEAD")
	res = l.up(t.Context(), opts)
	t.Logf("second up: %s", time.Since(start).Round(time.Millisecond))
	if res.Committed || git(t, l.proj.Root, "rev-parse", "HEAD") != head {
		t.Error("the second up --commit made a commit")
	}
	t.Logf("second run:\n%s", l.out.String())
	if res.Changed() || len(res.Written) > 0 {
		t.Errorf("second up changed something: %+v, wrote %v", res.Phases, res.Written)
	}
	if m := l.env.PVE.MutatingRequests(); len(m) > 0 {
		t.Errorf("second up sent %d mutating PVE request(s): %+v", len(m), m)
	}
	if got := l.env.TalosCalls(applyRPC); got != applies {
		t.Errorf("second up sent %d ApplyConfiguration call(s)", got-applies)
	}
	if got := l.env.TalosCalls(bootstrapRPC); got != bootstraps {
		t.Errorf("second up sent %d Bootstrap call(s)", got-bootstraps)
	}
	if got := l.helmRevision(); got != rev {
		t.Errorf("second up moved the Helm release from revision %d to %d", rev, got)
	}
	if after := l.files(); !maps.Equal(before, after) {
		t.Errorf("second up touched files:\nbefore %v\nafter  %v", before, after)
	}
	for _, want := range []string{"unchanged (VMID", "unchanged  (", "etcd already bootstrapped", "1.10.2 unchanged"} {
		if !strings.Contains(l.out.String(), want) {
			t.Errorf("second run's progress lacks %q:\n%s", want, l.out.String())
		}
	}

	// Plan on a cluster in place: no changes.
	if plan, err = lifecycle.Plan(t.Context(), l.options()); err != nil || plan.Changes {
		pb.Reset()
		if plan != nil {
			plan.Print(&pb)
		}
		t.Fatalf("plan after up: %v, changes %v\n%s", err, plan != nil && plan.Changes, pb.String())
	}

	certificatesRenewBeforeExpiry(t, l)

	// A profile edit shows up as a PVE update and a redacted config diff, and is not applied.
	data, err := os.ReadFile(l.proj.Profile)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(strings.Replace(string(data), "memory: 4096", "memory: 6144", 1), "nameservers: [127.0.71.1]", "nameservers: [127.0.71.1, 9.9.9.9]", 1)
	if err := os.WriteFile(l.proj.Profile, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	l.env.PVE.ResetLog()
	applies = l.env.TalosCalls(applyRPC)
	if plan, err = lifecycle.Plan(t.Context(), l.options()); err != nil {
		t.Fatalf("plan after the edit: %v", err)
	}
	pb.Reset()
	plan.Print(&pb)
	for _, want := range []string{"~ lab-cp-1 (VMID", "memory: 4096 -> 6144", "~ lab-cp-1      would apply (mode auto)", "+    - address: 9.9.9.9", "Longhorn: = 1.10.2 installed, matches the profile"} {
		if !strings.Contains(pb.String(), want) {
			t.Errorf("plan after the edit lacks %q:\n%s", want, pb.String())
		}
	}
	if !plan.Changes || len(l.env.PVE.MutatingRequests()) > 0 || l.env.TalosCalls(applyRPC) != applies {
		t.Errorf("plan changed something or found nothing: changes %v", plan.Changes)
	}
	for _, secret := range []string{"BEGIN", "PRIVATE KEY", l.proj.AWSSecret} {
		if strings.Contains(pb.String(), secret) {
			t.Errorf("the plan shows %q", secret)
		}
	}
}

func gitInit(t *testing.T, dir string) {
	t.Helper()
	t.Setenv("GIT_AUTHOR_NAME", "talforge test")
	t.Setenv("GIT_AUTHOR_EMAIL", "test@talforge.invalid")
	t.Setenv("GIT_COMMITTER_NAME", "talforge test")
	t.Setenv("GIT_COMMITTER_EMAIL", "test@talforge.invalid")
	git(t, dir, "init", "-q")
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// certificatesRenewBeforeExpiry: status shows when the stored talosconfig's and kubeconfig's
// client certificates expire; 10 days before the kubeconfig's does, the next command that
// needs the kubeconfig fetches a new one instead of reusing it.
func certificatesRenewBeforeExpiry(t *testing.T, l *lab) {
	t.Helper()
	st, err := lifecycle.Status(t.Context(), l.options())
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	st.Print(&sb)
	if len(st.Certificates) != 2 || st.Certificates[0].File != "talosconfig.sops.yaml" || st.Certificates[1].File != "kubeconfig.sops.yaml" ||
		st.Certificates[0].RenewSoon || st.Certificates[1].RenewSoon || !strings.Contains(sb.String(), "Client certificates:") {
		t.Fatalf("status certificates: %+v\n%s", st.Certificates, sb.String())
	}

	kubeExpires := st.Certificates[1].Expires
	soon := l.options()
	soon.Now = func() time.Time { return kubeExpires.Add(-10 * 24 * time.Hour) }
	if st, err = lifecycle.Status(t.Context(), soon); err != nil || !st.Certificates[1].RenewSoon {
		t.Errorf("status 10 days before the kubeconfig expires: %v, %+v", err, st.Certificates)
	}
	fetches := l.env.TalosCalls(kubeconfigRPC)
	if _, _, err := lifecycle.Kubeconfig(t.Context(), soon, false); err != nil {
		t.Fatal(err)
	}
	if got := l.env.TalosCalls(kubeconfigRPC) - fetches; got != 1 {
		t.Errorf("10 days before expiry the kubeconfig was fetched %d times, want once", got)
	}
	fetches = l.env.TalosCalls(kubeconfigRPC)
	if _, _, err := lifecycle.Kubeconfig(t.Context(), l.options(), false); err != nil {
		t.Fatal(err)
	}
	if got := l.env.TalosCalls(kubeconfigRPC) - fetches; got != 0 {
		t.Errorf("a year before expiry the kubeconfig was fetched %d times, want reused", got)
	}
}

// TestUpGenerateFailureDoesNotWaitForProxmox: up reads Proxmox while generate runs; when
// generate fails, up reports that at once rather than waiting for a Proxmox that does not
// answer, and the reading is cancelled.
func TestUpGenerateFailureDoesNotWaitForProxmox(t *testing.T) {
	l := newLab(t)
	opts := l.options()
	opts.Renderers = append(opts.Renderers, func(*profile.Cluster) ([]gitops.File, error) {
		return nil, errors.New("the renderer broke")
	})
	cancelled := make(chan struct{})
	opts.ConnectPVE = func(ctx context.Context, _ *profile.Cluster) (proxmox.API, error) {
		<-ctx.Done() // a Proxmox that never answers
		close(cancelled)
		return nil, ctx.Err()
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err := lifecycle.Up(ctx, opts)
	if err == nil || !strings.Contains(err.Error(), "the renderer broke") {
		t.Fatalf("up: %v, want the renderer's error", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("up took %s to report a generate failure", took.Round(time.Millisecond))
	}
	select {
	case <-cancelled:
	default:
		t.Error("the Proxmox reading was not cancelled when up ended")
	}
	if len(l.env.PVE.MutatingRequests()) > 0 {
		t.Errorf("mutating PVE requests after a failed generate: %v", l.env.PVE.MutatingRequests())
	}
}
