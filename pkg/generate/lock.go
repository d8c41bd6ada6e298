package generate

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/talforge/talforge/pkg/machineconfig"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/schematic"
	"github.com/talforge/talforge/pkg/version"
)

// Lock is clusters/<name>/talforge.lock.yaml: what produced the output, so that a reviewer
// sees in Git which tool, profile and images a change came from, and the digest of every file
// as written, so that the next run can tell an unchanged file without decrypting it.
type Lock struct {
	LockHead  `yaml:",inline"`
	LockFiles `yaml:",inline"`

	// verified holds the files openOutput's check found on disk exactly as Files records them, so
	// that the checks after it do not read and hash every file a second time (the run lock
	// keeps them from changing meanwhile).
	verified map[string]bool
	// digests indexes Nodes' config digests by node name (NewLock and readLockData build it).
	digests map[string]string
}

// LockHead is the lockfile up to its encryption rule: what produced the output and each
// node's config digest, known as soon as the configs are rendered. It is most of the
// lockfile's bytes, so a run encodes it while it writes the files; the rest (LockFiles) needs
// their digests. Encoded one after the other they are the Lock's YAML (TestLockMarshalParts).
type LockHead struct {
	Tool          string        `yaml:"tool"`
	Profile       string        `yaml:"profile"`
	ProfileDigest string        `yaml:"profileDigest"`
	Talos         LockTalos     `yaml:"talos"`
	Schematic     LockSchematic `yaml:"schematic"`
	Longhorn      *LockLonghorn `yaml:"longhorn,omitempty"`
	Nodes         []LockNode    `yaml:"nodes"`
}

// LockFiles is the lockfile from its encryption rule on: what the run wrote.
type LockFiles struct {
	// Encryption fingerprints the SOPS rule (recipients, what is encrypted) of the node files.
	Encryption string `yaml:"encryption"`
	// Files maps each output file (but this one) to the sha256 of its bytes as written.
	Files map[string]string `yaml:"files"`
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

// NewLock builds the lockfile of c, whose ProfileDigest is profileDigest (Files and
// Encryption are filled in as files are prepared).
func NewLock(c *profile.Cluster, profileDigest string, img *schematic.Image, configs []*machineconfig.Config, gen *machineconfig.Generator) *Lock {
	rel, err := filepath.Rel(c.Root(), c.File())
	if err != nil {
		rel = c.File()
	}

	l := &Lock{
		LockHead: LockHead{
			Tool:          "talforge " + version.Version,
			Profile:       filepath.ToSlash(rel),
			ProfileDigest: profileDigest,
			Talos:         LockTalos{Version: c.Talos.Version, Contract: gen.Contract().String(), Kubernetes: c.Talos.Kubernetes},
			Schematic: LockSchematic{
				ID:         img.ID,
				Extensions: img.Extensions(),
				KernelArgs: c.Talos.KernelArgs,
				Installer:  img.InstallerImage(),
				ISO:        img.ISOURL(),
			},
		},
		LockFiles: LockFiles{Files: map[string]string{}},
	}

	if c.Longhorn != nil {
		l.Longhorn = &LockLonghorn{Chart: c.Longhorn.Version, Repo: c.Longhorn.RepoURL}
	}

	for _, cfg := range configs {
		l.Nodes = append(l.Nodes, LockNode{
			Name: cfg.Node.Name, Role: string(cfg.Node.Role), IP: cfg.Node.IP, MAC: cfg.Node.MAC,
			ConfigDigest: digest(cfg.Bytes),
		})
	}

	l.indexDigests()

	return l
}

// lockComment starts every lockfile.
const lockComment = "# Written by talforge generate; do not edit.\n"

// Marshal encodes the lockfile.
func (l *Lock) Marshal() ([]byte, error) {
	head, err := l.marshalHead()
	if err != nil {
		return nil, err
	}

	return l.marshalWithHead(head)
}

// marshalHead encodes the lockfile up to its encryption rule: the LockHead, which NewLock
// sets and nothing changes afterwards.
func (l *Lock) marshalHead() ([]byte, error) { return yaml.Marshal(l.LockHead) }

// marshalWithHead encodes the lockfile, whose marshalHead is head.
func (l *Lock) marshalWithHead(head []byte) ([]byte, error) {
	tail, err := yaml.Marshal(l.LockFiles)
	if err != nil {
		return nil, err
	}

	data := make([]byte, 0, len(lockComment)+len(head)+len(tail))

	return append(append(append(data, lockComment...), head...), tail...), nil
}

// readLock reads a previous lockfile; a missing or unreadable one is simply no help.
func readLock(path string) *Lock {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}

	return readLockData(data)
}

// readLockData decodes a lockfile; nil when it is not one.
func readLockData(data []byte) *Lock {
	var l Lock
	if yaml.Unmarshal(data, &l) != nil {
		return nil
	}

	l.indexDigests()

	return &l
}

// indexDigests indexes the nodes' config digests: a run looks each node up several times.
func (l *Lock) indexDigests() {
	l.digests = make(map[string]string, len(l.Nodes))
	for _, n := range l.Nodes {
		if _, dup := l.digests[n.Name]; !dup { // the first entry wins, as a scan of Nodes would find
			l.digests[n.Name] = n.ConfigDigest
		}
	}
}

func (l *Lock) nodeDigest(name string) string {
	if l == nil {
		return ""
	}

	return l.digests[name]
}

// fileCurrent reports whether a file on disk is exactly what this lock recorded writing.
func (l *Lock) fileCurrent(out, path string) bool {
	if l == nil {
		return false
	}

	if l.verified != nil {
		return l.verified[path]
	}

	want, ok := l.Files[path]

	return ok && fileDigest(filepath.Join(out, filepath.FromSlash(path))) == want
}

// current reports whether a node's files on disk are exactly what this lock recorded writing
// for the same plaintext config under the same encryption rule.
func (l *Lock) current(out, node, configDigest, encryption string, paths ...string) bool {
	if l == nil || configDigest == "" || l.nodeDigest(node) != configDigest || l.Encryption != encryption {
		return false
	}

	for _, p := range paths {
		if !l.fileCurrent(out, p) {
			return false
		}
	}

	return true
}

// ProfileDigest hashes the profile file and every patch file it references (by path and
// content): the inputs that determine the output besides the secrets bundle.
func ProfileDigest(c *profile.Cluster) (string, error) {
	h := newHasher()

	if err := h.addFile("profile", c.File()); err != nil {
		return "", err
	}

	p := c.Patches
	files := append(append(append([]string{}, p.All...), p.ControlPlane...), p.Worker...)

	for _, list := range p.Nodes {
		files = append(files, list...)
	}

	slices.Sort(files)

	for _, f := range slices.Compact(files) {
		if err := h.addFile(f, c.Resolve(f)); err != nil {
			return "", err
		}
	}

	return h.sum(), nil
}

type hasher struct{ data []byte }

func newHasher() *hasher { return &hasher{} }

func (h *hasher) addFile(name, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}

	h.data = fmt.Appendf(h.data, "%s\x00%d\x00", filepath.ToSlash(name), len(data))
	h.data = append(h.data, data...)

	return nil
}

func (h *hasher) sum() string { return digest(h.data) }
