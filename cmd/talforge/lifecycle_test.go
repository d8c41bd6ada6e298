package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/talforge/talforge/internal/testenv/e2e"
	"github.com/talforge/talforge/internal/testenv/kubeenv"
)

const cliLab = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
talos: {version: v1.14.1, allowSchedulingOnControlPlanes: true}
network: {cidr: 127.0.72.0/24, gateway: 127.0.72.1, nameservers: [127.0.72.1]}
proxmox:
  endpoint: {{PVE_URL}}
  tokenFile: secrets/proxmox.sops.yaml
  caFile: pve-ca.pem
  node: pve
  storage: local-lvm
  defaults: {cores: 2, memory: 4096, disk: 20G, longhornDisk: 10G}
nodes:
  - {name: lab-cp-1, role: controlplane, ip: 127.0.72.11}
  - {name: lab-worker-1, role: worker, ip: 127.0.72.21}
longhorn:
  version: 1.10.2
  repoURL: {{REPO_URL}}
  replicaCount: 2
  backup:
    target: s3://lab-longhorn@eu-central-1/
    credentialsFile: secrets/aws-backup.sops.yaml
  volumes:
    - {name: traefik-data, namespace: traefik, claim: traefik, size: 1Gi}
`

// runCLIIn runs the CLI with stdin.
func runCLIIn(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	var out, errOut strings.Builder
	code := run(t.Context(), args, streams{in: strings.NewReader(stdin), out: &out, errOut: &errOut})
	return cliResult{code: code, out: out.String(), errOut: errOut.String()}
}

// TestLifecycleCommands drives plan, up, status, dr-test and rebuild through the CLI over the
// emulated homelab: exit codes, what is printed, and that a refused rebuild touches nothing.
func TestLifecycleCommands(t *testing.T) {
	env := e2e.Start(t, kubeenv.Start(t), e2e.Options{Addresses: []string{"127.0.72.11", "127.0.72.21"}})
	proj := env.Project(t, "lab", cliLab)
	common := []string{"-p", proj.Profile, "--talos-port", strconv.Itoa(env.TalosPort), "--poll-interval", "50ms", "--timeout", "30s", "--chart-cache", t.TempDir()}
	step := func(name string, want int, stdin string, args ...string) cliResult {
		t.Helper()
		res := runCLIIn(t, stdin, append(args, common...)...)
		if res.code != want {
			t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", name, res.code, want, res.out, res.errOut)
		}
		return res
	}
	expect := func(name, got string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(got, w) {
				t.Errorf("%s: output lacks %q:\n%s", name, w, got)
			}
		}
	}

	res := step("plan before", exitInvalid, "", "plan")
	expect("plan before", res.out, "Plan: 2 to create", "would install (configs not generated yet)", "Changes pending")

	res = step("up", exitOK, "", "up")
	expect("up", res.out, "provision  lab-cp-1      created, started", "apply      lab-worker-1  installed", "bootstrap  lab-cp-1      etcd bootstrapped",
		"longhorn   cluster       1.10.2 install (Helm revision 1)", "cluster lab is up (changes applied)")
	res = step("up again", exitOK, "", "up")
	expect("up again", res.out, "cluster lab is up (nothing to do: everything was in place)")

	res = step("plan after", exitOK, "", "plan", "--output", "json")
	var plan struct {
		Changes bool
		Nodes   []struct{ Name, Action string }
		Etcd    string
	}
	if err := json.Unmarshal([]byte(res.out), &plan); err != nil || plan.Changes || len(plan.Nodes) != 2 || plan.Nodes[0].Action != "unchanged" {
		t.Errorf("plan --output json: %v\n%s", err, res.out)
	}

	if err := env.Manager().CreateVolume(t.Context(), "traefik-data", nil); err != nil {
		t.Fatal(err)
	}
	res = step("dr-test", exitOK, "", "dr-test")
	expect("dr-test", res.out, "dr-test    traefik-data  PASS: backup backup-", "(time to restore)", "ok   restore finished")

	res = step("status", exitOK, "", "status", "--output", "json")
	var st struct {
		Nodes []struct {
			Talos struct{ Mode string }
		}
		Longhorn struct {
			Volumes []struct {
				Name       string
				LastBackup *struct{ Name string }
			}
		}
	}
	if err := json.Unmarshal([]byte(res.out), &st); err != nil || len(st.Nodes) != 2 || st.Nodes[0].Talos.Mode != "configured" ||
		len(st.Longhorn.Volumes) != 1 || st.Longhorn.Volumes[0].LastBackup == nil {
		t.Errorf("status --output json: %v\n%s", err, res.out)
	}

	env.PVE.ResetLog()
	res = step("rebuild, wrong name", exitInvalid, "nope\n", "rebuild")
	expect("rebuild, wrong name", res.errOut, "Type the cluster name (lab) to destroy and rebuild it:", `"nope" is not the cluster name "lab"; nothing was changed`)
	if m := env.PVE.MutatingRequests(); len(m) > 0 {
		t.Fatalf("a refused rebuild sent %v", m)
	}
	res = step("rebuild", exitOK, "lab\n", "rebuild", "--backup-first", "--keep-data-disks")
	expect("rebuild", res.out, "Rebuild plan for cluster lab", "destroy    lab-worker-1  destroyed, data disk kept", "restore    traefik-data  restored from backup-",
		"cluster lab rebuilt in")
	if env.Resets() != 1 {
		t.Errorf("cluster losses: %d", env.Resets())
	}

	res = step("status after rebuild", exitOK, "", "status")
	expect("status after rebuild", res.out, "lab-cp-1      controlplane  127.0.72.11", "Ready=True", "Backups:      s3://lab-longhorn@eu-central-1/ available", "traefik-data  yes")

	res = step("bad output flag", exitInvalid, "", "status", "--output", "yaml")
	expect("bad output flag", res.errOut, "--output must be text or json")
}
