// Encryption of the output: the recipients the project's SOPS rules name, the local age identity,
// and re-encryption of the files generate does not rewrite itself.

package generate

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	talossecrets "github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/talforge/talforge/pkg/secrets"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// kubeconfigFile is the admin kubeconfig bootstrap stores beside generate's output
// (bootstrap.KubeconfigFile).
const kubeconfigFile = "kubeconfig.sops.yaml"

// rekeyOutput re-encrypts the SOPS files of the output directory that generate does not
// rewrite itself, the secrets bundle and the kubeconfig, for the recipients the configuration
// names now: adding a teammate's key must reach them too. Their content is never changed, not
// by a byte (sopsfile.Rule.Rekey), and a file this machine cannot decrypt is never replaced:
// that is an error. It returns the files it rewrote.
func rekeyOutput(sops *sopsfile.Config, out string) ([]string, error) {
	var rewrote []string

	for _, name := range []string{secrets.FileName, kubeconfigFile} {
		path := filepath.Join(out, name)

		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			continue
		}

		rule, err := sops.RuleFor(path)
		if err != nil {
			return nil, err
		}

		changed, err := rule.Rekey(path)
		if err != nil {
			return nil, err
		}

		if changed {
			rewrote = append(rewrote, name)
		}
	}

	return rewrote, nil
}

func encryptBundle(sops *sopsfile.Config, path string, b *talossecrets.Bundle) ([]byte, error) {
	plain, err := secrets.Marshal(b)
	if err != nil {
		return nil, err
	}

	rule, err := sops.RuleFor(path)
	if err != nil {
		return nil, err
	}

	return rule.Encrypt(path, plain)
}

// SOPS returns the configuration whose creation rules choose the recipients of what talforge
// writes for the project at root, and the local age identity (created when there is none).
// explicit is a --sops-config file; without one it is root/.sops.yaml, written for the local
// identity when the project has none. It is never a .sops.yaml found above an output
// directory: whoever can write there must not choose who can decrypt the cluster.
func SOPS(root, explicit string, log io.Writer) (*sopsfile.Config, *sopsfile.Identity, error) {
	if explicit != "" {
		id, err := sopsfile.EnsureIdentity()
		if err != nil {
			return nil, nil, fmt.Errorf("age identity: %w", err)
		}

		if id.Created {
			fmt.Fprintf(log, "created age identity %s\n  public key: %s\n  back it up: without it nothing talforge encrypted can be decrypted\n", id.Path, id.Recipient)
		}

		cfg, err := sopsfile.OpenConfig(explicit)

		return cfg, id, err
	}

	id, err := EnsureSOPS(root, log)
	if err != nil {
		return nil, nil, err
	}

	cfg, err := sopsfile.ProjectConfig(root)

	return cfg, id, err
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
