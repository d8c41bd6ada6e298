package machineconfig

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	jsonpatch "github.com/evanphx/json-patch"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/container"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/validation"

	"github.com/talforge/talforge/pkg/parallel"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/redact"
	"github.com/talforge/talforge/pkg/schematic"
)

// metalMode is the runtime mode of an installed machine. Talos' own metal mode is internal to
// Talos, so validation gets an equivalent here.
type metalMode struct{}

func (metalMode) String() string        { return "metal" }
func (metalMode) RequiresInstall() bool { return true }
func (metalMode) InContainer() bool     { return false }

// Generator renders machine configs for one cluster.
type Generator struct {
	cluster  *profile.Cluster
	image    *schematic.Image
	contract *config.VersionContract
	bundle   *secrets.Bundle

	// base configs by role and install disk, generated once.
	base map[baseKey]config.Provider
	// parsed user patch files by path, loaded once.
	patches map[string]namedPatch
	// longhornPatch is the built-in patch for nodes with a Longhorn data disk, the same for
	// every such node (its patch is nil without Longhorn).
	longhornPatch namedPatch
	// encodings are the documents nodes share, encoded once (see encode.go).
	encodings sharedEncodings
}

type baseKey struct {
	role        profile.Role
	installDisk string
}

type namedPatch struct {
	source string
	patch  configpatcher.Patch
	// shareKey names a patch made once and applied to many nodes ("" for a node's own).
	shareKey string
	// reach is the documents the patch can change (encode.go).
	reach reach
}

func newNamedPatch(source, shareKey string, p configpatcher.Patch) namedPatch {
	return namedPatch{source: source, patch: p, shareKey: shareKey, reach: reachOf(p)}
}

// Config is one node's rendered machine config.
type Config struct {
	Node profile.Node
	// Provider is the validated config.
	Provider config.Provider
	// Bytes is the encoded config (no comments), what gets applied to the node.
	Bytes []byte
	// Warnings are machinery's validation warnings.
	Warnings []string
}

// New prepares a generator: it generates the base config for each role with machinery and
// parses every patch file the profile references, once. It stops with ctx's error once ctx is
// done: a profile with thousands of install disks means thousands of base configs.
func New(ctx context.Context, c *profile.Cluster, img *schematic.Image, bundle *secrets.Bundle) (*Generator, error) {
	contract, err := config.ParseContractFromVersion(c.Talos.Version)
	if err != nil {
		return nil, fmt.Errorf("talos.version: %w", err)
	}

	g := &Generator{
		cluster:  c,
		image:    img,
		contract: contract,
		bundle:   bundle,
		base:     map[baseKey]config.Provider{},
		patches:  map[string]namedPatch{},
	}

	for _, n := range c.Nodes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}

		k := baseKey{n.Role, n.InstallDisk}
		if _, ok := g.base[k]; ok {
			continue
		}

		cfg, err := g.generateBase(k)
		if err != nil {
			return nil, fmt.Errorf("generating the %s config with machinery: %w", n.Role, err)
		}

		g.base[k] = cfg
	}

	if err := g.loadUserPatches(ctx); err != nil {
		return nil, err
	}

	if contract.MultidocNetworkConfigSupported() {
		// Drop the generated HostnameConfig (auto: stable) from the base configs once, so that
		// each node's static hostname can replace it.
		reset, err := configpatcher.LoadPatch([]byte("apiVersion: v1alpha1\nkind: HostnameConfig\n$patch: delete\n"))
		if err != nil {
			return nil, fmt.Errorf("hostname reset patch: %w", err)
		}

		for k, base := range g.base {
			if err := ctx.Err(); err != nil {
				return nil, err
			}

			if g.base[k], err = apply(base, []configpatcher.Patch{reset}); err != nil {
				return nil, fmt.Errorf("hostname reset patch: %w", err)
			}
		}
	}

	if c.Longhorn != nil {
		docs, err := g.longhornDocuments()

		var patch configpatcher.Patch
		if err == nil {
			patch, err = strategicPatch(docs...)
		}

		if err != nil {
			return nil, fmt.Errorf("built-in Longhorn patch: %w", err)
		}

		g.longhornPatch = newNamedPatch(builtinSource+" (Longhorn data disk)", "built-in longhorn", patch)
	}

	return g, nil
}

// Contract returns the Talos config version contract the generator renders for.
func (g *Generator) Contract() *config.VersionContract { return g.contract }

func (g *Generator) input(installDisk string) (*generate.Input, error) {
	c := g.cluster

	// The API server certificate must cover the VIP and the endpoint's host; contracts ≤ 1.11
	// add the endpoint's host themselves.
	sans := []string{}
	if !g.contract.PopulateClusterSANsFromEndpoint() {
		if c.Network.VIP != "" {
			sans = append(sans, c.Network.VIP)
		}

		if u, err := url.Parse(c.ControlPlaneEndpoint()); err == nil && u.Hostname() != "" && !slices.Contains(sans, u.Hostname()) {
			sans = append(sans, u.Hostname())
		}
	}

	return generate.NewInput(c.Metadata.Name, c.ControlPlaneEndpoint(), strings.TrimPrefix(c.Talos.Kubernetes, "v"),
		generate.WithVersionContract(g.contract),
		generate.WithSecretsBundle(g.bundle),
		generate.WithEndpointList(c.ControlPlaneIPs()),
		generate.WithInstallDisk(installDisk),
		generate.WithInstallImage(g.image.InstallerImage()),
		generate.WithAllowSchedulingOnControlPlanes(c.Talos.AllowSchedulingOnControlPlanes),
		generate.WithAdditionalSubjectAltNames(sans),
	)
}

func (g *Generator) generateBase(k baseKey) (config.Provider, error) {
	in, err := g.input(k.installDisk)
	if err != nil {
		return nil, err
	}

	t := machine.TypeWorker
	if k.role == profile.RoleControlPlane {
		t = machine.TypeControlPlane
	}

	return in.Config(t)
}

// loadUserPatches reads and parses every patch file once. A patch is read the way the profile
// checked it (profile.Cluster.ReadFile: inside the project root, at most 1 MiB) and its aliases
// are bounded before machinery sees it: configpatcher decodes free-form fields such as
// machine.kubelet.extraConfig with every alias expanded, where a 485-byte patch took 39 s and
// 5.8 GB. The file is checked again here, not only by profile.Load, because it may have changed
// since (or the Cluster was not loaded from a file).
func (g *Generator) loadUserPatches(ctx context.Context) error {
	p := g.cluster.Patches

	files := append(append(append([]string{}, p.All...), p.ControlPlane...), p.Worker...)
	for _, list := range p.Nodes {
		files = append(files, list...)
	}

	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}

		if _, ok := g.patches[f]; ok {
			continue
		}

		data, err := g.cluster.ReadFile(f)
		if err != nil {
			return &PatchError{Patch: f, Err: err}
		}

		if err := profile.CheckYAML(g.cluster.Resolve(f), data); err != nil {
			return &PatchError{Patch: f, Err: fmt.Errorf("not a Talos config patch (strategic merge or JSON6902): %w", err)}
		}

		patch, err := configpatcher.LoadPatch(data)
		if err != nil {
			return &PatchError{Patch: f, Err: fmt.Errorf("not a Talos config patch (strategic merge or JSON6902): %w", err)}
		}

		g.patches[f] = newNamedPatch(f, "file "+f, patch)
	}

	return nil
}

// PatchError says which node and which patch made a config invalid.
type PatchError struct {
	Node  string
	Patch string
	Err   error
}

func (e *PatchError) Error() string {
	var b strings.Builder

	if e.Node != "" {
		fmt.Fprintf(&b, "node %s: ", e.Node)
	}

	if e.Patch != "" {
		fmt.Fprintf(&b, "patch %s: ", e.Patch)
	}

	b.WriteString(e.Err.Error())

	return b.String()
}

func (e *PatchError) Unwrap() error { return e.Err }

// patchesFor lists every patch for a node in application order.
func (g *Generator) patchesFor(n profile.Node) ([]namedPatch, error) {
	builtin, err := g.builtinPatches(n)
	if err != nil {
		return nil, err
	}

	out := builtin

	add := func(files []string) {
		for _, f := range files {
			out = append(out, g.patches[f])
		}
	}

	add(g.cluster.Patches.All)

	if n.Role == profile.RoleControlPlane {
		add(g.cluster.Patches.ControlPlane)
	} else {
		add(g.cluster.Patches.Worker)
	}

	add(g.cluster.Patches.Nodes[n.Name])

	return out, nil
}

// Redacted returns the config for people to read, with every value that is not known to be
// safe replaced by redact.Marker (see package redact: an allow-list, not a list of secret
// fields; its tests prove it hides every field machinery's own redaction hides, so that pass,
// which would double the cost, is not needed here).
func (c *Config) Redacted() ([]byte, error) { return redact.YAML(c.Bytes) }

// Node renders and validates one node's config.
func (g *Generator) Node(n profile.Node) (*Config, error) {
	base, ok := g.base[baseKey{n.Role, n.InstallDisk}]
	if !ok {
		return nil, fmt.Errorf("node %s: not in the profile this generator was made for", n.Name)
	}

	patches, err := g.patchesFor(n)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}

	raw := make([]configpatcher.Patch, len(patches))
	for i, p := range patches {
		raw[i] = p.patch
	}

	cfg, err := apply(base, raw)
	if err == nil {
		var warnings []string

		warnings, err = cfg.ValidateAsClient(metalMode{}, validation.WithLocal())
		if err == nil {
			data, err := g.encode(cfg, baseKey{n.Role, n.InstallDisk}, patches)
			if err != nil {
				return nil, fmt.Errorf("node %s: encoding config: %w", n.Name, err)
			}

			return &Config{Node: n, Provider: cfg, Bytes: data, Warnings: warnings}, nil
		}
	}

	return nil, g.blame(n, base, patches, err)
}

func apply(base config.Provider, patches []configpatcher.Patch) (config.Provider, error) {
	cfg := base

	for start := 0; start < len(patches); {
		// JSON6902 patches on a multi-document config go to its v1alpha1 document, which is
		// what their paths (/machine/..., /cluster/...) address; machinery refuses them there.
		if jp, ok := patches[start].(jsonpatch.Patch); ok && len(cfg.Documents()) > 1 {
			patched, err := applyJSON6902(cfg, jp)
			if err != nil {
				return nil, err
			}

			cfg, start = patched, start+1

			continue
		}

		end := start + 1
		for end < len(patches) {
			if _, ok := patches[end].(jsonpatch.Patch); ok {
				break
			}

			end++
		}

		out, err := configpatcher.Apply(configpatcher.WithConfig(cfg), patches[start:end])
		if err != nil {
			return nil, err
		}

		if cfg, err = out.Config(); err != nil {
			return nil, err
		}

		start = end
	}

	return cfg, nil
}

// applyJSON6902 applies a JSON6902 patch to the v1alpha1 document of a multi-document config.
func applyJSON6902(cfg config.Provider, p jsonpatch.Patch) (config.Provider, error) {
	v1 := cfg.RawV1Alpha1()
	if v1 == nil {
		return nil, errors.New("a JSON6902 patch addresses the v1alpha1 document, and this config has none: write a strategic merge patch")
	}

	raw, err := encoder.NewEncoder(v1, encoder.WithComments(encoder.CommentsDisabled)).Encode()
	if err != nil {
		return nil, err
	}

	patched, err := configpatcher.JSON6902(raw, p)
	if err != nil {
		return nil, err
	}

	single, err := configloader.NewFromBytes(patched, configloader.WithNoValidation())
	if err != nil {
		return nil, fmt.Errorf("after the JSON6902 patch: %w", err)
	}

	docs := single.Documents()

	for _, d := range cfg.Documents() {
		if d.Kind() != v1.Kind() || d.APIVersion() != v1.APIVersion() {
			docs = append(docs, d.Clone())
		}
	}

	return container.New(docs...)
}

// blame re-applies the patches one by one to find the first that fails to apply or makes the
// config invalid. It only runs on the error path.
func (g *Generator) blame(n profile.Node, base config.Provider, patches []namedPatch, failure error) error {
	cfg := base

	for _, p := range patches {
		next, err := apply(cfg, []configpatcher.Patch{p.patch})
		if err != nil {
			return &PatchError{Node: n.Name, Patch: p.source, Err: fmt.Errorf("does not apply: %w", err)}
		}

		if _, err := next.ValidateAsClient(metalMode{}, validation.WithLocal()); err != nil {
			return &PatchError{Node: n.Name, Patch: p.source, Err: fmt.Errorf("makes the machine config invalid: %w", err)}
		}

		cfg = next
	}

	return &PatchError{Node: n.Name, Err: fmt.Errorf("machine config is invalid: %w", failure)}
}

// All renders every node's config, concurrently, in profile order. On failure it reports every
// failing node.
func (g *Generator) All(ctx context.Context) ([]*Config, error) { return g.all(ctx, true) }

// AllEncoded is All for callers that only write or apply the encoded configs: each Config's
// Provider is nil. The decoded configs are a third of a large run's live memory.
func (g *Generator) AllEncoded(ctx context.Context) ([]*Config, error) { return g.all(ctx, false) }

func (g *Generator) all(ctx context.Context, decoded bool) ([]*Config, error) {
	nodes := g.cluster.Nodes
	out := make([]*Config, len(nodes))
	errs := make([]error, len(nodes))

	err := parallel.ForEach(ctx, len(nodes), 0, func(i int) {
		if out[i], errs[i] = g.Node(nodes[i]); out[i] != nil && !decoded {
			out[i].Provider = nil
		}
	})
	if err != nil {
		return nil, err
	}

	if err := joinCapped(errs); err != nil {
		return nil, err
	}

	return out, nil
}

// joinCapped joins the non-nil errors, at most profile.MaxProblems of them: one bad patch
// applied to thousands of nodes is one mistake, not thousands of lines to print.
func joinCapped(errs []error) error {
	var failed []error

	more := 0

	for _, err := range errs {
		switch {
		case err == nil:
		case len(failed) < profile.MaxProblems:
			failed = append(failed, err)
		default:
			more++
		}
	}

	if more > 0 {
		failed = append(failed, fmt.Errorf("... and %d more nodes fail (only the first %d are listed)", more, profile.MaxProblems))
	}

	return errors.Join(failed...)
}

// InstallImage is the installer image a machine config names: Talos ≥ 1.14's
// UnattendedInstallConfig document, else the v1alpha1 machine.install.image.
func InstallImage(cfg config.Config) string {
	if u := cfg.UnattendedInstallConfig(); u != nil && u.InstallerImage() != "" {
		return u.InstallerImage()
	}

	if m := cfg.Machine(); m != nil && m.Install() != nil {
		return m.Install().Image()
	}

	return ""
}
