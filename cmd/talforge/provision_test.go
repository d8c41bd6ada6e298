package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/talforge/talforge/internal/testenv/pvesim"
	"github.com/talforge/talforge/pkg/sopsfile"
)

const pveTokenID, pveTokenSecret = "talforge@pve!cli", "9d3c7a51-6e0b-4c2d-8f1a-2b3c4d5e6f70"

// pveProject writes a two-node Proxmox profile pointing at a PVE emulator, the emulator's CA
// file, an age identity and the SOPS-encrypted token file.
func pveProject(t *testing.T, srv *pvesim.Server) string {
	t.Helper()

	root := t.TempDir()
	t.Setenv("HOME", root)
	t.Setenv("SOPS_AGE_KEY_FILE", filepath.Join(root, "age-keys.txt"))
	t.Setenv("TALFORGE_PROFILE", "")
	t.Setenv("TALFORGE_PVE_TOKEN", "")

	id, err := sopsfile.EnsureIdentity()
	if err != nil {
		t.Fatal(err)
	}

	if _, err := sopsfile.WriteCreationRules(root, []string{id.Recipient}); err != nil {
		t.Fatal(err)
	}

	if err := os.MkdirAll(filepath.Join(root, "secrets"), 0o755); err != nil {
		t.Fatal(err)
	}

	if _, err := sopsfile.WriteFile(filepath.Join(root, "secrets", "proxmox.sops.yaml"), []byte("token: "+pveTokenID+"="+pveTokenSecret+"\n")); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(filepath.Join(root, "pve-ca.pem"), srv.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}

	prof := fmt.Sprintf(`apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
talos: {version: v1.14.1}
network: {cidr: 10.9.0.0/24, gateway: 10.9.0.1, nameservers: [10.9.0.1, 1.1.1.1], searchDomains: [lab.lan]}
proxmox:
  endpoint: %s
  tokenFile: secrets/proxmox.sops.yaml
  caFile: pve-ca.pem
  node: pve
  storage: local-lvm
  defaults: {cores: 2, memory: 4096, disk: 20G, longhornDisk: 50G}
nodes:
  - {name: lab-cp-1, role: controlplane, ip: 10.9.0.11}
  - {name: lab-worker-1, role: worker, ip: 10.9.0.21}
longhorn: {replicaCount: 1}
`, srv.URL())

	path := filepath.Join(root, "profiles", "lab.yaml")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(path, []byte(prof), 0o600); err != nil {
		t.Fatal(err)
	}

	return path
}

func pveServer(t *testing.T) *pvesim.Server {
	t.Helper()

	o := pvesim.Options{AuthFailDelay: -1, DefaultLatency: 5 * time.Millisecond,
		Tokens: []pvesim.Token{{ID: pveTokenID, Secret: pveTokenSecret, ACL: pvesim.MinimalACL("local-lvm", "local", "pve", "vmbr0")}}}

	o.Schema = pvesim.SchemaForTest(t, 9)

	srv := pvesim.New(o)
	t.Cleanup(srv.Close)

	return srv
}

func TestProvisionAndDestroyCommands(t *testing.T) {
	srv := pveServer(t)
	path := pveProject(t, srv)

	var outputs []string

	step := func(name string, want int, args ...string) cliResult {
		t.Helper()

		res := runCLI(t, args...)
		outputs = append(outputs, res.out, res.errOut)

		if res.code != want {
			t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", name, res.code, want, res.out, res.errOut)
		}

		return res
	}

	res := step("plan before", exitChanges, "provision", "-p", path, "--plan")
	if !strings.Contains(res.out, "Plan: 2 to create, 0 to update, 0 to start, 0 unchanged.") || !strings.Contains(res.out, "+ boot image local:iso/talos-v1.14.1-nocloud-amd64-") {
		t.Errorf("plan output:\n%s", res.out)
	}

	if len(srv.MutatingRequests()) != 0 {
		t.Fatalf("--plan changed something: %v", srv.MutatingRequests())
	}

	res = step("provision", exitOK, "provision", "-p", path, "--parallelism", "2")
	if !strings.Contains(res.out, "2 of 2 VMs provisioned.") || !strings.Contains(res.errOut, "connected to Proxmox VE 9.1.1") {
		t.Errorf("provision output:\n%s\n%s", res.out, res.errOut)
	}

	step("plan after", exitOK, "provision", "-p", path, "--plan")
	res = step("provision again", exitOK, "provision", "-p", path)

	if !strings.Contains(res.out, "Nothing to do") {
		t.Errorf("second provision:\n%s", res.out)
	}

	res = runCLI(t, "destroy", "-p", path) // no --yes, nothing typed
	if res.code != exitInvalid || len(srv.VMs()) != 2 {
		t.Fatalf("unconfirmed destroy: exit %d, %d VMs left\n%s", res.code, len(srv.VMs()), res.errOut)
	}

	res = step("destroy keep", exitOK, "destroy", "-p", path, "--yes", "--keep-data-disks")
	if !strings.Contains(res.out, "Destroyed 2 VM(s) of cluster lab.") {
		t.Errorf("destroy output:\n%s", res.out)
	}

	res = step("re-provision", exitOK, "provision", "-p", path)
	if !strings.Contains(res.out, "re-attaches the kept data disk") {
		t.Errorf("re-provision plan:\n%s", res.out)
	}

	for _, o := range outputs {
		if strings.Contains(o, pveTokenSecret) {
			t.Fatalf("the token secret was printed:\n%s", o)
		}
	}

	for _, r := range srv.Requests() {
		for _, v := range r.Params {
			if strings.Contains(v, pveTokenSecret) {
				t.Fatalf("the token secret was sent as a parameter")
			}
		}
	}
}

func TestProvisionCommandFailures(t *testing.T) {
	srv := pveServer(t)
	path := pveProject(t, srv)
	srv.Seed(pvesim.SeedVM{ID: 300, Config: map[string]string{"name": "lab-cp-1", "memory": "2048"}, Running: true})

	// A node in conflict is left alone, the other node is provisioned in the same run, and the
	// run fails naming the conflict.
	res := runCLI(t, "provision", "-p", path)
	conflict := `VM 300 "lab-cp-1" on pve: has the name of node lab-cp-1 but not the ownership tag talforge.node.lab`
	if res.code != exitFailure || !strings.Contains(res.out, "! "+conflict) || !strings.Contains(res.errOut, conflict) ||
		!strings.Contains(res.out, "! lab-cp-1 (new VMID on pve) is left alone until its conflict below is resolved") ||
		!strings.Contains(res.out, "1 of 2 VMs provisioned.") {
		t.Errorf("foreign VM: exit %d\n%s\n%s", res.code, res.out, res.errOut)
	}

	for _, r := range srv.MutatingRequests() {
		if strings.Contains(r.Path+"/", "/qemu/300/") || r.Params["name"] == "lab-cp-1" {
			t.Errorf("the node in conflict got %s %s %v", r.Method, r.Path, r.Params)
		}
	}

	worker := false
	for _, vm := range srv.VMs() {
		worker = worker || (vm.Config["name"] == "lab-worker-1" && vm.Running)
	}
	if len(srv.VMs()) != 2 || !worker {
		t.Errorf("VMs after the run: %+v, want the foreign VM and lab-worker-1 running", srv.VMs())
	}

	t.Setenv("TALFORGE_PVE_TOKEN", pveTokenID+"=wrong-"+pveTokenSecret)

	res = runCLI(t, "provision", "-p", path, "--plan")
	if res.code != exitFailure || !strings.Contains(res.errOut, "HTTP 401: invalid token value!") || strings.Contains(res.out+res.errOut, pveTokenSecret) {
		t.Errorf("bad token: exit %d\n%s\n%s", res.code, res.out, res.errOut)
	}

	t.Setenv("TALFORGE_PVE_TOKEN", "not-a-token")

	res = runCLI(t, "provision", "-p", path, "--plan")
	if res.code != exitInvalid || !strings.Contains(res.errOut, "$TALFORGE_PVE_TOKEN: API token") {
		t.Errorf("malformed token: exit %d\n%s", res.code, res.errOut)
	}
}

// promptActor is a terminal at which, while the user types the confirmation, someone else
// changes Proxmox: act runs before the first read.
type promptActor struct {
	act  func()
	r    io.Reader
	once sync.Once
}

func (p *promptActor) Read(b []byte) (int, error) {
	p.once.Do(p.act)
	return p.r.Read(b)
}

// TestDestroyRefusesVMChangedAtThePrompt: a VM renamed by someone else while destroy waits for
// the confirmation is left alone and named in the error; the unchanged VM is destroyed.
func TestDestroyRefusesVMChangedAtThePrompt(t *testing.T) {
	srv := pveServer(t)
	path := pveProject(t, srv)

	if res := runCLI(t, "provision", "-p", path); res.code != exitOK {
		t.Fatalf("provision: exit %d\n%s%s", res.code, res.out, res.errOut)
	}

	ids := map[string]int{}
	for _, vm := range srv.VMs() {
		ids[vm.Name()] = vm.ID
	}

	worker := ids["lab-worker-1"]
	in := &promptActor{r: strings.NewReader("lab\n"), act: func() {
		srv.Modify(worker, func(v *pvesim.VM) { v.Config["name"] = "lab-worker-1-prod" })
	}}

	var out, errOut bytes.Buffer

	code := run(t.Context(), []string{"destroy", "-p", path}, streams{in: in, out: &out, errOut: &errOut})
	if code != exitFailure || !strings.Contains(errOut.String(), fmt.Sprintf(`VM %d on pve is no longer the node VM "lab-worker-1" of cluster lab (now named "lab-worker-1-prod"`, worker)) {
		t.Fatalf("destroy: exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}

	if vm, ok := srv.VM(worker); !ok || !vm.Running {
		t.Errorf("the renamed VM was touched (exists %v)", ok)
	}

	if _, ok := srv.VM(ids["lab-cp-1"]); ok {
		t.Errorf("lab-cp-1 was not destroyed")
	}
}
