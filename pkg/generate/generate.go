package generate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/config"
	talossecrets "github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"

	"github.com/talforge/talforge/pkg/gitops"
	"github.com/talforge/talforge/pkg/machineconfig"
	"github.com/talforge/talforge/pkg/parallel"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/redact"
	"github.com/talforge/talforge/pkg/schematic"
	"github.com/talforge/talforge/pkg/secrets"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// Output file names inside clusters/<name>/.
const (
	LockFile        = "talforge.lock.yaml"
	TalosconfigFile = "talosconfig.sops.yaml"
	SchematicFile   = "schematic.yaml"
	NodesDir        = "nodes"
)

// NodeConfigFile is the path of a node's machine config inside the output directory. It is
// SOPS-encrypted whole (binary format), so `sops -d` returns the exact config bytes.
func NodeConfigFile(node string) string { return NodesDir + "/" + node + ".yaml.enc" }

// RedactedFile holds every node's machine config with each secret replaced by
// gitops.RedactedMarker, in plaintext: what reviewers diff. One file for all nodes, because
// creating files is the slowest part of writing output on common disks.
const RedactedFile = "nodes.redacted.yaml"

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
	// Log receives progress notes (identity created, bundle created); nil discards them.
	Log io.Writer
	// SOPSConfig is the .sops.yaml whose creation rules choose the recipients (--sops-config);
	// "" means the project's own, <root>/.sops.yaml. Never one found above OutDir.
	SOPSConfig string
	// Bundle is a running cluster's secrets (talforge import) to store as the cluster's
	// bundle instead of creating one. With a bundle already stored, the run is refused: one is
	// never replaced.
	Bundle *talossecrets.Bundle
	// RenewTalosconfig mints a new talosconfig client certificate from the bundle even when
	// the stored one is still valid for more than 30 days (`talforge talosconfig --renew`).
	RenewTalosconfig bool
	// Render renders every node even when the run can prove the output current without it
	// (see Result.Rendered): for callers that go on to apply the configs.
	Render bool
}

// Result is what a run produced.
type Result struct {
	Cluster *profile.Cluster `json:"-"`
	OutDir  string           `json:"outDir"`
	Image   *schematic.Image `json:"-"`
	// Configs hold secrets: never in a result printed for scripts. They carry only their
	// encoding (Provider is nil), which is what is written and applied.
	Configs []*machineconfig.Config `json:"-"`
	// Rendered is what was rendered: what RenderStored gives after the run, without the
	// decoded configs (see Configs). It is nil, and so is Configs, when the run proved the
	// output current without rendering: its inputs are those a run of the same executable
	// recorded, and every file is as that run wrote it (Options.Render renders anyway).
	Rendered *Rendered      `json:"-"`
	Lock     *Lock          `json:"-"`
	Files    *gitops.Result `json:"files"`
	// BundleCreated is true when this run created the secrets bundle.
	BundleCreated bool `json:"bundleCreated"`
	// Identity is the age identity used for new encryption.
	Identity *sopsfile.Identity `json:"-"`
	// Committed is true when --commit made a commit.
	Committed bool `json:"committed"`
	// Schematic is the Image Factory schematic ID of the cluster's image.
	Schematic string `json:"schematic"`
}

// Run generates the cluster's output directory.
func Run(ctx context.Context, opts Options) (*Result, error) {
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}

	c, err := profile.LoadContext(ctx, opts.Profile)
	if err != nil {
		return nil, err
	}

	if err := secrets.CheckInputs(c); err != nil {
		return nil, err
	}

	out := opts.OutDir
	if out == "" {
		out = c.OutputDir()
	}

	// One run at a time in out; what a killed run left is completed or cleared first.
	ctx, runLock, pending, err := openOutput(ctx, out, logw)
	if err != nil {
		return nil, err
	}

	defer runLock.Release()
	defer pending.stop()

	res := &Result{Cluster: c, OutDir: out}

	if opts.Commit {
		if err := gitops.CheckRepository(ctx, out); err != nil {
			return nil, err
		}
	}

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
	switch {
	case haveBundle && opts.Bundle != nil:
		return nil, fmt.Errorf("%s: %w", bundlePath, secrets.ErrExists)
	case haveBundle:
		if bundle, err = secrets.Load(bundlePath); err != nil {
			return nil, err
		}
	case opts.Bundle != nil:
		bundle = opts.Bundle
	default:
		if bundle, err = secrets.New(contract); err != nil {
			return nil, err
		}
	}

	talosconfig, err := storedTalosconfig(out)
	if err != nil {
		return nil, err
	}

	if opts.RenewTalosconfig {
		talosconfig = nil
	}

	img, err := schematic.ForCluster(c)
	if err != nil {
		return nil, err
	}

	profileDigest, err := ProfileDigest(c)
	if err != nil {
		return nil, err
	}

	// Decrypting the bundle and the talosconfig above is not skipped: a run on a machine
	// whose key cannot open them fails, whether or not anything changed.
	if haveBundle && opts.Bundle == nil && !opts.RenewTalosconfig && !opts.Render {
		done, err := reuseOutput(ctx, opts, res, img, profileDigest, pending, logw)
		if err != nil {
			return nil, err
		}

		if done {
			return res, nil
		}
	}

	rendered, err := render(ctx, c, img, bundle, talosconfig, false)
	if err != nil {
		return nil, err
	}

	// Before anything in out is written (rekeyOutput is first): the check of the files the
	// old lockfile lists must not race with a write.
	old := pending.get()

	res.Rendered, res.Image, res.Configs, res.Schematic = rendered, rendered.Image, rendered.Configs, rendered.Image.ID

	lock := NewLock(c, profileDigest, res.Image, res.Configs, rendered.Generator)
	res.Lock = lock

	// Most of the lockfile is known now: it is encoded while the files are encrypted and written.
	lockHead := make(chan marshalled, 1)
	go func() {
		data, err := lock.marshalHead()
		lockHead <- marshalled{data, err}
	}()

	files, err := sharedFiles(c, rendered.Image, rendered.Talosconfig, opts.Renderers)
	if err != nil {
		return nil, err
	}

	// Everything that can fail on bad input has run: from here on talforge writes.
	sops, id, err := SOPS(c.Root(), opts.SOPSConfig, logw)
	if err != nil {
		return nil, err
	}

	res.Identity = id

	// Before anything else is written or recorded: the bundle's bytes on disk are final here.
	rekeyed, err := rekeyOutput(sops, out)
	if err != nil {
		return nil, err
	}

	rule, err := sops.RuleFor(filepath.Join(out, NodeConfigFile("x")))
	if err != nil {
		return nil, err
	}

	lock.Encryption = rule.Fingerprint()

	nodeFiles, keep, needView, err := renderNodes(ctx, out, res.Configs, old, lock)
	if err != nil {
		return nil, err
	}

	files = append(files, nodeFiles...)

	// The review view is redacted while the node files are encrypted and staged: staging
	// creates files one at a time, and that wait is the view's time.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	w := &gitops.Writer{Dir: out, SOPS: sops}

	type viewResult struct {
		file *gitops.Prepared
		err  error
	}

	view := make(chan viewResult, 1)
	if needView {
		go func() {
			data, err := redactedView(ctx, res.Configs)
			if err != nil {
				view <- viewResult{err: err}

				return
			}

			// Leak-checking megabytes of YAML takes a while too: it is done here as well.
			f, err := w.Prepare(gitops.File{Path: RedactedFile, Data: data, Redacted: true})
			view <- viewResult{f, err}
		}()
	}

	var bundleEnc []byte
	if !haveBundle {
		if bundleEnc, err = encryptBundle(sops, bundlePath, bundle); err != nil {
			return nil, err
		}

		if err := gitops.CheckLeaks([]gitops.File{{Path: secrets.FileName, Data: bundleEnc, Secret: true}}); err != nil {
			return nil, err
		}
	}

	staged, err := w.Stage(ctx, files, keep)
	if err != nil {
		return nil, err
	}

	defer staged.Abort()

	if needView {
		v := <-view
		if v.err != nil {
			return nil, v.err
		}

		if err := staged.AddPrepared(v.file); err != nil {
			return nil, err
		}
	}

	for _, f := range staged.Files() {
		lock.Files[f.Path] = sumDigest(f.Sum)
	}

	head := <-lockHead
	if head.err != nil {
		return nil, head.err
	}

	lockData, err := lock.marshalWithHead(head.data)
	if err != nil {
		return nil, err
	}

	if bundleEnc != nil {
		if err := secrets.Create(bundlePath, bundleEnc); err != nil {
			return nil, err
		}

		res.BundleCreated = true

		fmt.Fprintf(logw, "created the Talos secrets bundle %s (encrypted; keep it: the cluster cannot be rebuilt without it)\n", bundlePath)
	}

	// The lockfile goes last: it is the commit point of the whole set (see package gitops).
	if res.Files, err = staged.Commit(gitops.File{Path: LockFile, Data: lockData}, old.removedBy(lock)); err != nil {
		return nil, err
	}

	remember(out, reuseInputs(c, profileDigest, out, opts.SOPSConfig), digest(lockData), renewAt(rendered.Talosconfig))

	return res, finish(ctx, opts.Commit, res, rekeyed)
}

// reuseOutput ends a run without rendering when it can prove the output current (see
// provenCurrent): it re-encrypts what rekeyOutput covers for new recipients, as a rendering
// run does, and reports the files unchanged. It reports false when the run has to render.
func reuseOutput(ctx context.Context, opts Options, res *Result, img *schematic.Image, profileDigest string, pending *pendingLock, logw io.Writer) (bool, error) {
	c, out := res.Cluster, res.OutDir

	rec := loadReuseRecord(out)
	inputs := reuseInputs(c, profileDigest, out, opts.SOPSConfig)

	if rec == nil || inputs == "" || rec.Inputs != inputs {
		return false, nil // changed inputs: the run renders, and needs the old lockfile only after that
	}

	old := pending.get()
	if !provenCurrent(c, out, old, rec, inputs, img, opts.Renderers) {
		return false, nil
	}

	sops, id, err := SOPS(c.Root(), opts.SOPSConfig, logw)
	if err != nil {
		return false, err
	}

	rule, err := sops.RuleFor(filepath.Join(out, NodeConfigFile("x")))
	if err != nil {
		return false, err
	}

	if rule.Fingerprint() != old.Encryption {
		return false, nil // new recipients: every node file is encrypted again
	}

	rekeyed, err := rekeyOutput(sops, out)
	if err != nil {
		return false, err
	}

	if len(rekeyed) > 0 { // the bundle's digest is an input
		remember(out, reuseInputs(c, profileDigest, out, opts.SOPSConfig), rec.Lock, rec.RenewAt)
	}

	res.Identity, res.Image, res.Schematic, res.Lock, res.Files = id, img, img.ID, old, unchangedResult(old)

	return true, finish(ctx, opts.Commit, res, rekeyed)
}

// finish reports the files outside the lockfile (the bundle and the kubeconfig, which
// rekeyOutput may have re-encrypted) and commits with --commit.
func finish(ctx context.Context, commit bool, res *Result, rekeyed []string) error {
	if res.BundleCreated || slices.Contains(rekeyed, secrets.FileName) {
		res.Files.Written = append([]string{secrets.FileName}, res.Files.Written...)
	} else {
		res.Files.Unchanged = append([]string{secrets.FileName}, res.Files.Unchanged...)
	}

	if slices.Contains(rekeyed, kubeconfigFile) {
		res.Files.Written = append(res.Files.Written, kubeconfigFile)
	}

	if !commit {
		return nil
	}

	var err error

	res.Committed, err = commitOutput(ctx, res.OutDir, res.Lock, res)

	return err
}

// sharedFiles returns the cluster-wide files: talosconfig, schematic, extra renderers,
// .gitignore.
func sharedFiles(c *profile.Cluster, img *schematic.Image, talosconfig []byte, renderers []Renderer) ([]gitops.File, error) {
	sch, err := img.YAML()
	if err != nil {
		return nil, err
	}

	files := []gitops.File{
		{Path: TalosconfigFile, Data: talosconfig, Secret: true},
		{Path: SchematicFile, Data: append([]byte("# Image Factory schematic; its sha256 is the schematic ID.\n"), sch...)},
		{Path: ".gitignore", Data: []byte(gitops.GitIgnore)},
	}

	for _, r := range renderers {
		extra, err := r(c)
		if err != nil {
			return nil, err
		}

		files = append(files, extra...)
	}

	return files, nil
}

// renderNodes returns each node's config to encrypt, and whether the redacted view of all
// nodes is to be written, except for what is provably current: a node whose config digest,
// encryption rule and file on disk all match what the previous lockfile recorded is returned
// in keep, unread and unencrypted, and so is the redacted view when no node changed. That is
// what makes an unchanged run fast.
func renderNodes(ctx context.Context, out string, configs []*machineconfig.Config, old, lock *Lock) (files []gitops.File, keep []string, view bool, err error) {
	changed := 0

	for _, cfg := range configs {
		if err := ctx.Err(); err != nil { // each check hashes a file: thousands of nodes take a while
			return nil, nil, false, err
		}

		path := NodeConfigFile(cfg.Node.Name)
		name := cfg.Node.Name

		if old.current(out, name, lock.nodeDigest(name), lock.Encryption, path) {
			keep = append(keep, path)

			continue
		}

		// A node the previous run recorded with another config has changed for sure.
		known := old != nil && old.Encryption == lock.Encryption && old.nodeDigest(name) != "" && old.nodeDigest(name) != lock.nodeDigest(name)

		files = append(files, gitops.File{Path: path, Data: cfg.Bytes, Secret: true, Changed: known})
		changed++
	}

	view = changed > 0 || !old.fileCurrent(out, RedactedFile) || !redactedViewCurrent(filepath.Join(out, RedactedFile))
	if !view {
		keep = append(keep, RedactedFile)
	}

	for _, k := range keep {
		lock.Files[k] = old.Files[k]
	}

	return files, keep, view, nil
}

// marshalled is the result of an encoding run on another goroutine.
type marshalled struct {
	data []byte
	err  error
}

// redactedHeader starts the redacted view; it names the redaction's allow-list version, so that
// a view written by an older redaction is rewritten even when no node changed.
func redactedHeader() string {
	return fmt.Sprintf("# Machine configs of every node for review only, do not apply (redaction v%d: a value not known to be safe is shown as %s).\n",
		redact.Version, gitops.RedactedMarker)
}

// redactedViewCurrent reports whether the view at path was written by this redaction.
func redactedViewCurrent(path string) bool {
	data, err := os.ReadFile(path)

	return err == nil && strings.HasPrefix(string(data), redactedHeader())
}

// redactedView encodes every node's config redacted (only allow-listed fields in clear, see
// package redact), concurrently, into one multi-document file with a comment before each node.
// Nodes share most documents (every worker's v1alpha1 document is usually the same), so each
// distinct document is redacted once (redact.Shared).
func redactedView(ctx context.Context, configs []*machineconfig.Config) ([]byte, error) {
	parts := make([][]byte, len(configs))
	errs := make([]error, len(configs))
	shared := redact.NewShared()

	err := parallel.ForEach(ctx, len(configs), 0, func(i int) { parts[i], errs[i] = shared.YAML(configs[i].Bytes) })
	if err := errors.Join(append(errs, err)...); err != nil {
		return nil, err
	}

	var b strings.Builder

	b.WriteString(redactedHeader())
	b.WriteString("# The configs talforge applies are nodes/<node>.yaml.enc, encrypted whole: sops -d nodes/<node>.yaml.enc\n")

	for i, cfg := range configs {
		fmt.Fprintf(&b, "---\n# node %s (%s, %s)\n", cfg.Node.Name, cfg.Node.Role, cfg.Node.IP)
		b.Write(parts[i])
	}

	return []byte(b.String()), nil
}

func digest(data []byte) string { return sumDigest(sha256.Sum256(data)) }

// sumDigest is how the lockfile writes a SHA-256.
func sumDigest(sum [sha256.Size]byte) string { return "sha256:" + hex.EncodeToString(sum[:]) }

// fileDigest hashes a file on disk ("" if it cannot be read).
func fileDigest(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return "unreadable"
		}

		return ""
	}

	return digest(data)
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
