package generate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/config"
	talossecrets "github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"gopkg.in/yaml.v3"

	"github.com/talforge/talforge/pkg/gitops"
	"github.com/talforge/talforge/pkg/machineconfig"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/schematic"
	"github.com/talforge/talforge/pkg/secrets"
	"github.com/talforge/talforge/pkg/sopsfile"
	"github.com/talforge/talforge/pkg/version"
)

// Output file names inside clusters/<name>/.
const (
	LockFile        = "talforge.lock.yaml"
	TalosconfigFile = "talosconfig.sops.yaml"
	SchematicFile   = "schematic.yaml"
	NodesDir        = "nodes"
)

// Renderer adds files derived from the profile (e.g. Longhorn values). Renderers must be
// deterministic and must not return secrets.
type Renderer func(c *profile.Cluster) ([]gitops.File, error)

// Options configure a run.
type Options struct {
	// Profile is the profile path.
	Profile string
	// OutDir overrides clusters/<name> under the project root.
	OutDir string
	// Renderers add files to the output.
	Renderers []Renderer
	// Commit commits the output directory with the git CLI when something changed.
	Commit bool
	// Log receives progress notes (identity created, files written); nil discards them.
	Log io.Writer
}

// Result is what a run produced.
type Result struct {
	Cluster *profile.Cluster
	OutDir  string
	Image   *schematic.Image
	Configs []*machineconfig.Config
	Lock    *Lock
	Files   *gitops.Result
	// BundleCreated is true when this run created the secrets bundle.
	BundleCreated bool
	// Identity is the age identity used for new encryption.
	Identity *sopsfile.Identity
	// Committed is true when --commit made a commit.
	Committed bool
}

// Run generates the cluster's output directory.
func Run(ctx context.Context, opts Options) (*Result, error) {
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}

	c, err := profile.Load(opts.Profile)
	if err != nil {
		return nil, err
	}

	out := opts.OutDir
	if out == "" {
		out = c.OutputDir()
	}

	res := &Result{Cluster: c, OutDir: out}

	contract, err := config.ParseContractFromVersion(c.Talos.Version)
	if err != nil {
		return nil, fmt.Errorf("talos.version: %w", err)
	}

	bundlePath := filepath.Join(out, secrets.FileName)

	haveBundle, err := secrets.Exists(bundlePath)
	if err != nil {
		return nil, err
	}

	var bundle *talossecrets.Bundle
	if haveBundle {
		if bundle, err = secrets.Load(bundlePath); err != nil {
			return nil, err
		}
	} else if bundle, err = secrets.New(contract); err != nil {
		return nil, err
	}

	if res.Image, err = schematic.ForCluster(c); err != nil {
		return nil, err
	}

	gen, err := machineconfig.New(c, res.Image, bundle)
	if err != nil {
		return nil, err
	}

	if res.Configs, err = gen.All(ctx); err != nil {
		return nil, err
	}

	files, err := render(c, gen, res, out, opts.Renderers)
	if err != nil {
		return nil, err
	}

	// Everything rendered: from here on talforge writes.
	if res.Identity, err = EnsureSOPS(c.Root(), logw); err != nil {
		return nil, err
	}

	var bundleEnc []byte
	if !haveBundle {
		if bundleEnc, err = encryptBundle(bundlePath, bundle); err != nil {
			return nil, err
		}
	}

	w := &gitops.Writer{Dir: out}

	prepared, err := w.Prepare(ctx, files)
	if err != nil {
		return nil, err
	}

	if bundleEnc != nil {
		if err := gitops.CheckLeaks([]gitops.File{{Path: secrets.FileName, Data: bundleEnc, Secret: true}}); err != nil {
			return nil, err
		}

		if err := secrets.Create(bundlePath, bundleEnc); err != nil {
			return nil, err
		}

		res.BundleCreated = true

		fmt.Fprintf(logw, "created the Talos secrets bundle %s (encrypted; keep it: the cluster cannot be rebuilt without it)\n", bundlePath)
	}

	if res.Files, err = w.Write(prepared, NodesDir); err != nil {
		return nil, err
	}

	if res.BundleCreated {
		res.Files.Written = append([]string{secrets.FileName}, res.Files.Written...)
	} else {
		res.Files.Unchanged = append([]string{secrets.FileName}, res.Files.Unchanged...)
	}

	if opts.Commit {
		msg := commitMessage(res)
		if res.Committed, err = gitops.Commit(ctx, out, msg); err != nil {
			return res, err
		}
	}

	return res, nil
}

func render(c *profile.Cluster, gen *machineconfig.Generator, res *Result, out string, renderers []Renderer) ([]gitops.File, error) {
	var files []gitops.File

	for _, cfg := range res.Configs {
		files = append(files, gitops.File{Path: NodesDir + "/" + cfg.Node.Name + ".yaml", Data: cfg.Bytes, Secret: true})
	}

	var existing []byte

	if _, err := os.Stat(filepath.Join(out, TalosconfigFile)); err == nil {
		old, err := sopsfile.DecryptFile(filepath.Join(out, TalosconfigFile))
		if err != nil {
			return nil, err
		}

		existing = old
	}

	talosconfig, err := gen.Talosconfig(existing)
	if err != nil {
		return nil, err
	}

	files = append(files, gitops.File{Path: TalosconfigFile, Data: talosconfig, Secret: true})

	sch, err := res.Image.YAML()
	if err != nil {
		return nil, err
	}

	files = append(files, gitops.File{Path: SchematicFile, Data: append([]byte("# Image Factory schematic; its sha256 is the schematic ID.\n"), sch...)})

	for _, r := range renderers {
		extra, err := r(c)
		if err != nil {
			return nil, err
		}

		files = append(files, extra...)
	}

	files = append(files, gitops.File{Path: ".gitignore", Data: []byte(gitops.GitIgnore)})

	lock, err := NewLock(c, res.Image, res.Configs, gen)
	if err != nil {
		return nil, err
	}

	res.Lock = lock

	lockData, err := lock.Marshal()
	if err != nil {
		return nil, err
	}

	files = append(files, gitops.File{Path: LockFile, Data: lockData})

	slices.SortFunc(files, func(a, b gitops.File) int { return strings.Compare(a.Path, b.Path) })

	return files, nil
}

func encryptBundle(path string, b *talossecrets.Bundle) ([]byte, error) {
	plain, err := secrets.Marshal(b)
	if err != nil {
		return nil, err
	}

	rule, err := sopsfile.RuleFor(path)
	if err != nil {
		return nil, err
	}

	return rule.Encrypt(path, plain)
}

// EnsureSOPS makes sure the project can encrypt: it creates an age identity when there is none
// and writes .sops.yaml creation rules for it when the project has none.
func EnsureSOPS(root string, log io.Writer) (*sopsfile.Identity, error) {
	id, err := sopsfile.EnsureIdentity()
	if err != nil {
		return nil, fmt.Errorf("age identity: %w", err)
	}

	if id.Created {
		fmt.Fprintf(log, "created age identity %s\n  public key: %s\n  back it up: without it nothing talforge encrypted can be decrypted\n", id.Path, id.Recipient)
	}

	wrote, err := sopsfile.WriteCreationRules(root, []string{id.Recipient})
	if err != nil {
		return nil, err
	}

	if wrote {
		fmt.Fprintf(log, "wrote %s (SOPS creation rules for %s)\n", filepath.Join(root, sopsfile.ConfigFileName), id.Recipient)
	}

	return id, nil
}

func commitMessage(res *Result) string {
	var b strings.Builder

	fmt.Fprintf(&b, "talforge: generate %s (profile %s)\n\n", res.Cluster.Metadata.Name, res.Lock.ProfileDigest)

	for _, f := range res.Files.Written {
		fmt.Fprintf(&b, "update %s\n", f)
	}

	for _, f := range res.Files.Removed {
		fmt.Fprintf(&b, "remove %s\n", f)
	}

	return b.String()
}

// Lock is clusters/<name>/talforge.lock.yaml: what produced the output, so that a reviewer
// sees in Git which tool, profile and images a change came from.
type Lock struct {
	Tool          string        `yaml:"tool"`
	Profile       string        `yaml:"profile"`
	ProfileDigest string        `yaml:"profileDigest"`
	Talos         LockTalos     `yaml:"talos"`
	Schematic     LockSchematic `yaml:"schematic"`
	Longhorn      *LockLonghorn `yaml:"longhorn,omitempty"`
	Nodes         []LockNode    `yaml:"nodes"`
}

// LockTalos records versions.
type LockTalos struct {
	Version    string `yaml:"version"`
	Contract   string `yaml:"contract"`
	Kubernetes string `yaml:"kubernetes"`
}

// LockSchematic records the image.
type LockSchematic struct {
	ID         string   `yaml:"id"`
	Extensions []string `yaml:"extensions,omitempty"`
	KernelArgs []string `yaml:"kernelArgs,omitempty"`
	Installer  string   `yaml:"installer"`
	ISO        string   `yaml:"iso"`
}

// LockLonghorn records the chart.
type LockLonghorn struct {
	Chart string `yaml:"chart"`
	Repo  string `yaml:"repo"`
}

// LockNode records a node's identity and the digest of its plaintext config.
type LockNode struct {
	Name         string `yaml:"name"`
	Role         string `yaml:"role"`
	IP           string `yaml:"ip"`
	MAC          string `yaml:"mac"`
	ConfigDigest string `yaml:"configDigest"`
}

// NewLock builds the lockfile.
func NewLock(c *profile.Cluster, img *schematic.Image, configs []*machineconfig.Config, gen *machineconfig.Generator) (*Lock, error) {
	digest, err := ProfileDigest(c)
	if err != nil {
		return nil, err
	}

	rel, err := filepath.Rel(c.Root(), c.File())
	if err != nil {
		rel = c.File()
	}

	l := &Lock{
		Tool:          "talforge " + version.Version,
		Profile:       filepath.ToSlash(rel),
		ProfileDigest: digest,
		Talos:         LockTalos{Version: c.Talos.Version, Contract: gen.Contract().String(), Kubernetes: c.Talos.Kubernetes},
		Schematic: LockSchematic{
			ID:         img.ID,
			Extensions: img.Extensions(),
			KernelArgs: c.Talos.KernelArgs,
			Installer:  img.InstallerImage(),
			ISO:        img.ISOURL(),
		},
	}

	if c.Longhorn != nil {
		l.Longhorn = &LockLonghorn{Chart: c.Longhorn.Version, Repo: c.Longhorn.RepoURL}
	}

	for _, cfg := range configs {
		sum := sha256.Sum256(cfg.Bytes)
		l.Nodes = append(l.Nodes, LockNode{
			Name: cfg.Node.Name, Role: string(cfg.Node.Role), IP: cfg.Node.IP, MAC: cfg.Node.MAC,
			ConfigDigest: "sha256:" + hex.EncodeToString(sum[:]),
		})
	}

	return l, nil
}

// Marshal encodes the lockfile.
func (l *Lock) Marshal() ([]byte, error) {
	data, err := yaml.Marshal(l)
	if err != nil {
		return nil, err
	}

	return append([]byte("# Written by talforge generate; do not edit.\n"), data...), nil
}

// ProfileDigest hashes the profile file and every patch file it references (by path and
// content), the inputs that determine the output besides the secrets bundle.
func ProfileDigest(c *profile.Cluster) (string, error) {
	h := sha256.New()

	add := func(name, path string) error {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}

		fmt.Fprintf(h, "%s\x00%d\x00", filepath.ToSlash(name), len(data))
		h.Write(data)

		return nil
	}

	if err := add("profile", c.File()); err != nil {
		return "", err
	}

	p := c.Patches
	files := append(append(append([]string{}, p.All...), p.ControlPlane...), p.Worker...)

	for _, list := range p.Nodes {
		files = append(files, list...)
	}

	slices.Sort(files)

	for _, f := range slices.Compact(files) {
		if err := add(f, c.Resolve(f)); err != nil {
			return "", err
		}
	}

	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
