package generate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	talossecrets "github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"

	"github.com/talforge/talforge/pkg/machineconfig"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/schematic"
	"github.com/talforge/talforge/pkg/secrets"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// ErrNotGenerated means clusters/<name>/ has no secrets bundle yet.
var ErrNotGenerated = errors.New("the cluster's secrets bundle does not exist yet")

// Rendered is everything talforge derives from a profile and a secrets bundle, in memory: the
// image, every node's machine config and the talosconfig. It is the one render path: generate
// writes it, validate checks it, and plan, up, apply and bootstrap apply it.
type Rendered struct {
	Cluster     *profile.Cluster
	Image       *schematic.Image
	Generator   *machineconfig.Generator
	Configs     []*machineconfig.Config
	Talosconfig []byte
	// Bundle is the secrets bundle the configs were rendered with.
	Bundle *talossecrets.Bundle
}

// Render renders the profile with bundle. talosconfig is the stored one ("" for none): its
// client certificate is kept while it is valid, so that rendering twice gives the same file.
func Render(ctx context.Context, c *profile.Cluster, bundle *talossecrets.Bundle, talosconfig []byte) (*Rendered, error) {
	img, err := schematic.ForCluster(c)
	if err != nil {
		return nil, err
	}

	return render(ctx, c, img, bundle, talosconfig, true)
}

// render is Render with the cluster's image already resolved; without decoded, the configs
// carry only their encoding (machineconfig.Generator.AllEncoded).
func render(ctx context.Context, c *profile.Cluster, img *schematic.Image, bundle *talossecrets.Bundle, talosconfig []byte, decoded bool) (*Rendered, error) {
	gen, err := machineconfig.New(ctx, c, img, bundle)
	if err != nil {
		return nil, err
	}

	all := gen.AllEncoded
	if decoded {
		all = gen.All
	}

	configs, err := all(ctx)
	if err != nil {
		return nil, err
	}

	tc, err := gen.Talosconfig(talosconfig)
	if err != nil {
		return nil, err
	}

	return &Rendered{Cluster: c, Image: img, Generator: gen, Configs: configs, Talosconfig: tc, Bundle: bundle}, nil
}

// RenderStored renders the profile with the secrets bundle and talosconfig stored in the
// cluster's output directory, writing nothing: what `generate` would write, for the commands
// that apply it. Without a bundle it returns ErrNotGenerated.
func RenderStored(ctx context.Context, c *profile.Cluster) (*Rendered, error) {
	out := c.OutputDir()
	bundlePath := filepath.Join(out, secrets.FileName)

	ok, err := secrets.Exists(bundlePath)
	if err != nil {
		return nil, err
	}

	if !ok {
		return nil, fmt.Errorf("%w: %s: run `talforge generate` first (or `talforge up`)", ErrNotGenerated, bundlePath)
	}

	bundle, err := secrets.Load(bundlePath)
	if err != nil {
		return nil, err
	}

	talosconfig, err := storedTalosconfig(out)
	if err != nil {
		return nil, err
	}

	return Render(ctx, c, bundle, talosconfig)
}

// RenderThrowaway renders the profile with a throw-away secrets bundle, for validation: it needs
// no keys and reads nothing from the output directory. The bundle's service-account key is ECDSA
// (a millisecond) rather than RSA (up to seconds, in one call a signal cannot interrupt):
// validation does not depend on the key type.
func RenderThrowaway(ctx context.Context, c *profile.Cluster) (*Rendered, error) {
	contract, err := config.ParseContractFromVersion(c.Talos.Version)
	if err != nil {
		return nil, fmt.Errorf("talos.version: %w", err)
	}

	bundle, err := talossecrets.NewBundle(talossecrets.NewFixedClock(time.Now()), contract, talossecrets.WithECDSAServiceAccountKey())
	if err != nil {
		return nil, err
	}

	return Render(ctx, c, bundle, nil)
}

// storedTalosconfig decrypts the output directory's talosconfig; none is not an error.
func storedTalosconfig(out string) ([]byte, error) {
	data, err := sopsfile.DecryptFile(filepath.Join(out, TalosconfigFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}

	return data, err
}

// Stale reports, from the lockfile that generate wrote in out, which rendered nodes differ from
// what Git holds: an empty list means clusters/<name>/ is current. A missing or unreadable
// lockfile is an error that says so.
func Stale(out string, r *Rendered) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(out, LockFile))
	if err != nil {
		return nil, fmt.Errorf("%s/%s is missing: run `talforge generate` and commit, so Git holds what is applied", out, LockFile)
	}

	lock := readLockData(data)
	if lock == nil {
		return nil, fmt.Errorf("%s/%s cannot be read: run `talforge generate`", out, LockFile)
	}

	var stale []string

	for _, cfg := range r.Configs {
		if lock.nodeDigest(cfg.Node.Name) != digest(cfg.Bytes) {
			stale = append(stale, cfg.Node.Name)
		}
	}

	return stale, nil
}
