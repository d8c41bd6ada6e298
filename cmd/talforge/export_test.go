package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cliPVEProfile is cliProfile with Proxmox: the worker pinned to a second PVE host.
const cliPVEProfile = `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
talos: {version: v1.14.1, allowSchedulingOnControlPlanes: true}
network: {cidr: 192.168.1.0/24, gateway: 192.168.1.1, nameservers: [192.168.1.1]}
proxmox: {endpoint: "https://pve.lan:8006", node: pve1, storage: local-lvm}
nodes:
  - {name: cp-1, role: controlplane, ip: 192.168.1.51}
  - {name: w-1, role: worker, ip: 192.168.1.61, pveNode: pve2}
`

// TestExportCAPI: without --allow-lossy a profile the objects cannot say whole is refused
// field by field and nothing is written; with it the objects are written beside the bundle's
// Secret, which is SOPS-encrypted (the standard sops CLI opens it) while the objects file holds
// no secret of the bundle.
func TestExportCAPI(t *testing.T) {
	bin := sopsCLI(t)
	dir, _ := cliProject(t)
	writeProjectFile(t, "profiles/lab.yaml", cliPVEProfile)

	if r := talforge(t, "generate", "-p", "profiles/lab.yaml"); r.code != exitOK {
		t.Fatalf("generate: %v", r)
	}

	out := filepath.Join(dir, "clusters", "lab", "capi")

	r := talforge(t, "export", "capi", "-p", "profiles/lab.yaml")
	if r.code != exitFailure || !strings.Contains(r.errOut, "nodes[1].pveNode (w-1): machines are spread over allowedNodes [pve1 pve2]") || !strings.Contains(r.errOut, "--allow-lossy") {
		t.Fatalf("lossy export: %v", r)
	}

	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a refused export wrote %s (%v)", out, err)
	}

	r = talforge(t, "export", "capi", "-p", "profiles/lab.yaml", "--allow-lossy", "--namespace", "fleet")
	if r.code != exitOK || !strings.Contains(r.out, "! nodes[1].pveNode (w-1)") || !strings.Contains(r.out, "wrote     clusters/lab/capi/cluster-api.yaml") {
		t.Fatalf("export --allow-lossy: %v", r)
	}

	objects, err := os.ReadFile(filepath.Join(out, "cluster-api.yaml"))
	if err != nil {
		t.Fatal(err)
	}

	for _, want := range []string{"kind: TalosControlPlane", "kind: MachineDeployment", "namespace: fleet", "allowedNodes:"} {
		if !strings.Contains(string(objects), want) {
			t.Errorf("cluster-api.yaml lacks %q", want)
		}
	}

	cmd := exec.Command(bin, "-d", filepath.Join("clusters", "lab", "capi", "talos-secrets.sops.yaml"))
	cmd.Dir = dir

	var stderr bytes.Buffer

	cmd.Stderr = &stderr

	secret, err := cmd.Output()
	if err != nil {
		t.Fatalf("sops -d: %v\n%s", err, stderr.String())
	}

	if !strings.Contains(string(secret), "name: lab-talos") || !strings.Contains(string(secret), "k8sserviceaccount") {
		t.Fatalf("the decrypted Secret:\n%.300s", secret)
	}

	// The bundle's secrets are only in the encrypted file.
	for _, line := range strings.Split(string(secret), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "secret: "); ok && len(v) > 16 && strings.Contains(string(objects), v) {
			t.Errorf("cluster-api.yaml holds a bundle secret in clear")
		}
	}

	// Again, nothing changed: the same bytes.
	if r := talforge(t, "export", "capi", "-p", "profiles/lab.yaml", "--allow-lossy", "--namespace", "fleet"); r.code != exitOK {
		t.Fatalf("second export: %v", r)
	}

	again, err := os.ReadFile(filepath.Join(out, "cluster-api.yaml"))
	if err != nil || !bytes.Equal(again, objects) {
		t.Errorf("a second export changed cluster-api.yaml (%v)", err)
	}
}

// TestExportCAPIRefusesASecretInAPatch: a patch carrying a registry password would put it into
// the objects in clear: the export refuses and writes nothing.
func TestExportCAPIRefusesASecretInAPatch(t *testing.T) {
	dir, _ := cliProject(t)
	writeProjectFile(t, "patches/registry.yaml", "machine:\n  registries:\n    config:\n      registry.lan:\n        auth:\n          username: ci\n          password: hunter2-registry-secret\n")
	writeProjectFile(t, "profiles/lab.yaml", strings.Replace(cliPVEProfile, "nodes:\n", "patches: {all: [patches/registry.yaml]}\nnodes:\n", 1))

	if r := talforge(t, "generate", "-p", "profiles/lab.yaml"); r.code != exitOK {
		t.Fatalf("generate: %v", r)
	}

	r := talforge(t, "export", "capi", "-p", "profiles/lab.yaml", "--allow-lossy")
	if r.code != exitFailure || !strings.Contains(r.errOut, "refusing to write plaintext secrets") || strings.Contains(r.out+r.errOut, "hunter2") {
		t.Fatalf("export with a password in a patch: %v", r)
	}

	if _, err := os.Stat(filepath.Join(dir, "clusters", "lab", "capi")); !os.IsNotExist(err) {
		t.Errorf("the refused export wrote clusters/lab/capi (%v)", err)
	}
}
