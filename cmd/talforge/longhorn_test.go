package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/spf13/cobra"
	"helm.sh/helm/v3/pkg/chart"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/talforge/talforge/internal/testenv/helmrepo"
	"github.com/talforge/talforge/internal/testenv/kubeenv"
	"github.com/talforge/talforge/internal/testenv/lhchart"
	"github.com/talforge/talforge/internal/testenv/lhmanager"
	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/sopsfile"
)

const lhProfile = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lhcli}
network: {cidr: 10.0.0.0/24, gateway: 10.0.0.1, nameservers: [10.0.0.1]}
nodes:
  - {name: cp-1, role: controlplane, ip: 10.0.0.11, longhornDisk: 50G}
  - {name: w-1, role: worker, ip: 10.0.0.21, longhornDisk: 50G}
longhorn:
  version: 1.10.2
  repoURL: REPO
  replicaCount: 2
  backup:
    target: s3://lhcli-backups@eu-central-1/longhorn/
    credentialsFile: secrets/aws-backup.sops.yaml
    recurringJobs:
      - {name: nightly, task: backup, cron: "0 3 * * *", retain: 7, groups: [critical]}
  storageClasses:
    - {name: longhorn-retain, reclaimPolicy: Retain, replicas: 2, recurringJobGroups: [critical]}
`

// runLonghornCLI runs talforge with the longhorn and iam-policy commands registered (also
// when root.go does not register them yet).
func runLonghornCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	var out, errOut bytes.Buffer
	o := &rootOptions{streams: streams{in: strings.NewReader(""), out: &out, errOut: &errOut}}
	root := newRootCmd(o)
	have := map[string]bool{}
	for _, c := range root.Commands() {
		have[c.Name()] = true
	}
	for _, c := range []*cobra.Command{newLonghornCmd(o), newIAMPolicyCmd(o)} {
		if !have[c.Name()] {
			root.AddCommand(c)
		}
	}
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	code := exitOK
	if err := root.ExecuteContext(t.Context()); err != nil {
		var ee *exitError
		if !errors.As(err, &ee) || ee.err != nil {
			fmt.Fprintln(&errOut, "error:", err)
		}
		code = exitCode(err)
	}
	return cliResult{code: code, out: out.String(), errOut: errOut.String()}
}

func TestLonghornCLI(t *testing.T) {
	cp := kubeenv.Start(t)
	var charts []*chart.Chart
	for _, v := range lhchart.Versions {
		ch, err := lhchart.Chart(v)
		if err != nil {
			t.Fatal(err)
		}
		charts = append(charts, ch)
	}
	repo := helmrepo.Start(t, charts...)
	lhmanager.Start(t, cp.Config)

	root := t.TempDir()
	useThrowawayAgeKey(t, root)
	profilePath := filepath.Join(root, "profiles", "lhcli.yaml")
	if err := os.MkdirAll(filepath.Dir(profilePath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(profilePath, []byte(strings.Replace(lhProfile, "REPO", repo.URL, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	const secret = "cli-test-secret-value-0123456789"
	for path, plain := range map[string][]byte{
		filepath.Join(root, "secrets", "aws-backup.sops.yaml"):             []byte("AWS_ACCESS_KEY_ID: AKIACLITEST\nAWS_SECRET_ACCESS_KEY: " + secret + "\n"),
		filepath.Join(root, "clusters", "lhcli", bootstrap.KubeconfigFile): cp.Kubeconfig,
	} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := sopsfile.WriteFile(path, plain); err != nil {
			t.Fatal(err)
		}
	}
	cache := filepath.Join(root, "chart-cache")
	lh := func(args ...string) cliResult {
		// The profile's bucket is not reachable from here: the backup target preflight is
		// tested in pkg/backuptarget and pkg/longhorn.
		return runLonghornCLI(t, append(append([]string{"longhorn"}, args...), "-p", profilePath, "--chart-cache", cache, "--timeout", "30s", "--skip-preflight")...)
	}
	expect := func(name string, r cliResult, code int, wants ...string) {
		t.Helper()
		if r.code != code {
			t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", name, r.code, code, r.out, r.errOut)
		}
		for _, w := range wants {
			if !strings.Contains(r.out+r.errOut, w) {
				t.Errorf("%s: output lacks %q\nstdout:\n%s\nstderr:\n%s", name, w, r.out, r.errOut)
			}
		}
		if strings.Contains(r.out+r.errOut, secret) {
			t.Errorf("%s printed the AWS secret", name)
		}
	}

	expect("install", lh("install"), 0, "Longhorn 1.10.2: install done (Helm revision 1)", "BackupTarget default available")
	expect("second install", lh("install"), 0, "Longhorn 1.10.2 is up to date (Helm revision 1)")
	expect("status", lh("status"), 0, "Longhorn:        1.10.2 (Helm revision 1, deployed", "Backup target:   s3://lhcli-backups@eu-central-1/longhorn/ available", `Deleting flag:   false`)
	expect("drift", lh("drift"), 0, "no drift")

	dyn := dynamic.NewForConfigOrDie(cp.Config)
	rj, err := dyn.Resource(lhmanager.RecurringJobGVR).Namespace(lhmanager.Namespace).Get(t.Context(), "nightly", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rj.Object["spec"].(map[string]any)["retain"] = int64(30)
	if _, err := dyn.Resource(lhmanager.RecurringJobGVR).Namespace(lhmanager.Namespace).Update(t.Context(), rj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("drift after an edit", lh("drift"), exitChanges, "drift   RecurringJob nightly spec.retain: want 7, got 30", "1 difference(s)")
	expect("reconcile", lh("drift", "--reconcile"), 0, "fixed   RecurringJob nightly spec.retain", "1 difference(s) reconciled")
	expect("drift after reconcile", lh("drift"), 0, "no drift")

	expect("plan", lh("upgrade", "--to", "1.11.3", "--plan"), exitChanges, "Longhorn 1.10.2 -> 1.11.3, one minor at a time")
	expect("downgrade", lh("upgrade", "--to", "1.9.2"), exitFailure, "refusing to downgrade Longhorn from 1.10.2 to 1.9.2")
	expect("reinstall", lh("reinstall"), 0, "Longhorn 1.10.2 re-applied (Helm revision 2)")

	// A plain --kubeconfig works as well; without any kubeconfig the error says what to do.
	plainKC := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(plainKC, cp.Kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	expect("status --kubeconfig", lh("status", "--kubeconfig", plainKC), 0, "Longhorn:        1.10.2")
	if err := os.Remove(filepath.Join(root, "clusters", "lhcli", bootstrap.KubeconfigFile)); err != nil {
		t.Fatal(err)
	}
	expect("status without kubeconfig", lh("status"), exitFailure, "kubeconfig.sops.yaml does not exist: bootstrap the cluster first")

	// iam-policy prints the least-privilege policy for the bucket and path.
	r := runLonghornCLI(t, "iam-policy", "-p", profilePath)
	expect("iam-policy", r, 0)
	var pol struct {
		Statement []struct{ Action, Resource []string }
	}
	if err := json.Unmarshal([]byte(r.out), &pol); err != nil {
		t.Fatalf("iam-policy output is not JSON: %v\n%s", err, r.out)
	}
	if len(pol.Statement) != 2 || pol.Statement[0].Resource[0] != "arn:aws:s3:::lhcli-backups" || pol.Statement[1].Resource[0] != "arn:aws:s3:::lhcli-backups/longhorn/*" {
		t.Errorf("policy = %s", r.out)
	}
}

func TestLonghornRenderer(t *testing.T) {
	root := t.TempDir()
	profilePath := filepath.Join(root, "profiles", "lhcli.yaml")
	creds := filepath.Join(root, "secrets", "aws-backup.sops.yaml")
	for path, data := range map[string]string{profilePath: strings.Replace(lhProfile, "REPO", "https://charts.longhorn.io", 1), creds: ""} {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := profile.Load(profilePath)
	if err != nil {
		t.Fatal(err)
	}
	files, err := longhorn.Files(c)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
		if f.Secret || len(f.Data) == 0 {
			t.Errorf("%s: secret=%v, %d bytes", f.Path, f.Secret, len(f.Data))
		}
	}
	if got := strings.Join(paths, ","); got != "longhorn/values.yaml,longhorn/manifests.yaml,aws/iam-policy.json" {
		t.Errorf("files = %s", got)
	}
	again, _ := longhorn.Files(c)
	for i := range files {
		if !bytes.Equal(files[i].Data, again[i].Data) {
			t.Errorf("%s is not deterministic", files[i].Path)
		}
	}
	c.Longhorn = nil
	if files, err := longhorn.Files(c); err != nil || len(files) != 0 {
		t.Errorf("without longhorn: %v, %v", files, err)
	}
}

// useThrowawayAgeKey makes this test's SOPS identity a fresh age key (in the environment, no
// file) and writes the project's creation rules for it under root.
func useThrowawayAgeKey(t *testing.T, root string) {
	t.Helper()
	t.Setenv("TALFORGE_PROFILE", "")
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOPS_AGE_KEY", id.String())
	t.Setenv("SOPS_AGE_KEY_FILE", "")
	if _, err := sopsfile.WriteCreationRules(root, []string{id.Recipient().String()}); err != nil {
		t.Fatal(err)
	}
}
