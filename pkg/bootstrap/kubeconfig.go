package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/siderolabs/talos/pkg/machinery/client"

	"github.com/talforge/talforge/pkg/gitops"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// Files talforge keeps in clusters/<name>/, SOPS-encrypted.
const (
	KubeconfigFile  = "kubeconfig.sops.yaml"
	TalosconfigFile = "talosconfig.sops.yaml"
)

// Kubeconfig fetches the admin kubeconfig from the first control plane that answers, each addressed on its
// own IP.
func (r *Runner) Kubeconfig(ctx context.Context) ([]byte, error) {
	var kubeconfig []byte

	cps := r.controlPlanes()

	err := r.wait(ctx, "", "kubeconfig", r.opts.BootstrapTimeout, func(lastSeen string) *Error {
		return &Error{Phase: PhaseKubeconfig, LastSeen: lastSeen,
			Hint: "the kubeconfig comes from a configured control plane: run `talforge apply` and check that the control planes answer"}
	}, func(ctx context.Context) stepResult {
		var errs []error

		for _, n := range cps {
			data, err := r.fetchKubeconfig(ctx, n)
			if err == nil && len(data) > 0 {
				kubeconfig = data
				r.progress.printf(n.Name, "fetched the admin kubeconfig")

				return stepResult{done: true}
			}

			if err == nil {
				err = errors.New("empty kubeconfig")
			}

			errs = append(errs, fmt.Errorf("%s: %s", n.Name, describe(err)))
		}

		return stepResult{seen: errors.Join(errs...).Error()}
	})

	return kubeconfig, err
}

func (r *Runner) fetchKubeconfig(ctx context.Context, n Node) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
	defer cancel()

	var kubeconfig []byte

	err := r.call(ctx, n, modeSecure, func(c *client.Client) (err error) {
		kubeconfig, err = c.Kubeconfig(ctx)

		return err
	})

	return kubeconfig, err
}

// Store writes the kubeconfig and the talosconfig SOPS-encrypted into dir (clusters/<name>/) with the
// project's .sops.yaml rules (sops: sopsfile.ProjectConfig of the project root, never a .sops.yaml
// found above dir, which would let a planted file choose who can read the admin kubeconfig).
// Files whose decrypted content is unchanged are left alone. It returns the files it wrote.
func Store(sops *sopsfile.Config, dir string, kubeconfig, talosconfig []byte) ([]string, error) {
	var written []string

	for _, f := range []struct {
		name string
		data []byte
	}{{KubeconfigFile, kubeconfig}, {TalosconfigFile, talosconfig}} {
		if f.data == nil {
			continue
		}

		path := filepath.Join(dir, f.name)

		rule, err := sops.RuleFor(path)
		if err != nil {
			return written, fmt.Errorf("store %s: %w", path, err)
		}

		// Leak-checked like every file talforge writes under clusters/<name>/.
		changed, err := gitops.WriteSecret(rule, path, f.data)
		if err != nil {
			return written, fmt.Errorf("store %s: %w", path, err)
		}

		if changed {
			written = append(written, path)
		}
	}

	return written, nil
}
