package sopsfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/talforge/talforge/pkg/atomicfile"
)

// DefaultIdentityPathHint is how messages name the default age identity file.
const DefaultIdentityPathHint = "~/.config/sops/age/keys.txt"

// SecretFieldsRegex names the fields of Talos machine configs, talosconfigs and kubeconfigs
// that hold secrets (CA and client keys, tokens, the cluster and discovery secrets, encryption
// secrets, the service-account key, registry passwords). The leak check uses it on plaintext
// output, such as the redacted views of machine configs.
const SecretFieldsRegex = `^(key|token|secret|privateKey|clusterSecret|secretboxEncryptionSecret|aescbcEncryptionSecret|bootstrapToken|password|auth|identityToken|client-key-data)$`

// IdentityPath returns the age identity file SOPS reads: $SOPS_AGE_KEY_FILE, else
// <user config dir>/sops/age/keys.txt.
func IdentityPath() (string, error) {
	if p := os.Getenv("SOPS_AGE_KEY_FILE"); p != "" {
		return p, nil
	}

	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("locating the age identity file: %w (set SOPS_AGE_KEY_FILE)", err)
	}

	return filepath.Join(dir, "sops", "age", "keys.txt"), nil
}

// Identity is the local age identity used to encrypt talforge's output.
type Identity struct {
	// Recipient is the public key (age1...).
	Recipient string
	// Path is the identity file ("" when it came from SOPS_AGE_KEY).
	Path string
	// Created is true when EnsureIdentity generated it.
	Created bool
}

// EnsureIdentity returns the local age identity, creating one (mode 0600) at IdentityPath when
// none exists. It never overwrites an existing identity file.
func EnsureIdentity() (*Identity, error) {
	if k := os.Getenv("SOPS_AGE_KEY"); k != "" {
		r, err := firstRecipient(strings.NewReader(k))
		if err != nil {
			return nil, fmt.Errorf("SOPS_AGE_KEY: %w", err)
		}

		return &Identity{Recipient: r}, nil
	}

	path, err := IdentityPath()
	if err != nil {
		return nil, err
	}

	data, err := os.ReadFile(path)
	if err == nil {
		r, err := firstRecipient(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("age identity file %s: %w", path, err)
		}

		return &Identity{Recipient: r, Path: path}, nil
	}

	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}

	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, err
	}

	content := fmt.Sprintf("# created: %s by talforge\n# public key: %s\n%s\n", time.Now().UTC().Format(time.RFC3339), id.Recipient(), id)

	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}

	// O_EXCL: if another process created it meanwhile, keep theirs.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return EnsureIdentity()
		}

		return nil, err
	}

	if _, err := f.WriteString(content); err != nil {
		f.Close()

		return nil, err
	}

	if err := f.Close(); err != nil {
		return nil, err
	}

	return &Identity{Recipient: id.Recipient().String(), Path: path, Created: true}, nil
}

func firstRecipient(r interface{ Read([]byte) (int, error) }) (string, error) {
	ids, err := age.ParseIdentities(r)
	if err != nil {
		return "", err
	}

	for _, id := range ids {
		if x, ok := id.(*age.X25519Identity); ok {
			return x.Recipient().String(), nil
		}
	}

	return "", errors.New("holds no X25519 age identity")
}

// CreationRules returns .sops.yaml content that encrypts talforge's output for recipients:
// *.sops.yaml files (secrets bundle, talosconfig, kubeconfig, credentials) value by value, and
// *.enc files (machine configs) whole.
func CreationRules(recipients []string) []byte {
	return []byte(`# SOPS creation rules, written by talforge init. The sops CLI and talforge both read them.
# Add a teammate: append their age public key to "age:", then run
#   sops updatekeys <file>   for every encrypted file (talforge re-encrypts on its next write).
creation_rules:
  - path_regex: \.sops\.ya?ml$|\.enc$
    age: ` + strings.Join(recipients, ",") + `
`)
}

// WriteCreationRules writes root/.sops.yaml for recipients unless one already exists. It
// reports whether it wrote.
func WriteCreationRules(root string, recipients []string) (bool, error) {
	path := filepath.Join(root, ConfigFileName)
	if _, err := os.Stat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}

	return true, atomicfile.Write(path, CreationRules(recipients), 0o644)
}
