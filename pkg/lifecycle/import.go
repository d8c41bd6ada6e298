package lifecycle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
	"k8s.io/client-go/kubernetes"

	"github.com/talforge/talforge/pkg/adopt"
	"github.com/talforge/talforge/pkg/atomicfile"
	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/secrets"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// ImportOptions say what `talforge import` adopts.
type ImportOptions struct {
	// Name is the cluster's name in talforge: profiles/<Name>.yaml, clusters/<Name>/, patches/<Name>/.
	Name string
	// Root is the project root (default ".").
	Root string
	// Talos is how to reach the running cluster's nodes.
	Talos adopt.TalosOptions
	// Kubeconfig, when set, is used to describe Longhorn.
	Kubeconfig []byte
	// ProxmoxEndpoint, when set, is the PVE API whose VMs are matched to the nodes; the token
	// comes from $TALFORGE_PVE_TOKEN.
	ProxmoxEndpoint string
	// PVE tunes the Proxmox connection (CA file, TLS verification).
	PVE PVEConnection
}

// ImportReport is what Import found and wrote.
type ImportReport struct {
	Cluster string `json:"cluster"`
	// Profile is the profile written, relative to the project root.
	Profile string `json:"profile"`
	// Written lists the files written outside clusters/<name>/ (profile, patches), then
	// generate's.
	Written []string `json:"written"`
	// Diffs are the nodes whose config talforge renders differently from the live one
	// (redacted); the goal is none.
	Diffs    []adopt.NodeDiff      `json:"diffs"`
	Proxmox  *adopt.ProxmoxImport  `json:"proxmox,omitempty"`
	Longhorn *adopt.LonghornImport `json:"longhorn,omitempty"`
	// Notes say what import could not express, and what to do next.
	Notes []string `json:"notes"`
}

// Import adopts a running cluster built without talforge: it reads every node's live config
// through the Talos API, the Proxmox VMs and Longhorn, writes profiles/<name>.yaml and the patch
// files for what the profile does not model, stores the cluster's own secrets bundle and
// generates clusters/<name>/ from them. Nothing on any server changes. Every node is rendered
// and compared with its live config before anything is written; nothing is written when the
// cluster cannot be read or a file of that name exists already.
func Import(ctx context.Context, opts Options, in ImportOptions) (*ImportReport, error) {
	opts = opts.withDefaults()
	root := in.Root
	if root == "" {
		root = "."
	}
	if !profile.ValidClusterName(in.Name) {
		return nil, &InputError{fmt.Errorf("import: %q is not a valid cluster name (a DNS label: lowercase letters, digits and '-')", in.Name)}
	}
	rep := &ImportReport{Cluster: in.Name, Profile: filepath.ToSlash(filepath.Join("profiles", in.Name+".yaml"))}
	if err := refuseExisting(root, in.Name); err != nil {
		return nil, err
	}
	var err error

	var kube kubernetes.Interface
	if len(in.Kubeconfig) > 0 {
		if kube, err = kubeClient(in.Kubeconfig); err != nil {
			return nil, err
		}
	}
	if len(in.Talos.Nodes) == 0 && kube != nil {
		// Every node the cluster runs, workers included: etcd knows the control planes only.
		if in.Talos.Nodes, err = kubeNodeIPs(ctx, kube); err != nil {
			return nil, err
		}
	}
	ti, err := adopt.ReadTalos(ctx, in.Name, in.Talos)
	if err != nil {
		return nil, err
	}
	rep.Notes = append(rep.Notes, ti.Warnings...)
	c := ti.Profile
	inputs := secretInputs{}
	defer inputs.clear()
	if in.ProxmoxEndpoint != "" {
		if rep.Proxmox, err = importProxmox(ctx, in, c); err != nil {
			return nil, err
		}
		rep.Notes = append(rep.Notes, rep.Proxmox.Warnings...)
		inputs.takeToken(c.Proxmox)
	}
	if len(in.Kubeconfig) > 0 {
		if rep.Longhorn, err = adopt.DiscoverLonghorn(ctx, in.Kubeconfig); err != nil {
			return nil, err
		}
		c.Longhorn = rep.Longhorn.Longhorn
		// The release stays as the person installed it until talforge upgrades it, and the
		// StorageClasses made by hand are taken over by a label, never re-created.
		c.Longhorn.KeepReleaseValues = true
		for i := range c.Longhorn.StorageClasses {
			c.Longhorn.StorageClasses[i].Adopted = true
		}
		keepSystemDiskData(c, rep.Longhorn.DataPath)
		rep.Notes = append(rep.Notes, rep.Longhorn.Notes...)
		if err := inputs.takeBackupCredentials(ctx, kube, c.Longhorn); err != nil {
			return nil, err
		}
		if _, ok := inputs[importedCredentials]; ok {
			rep.Notes = append(rep.Notes, fmt.Sprintf("the S3 keys of Secret %s/%s are kept, SOPS-encrypted, in %s: the first up writes the same keys back",
				longhorn.Namespace, c.Longhorn.Backup.CredentialSecret, importedCredentials))
		}
	}
	// The patches close the gap between what the whole profile renders (with its Proxmox data
	// disks and Longhorn) and what runs.
	if err := ti.Repatch(ctx, c); err != nil {
		return nil, err
	}
	profileYAML, err := marshalProfile(c)
	if err != nil {
		return nil, err
	}
	if rep.Diffs, err = checkImport(ctx, ti, profileYAML, inputs); err != nil {
		return nil, err
	}

	// Everything is read and checked: from here on import writes, in the project only.
	if err := writeImport(root, ti, inputs, profileYAML, rep, opts.Detail); err != nil {
		return rep, err
	}
	profilePath := filepath.Join(root, rep.Profile)
	gen, err := generate.Run(ctx, generate.Options{Profile: profilePath, Renderers: opts.Renderers, Log: opts.Detail, Bundle: ti.Bundle})
	if err != nil {
		return rep, fmt.Errorf("the profile and patches are written; generating clusters/%s/ failed (run `talforge generate` after fixing it): %w", in.Name, err)
	}
	for _, f := range gen.Files.Written {
		rep.Written = append(rep.Written, filepath.ToSlash(filepath.Join("clusters", in.Name, f)))
	}
	if len(in.Kubeconfig) > 0 {
		// The cluster's admin kubeconfig, kept like one bootstrap fetched (encrypted).
		sops, err := sopsfile.ProjectConfig(root)
		if err != nil {
			return rep, err
		}
		written, err := bootstrap.Store(sops, gen.OutDir, in.Kubeconfig, nil)
		if err != nil {
			return rep, err
		}
		for _, f := range relAll(root, written) {
			rep.Written = append(rep.Written, f+" (encrypted)")
		}
	}
	return rep, nil
}

// writeImport writes the secret inputs (encrypted), the patch files and the profile.
func writeImport(root string, ti *adopt.TalosImport, inputs secretInputs, profileYAML []byte, rep *ImportReport, log io.Writer) error {
	if len(inputs) > 0 {
		sops, _, err := generate.SOPS(root, "", log)
		if err != nil {
			return err
		}
		for _, p := range inputs.paths() {
			if _, err := secrets.WriteInput(sops, filepath.Join(root, p), inputs[p]); err != nil {
				return err
			}
			rep.Written = append(rep.Written, p+" (encrypted)")
		}
	}
	for _, p := range slices.Sorted(maps.Keys(ti.Files)) {
		if err := atomicfile.Write(filepath.Join(root, p), ti.Files[p], 0o644); err != nil {
			return err
		}
		rep.Written = append(rep.Written, p)
	}
	if err := atomicfile.Write(filepath.Join(root, rep.Profile), profileYAML, 0o644); err != nil {
		return err
	}
	rep.Written = append(rep.Written, rep.Profile)
	return nil
}

// refuseExisting refuses to import over a profile, patches or an output directory of that name:
// import never replaces what a project holds.
func refuseExisting(root, name string) error {
	for _, p := range []string{filepath.Join("profiles", name+".yaml"), filepath.Join("patches", name), filepath.Join("clusters", name)} {
		_, err := os.Stat(filepath.Join(root, p))
		switch {
		case err == nil:
			return &InputError{fmt.Errorf("import: %s exists already: import never replaces a project's files; choose another name or move it away", p)}
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
	}
	return nil
}

// importProxmox matches the nodes to the PVE VMs and records them in the profile.
func importProxmox(ctx context.Context, in ImportOptions, c *profile.Cluster) (*adopt.ProxmoxImport, error) {
	c.Proxmox = &profile.Proxmox{Endpoint: in.ProxmoxEndpoint}
	api, err := in.PVE.Connect(ctx, c)
	if err != nil {
		return nil, err
	}
	var nodes []adopt.ProxmoxNode
	for _, n := range c.Nodes {
		nodes = append(nodes, adopt.ProxmoxNode{Name: n.Name, IP: n.IP, MAC: n.MAC})
	}
	pi, err := adopt.DiscoverProxmox(ctx, api, nodes)
	if err != nil {
		return nil, err
	}
	pi.ApplyTo(c.Proxmox, c.Nodes)
	return pi, nil
}

// marshalProfile writes the profile as a person would: two-space YAML, only what is set.
func marshalProfile(c *profile.Cluster) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# Written by talforge import from the running cluster; edit it like any profile.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encoding the profile: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// checkImport loads the profile from a scratch project (the profile, the patch files and
// placeholders for the secret inputs: only their presence is checked on load) and compares what
// talforge renders with every node's live config.
func checkImport(ctx context.Context, ti *adopt.TalosImport, profileYAML []byte, inputs secretInputs) ([]adopt.NodeDiff, error) {
	dir, err := os.MkdirTemp("", "talforge-import-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	files := maps.Clone(ti.Files)
	for p := range inputs {
		files[p] = []byte("placeholder: not a secret\n")
	}
	files[filepath.ToSlash(filepath.Join("profiles", ti.Profile.Metadata.Name+".yaml"))] = profileYAML
	for p, content := range files {
		if err := atomicfile.Write(filepath.Join(dir, p), content, 0o644); err != nil {
			return nil, err
		}
	}
	c, err := profile.LoadContext(ctx, filepath.Join(dir, "profiles", ti.Profile.Metadata.Name+".yaml"))
	if err != nil {
		return nil, fmt.Errorf("the imported profile does not load (a talforge bug; please report it): %w", err)
	}
	return ti.Check(ctx, c)
}

// keepSystemDiskData records a Longhorn that keeps its replicas on the system disks (its data
// path is not talforge's data-disk volume) as it is: no node gets a Longhorn data disk, which
// would also add talforge's data-disk documents to every node's config.
func keepSystemDiskData(c *profile.Cluster, dataPath string) {
	dataPath = strings.TrimSuffix(dataPath, "/")
	if dataPath == "" || dataPath == profile.LonghornDataPath || c.Longhorn == nil {
		return
	}
	c.Longhorn.SystemDiskDataPath = dataPath
	if c.Proxmox != nil {
		c.Proxmox.Defaults.LonghornDisk = ""
	}
	for i := range c.Nodes {
		c.Nodes[i].LonghornDisk = ""
		if a := c.Nodes[i].Adopted; a != nil {
			a.LonghornDisk = ""
		}
	}
}
