package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestOutputJSON: --output json gives the same result as the text, as one JSON document on
// stdout (notes stay on stderr), with no secret in it.
func TestOutputJSON(t *testing.T) {
	dir, _ := cliProject(t)
	writeProjectFile(t, "profiles/lab.yaml", cliProfile)

	var gen struct {
		OutDir string `json:"outDir"`
		Files  struct {
			Written, Unchanged, Removed []string
		} `json:"files"`
		BundleCreated bool   `json:"bundleCreated"`
		Schematic     string `json:"schematic"`
	}

	r := talforge(t, "generate", "-p", "profiles/lab.yaml", "-o", "json")
	if r.code != exitOK || json.Unmarshal([]byte(r.out), &gen) != nil {
		t.Fatalf("generate -o json: %v", r)
	}

	if !gen.BundleCreated || len(gen.Schematic) != 64 || !slices.Contains(gen.Files.Written, "nodes/cp-1.yaml.enc") || !slices.Contains(gen.Files.Written, "secrets.sops.yaml") {
		t.Errorf("generate -o json: %+v", gen)
	}

	bundle, err := os.ReadFile(filepath.Join(dir, "clusters", "lab", "secrets.sops.yaml"))
	if err != nil {
		t.Fatal(err)
	}

	if strings.Contains(r.out, "BEGIN") || strings.Contains(r.out, "PRIVATE") || strings.Contains(r.out, string(bundle[:40])) {
		t.Errorf("generate -o json shows secrets:\n%s", r.out)
	}

	text := talforge(t, "validate", "-p", "profiles/lab.yaml")
	js := talforge(t, "validate", "-p", "profiles/lab.yaml", "--output", "json")

	var v struct {
		File          string   `json:"file"`
		Cluster       string   `json:"cluster"`
		ControlPlanes int      `json:"controlPlanes"`
		Workers       int      `json:"workers"`
		Schematic     string   `json:"schematic"`
		Warnings      []string `json:"warnings"`
	}

	if js.code != exitOK || json.Unmarshal([]byte(js.out), &v) != nil {
		t.Fatalf("validate -o json: %v", js)
	}

	if v.Cluster != "lab" || v.ControlPlanes != 1 || v.Workers != 1 || v.Schematic != gen.Schematic {
		t.Errorf("validate -o json: %+v", v)
	}

	if want := "valid — cluster lab, 1 control plane(s), 1 worker(s)"; !strings.Contains(text.out, want) || !strings.Contains(text.out, v.Schematic) {
		t.Errorf("validate text lacks %q or the schematic %s:\n%v", want, v.Schematic, text)
	}

	if bad := talforge(t, "validate", "-p", "profiles/lab.yaml", "-o", "yaml"); bad.code != exitInvalid || !strings.Contains(bad.errOut, "--output must be text or json") {
		t.Errorf("validate -o yaml: %v", bad)
	}
}
