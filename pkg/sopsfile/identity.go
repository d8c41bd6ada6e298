package sopsfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
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
	if err == nil && len(bytes.TrimSpace(data)) == 0 {
		// Never replaced, even empty: but say what an empty one most likely is.
		return nil, fmt.Errorf("age identity file %s is empty (an older talforge that crashed while creating it leaves it so); if nothing was encrypted for it, remove it and run again", path)
	}

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

	created, err := createIdentityFile(path, []byte(content))
	if err != nil {
		return nil, fmt.Errorf("age identity file %s: %w", path, err)
	}

	if !created {
		// Another process created one meanwhile: keep theirs.
		return EnsureIdentity()
	}

	return &Identity{Recipient: id.Recipient().String(), Path: path, Created: true}, nil
}

// createIdentityFile writes a new identity file at path so that it is complete or absent
// whatever happens (a crash, a full disk, a kill): the content goes to a temporary file in the
// same directory and is synced, then hard-linked to path, which fails if path exists (so an
// identity is never replaced), and the directory is synced so the link survives a power cut.
// It reports false when path already existed. The same steps as secrets.Create.
func createIdentityFile(path string, content []byte) (bool, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, err
	}

	// CreateTemp makes the file 0600: the key is never readable by others, not even briefly.
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return false, err
	}

	defer os.Remove(tmp.Name()) // the link at path keeps the content

	_, err = tmp.Write(content)
	if err == nil {
		err = tmp.Sync()
	}

	if cerr := tmp.Close(); err == nil {
		err = cerr
	}

	if err != nil {
		return false, err
	}

	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}

		return false, err
	}

	d, err := os.Open(dir)
	if err != nil {
		return true, err
	}
	defer d.Close()

	if err := d.Sync(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return true, err
	}

	return true, nil
}

func firstRecipient(r interface{ Read([]byte) (int, error) }) (string, error) {
	ids, err := age.ParseIdentities(r)
	if err != nil {
		return "", quietIdentityError(err)
	}

	for _, id := range ids {
		if x, ok := id.(*age.X25519Identity); ok {
			return x.Recipient().String(), nil
		}
	}

	return "", errors.New("holds no X25519 age identity")
}

// ageLineError is how age reports a line it cannot parse (age parse.go, ParseIdentities).
// Compiled on first use, not at package initialisation, to keep start-up cheap (issue 16).
var ageLineError = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^error at line (\d+):`)
})

// quietIdentityError keeps age's line number and drops the rest: for a line of unknown type
// age quotes the whole line, which is a secret key in a form it does not recognise.
func quietIdentityError(err error) error {
	if m := ageLineError().FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("line %s is not an age identity (AGE-SECRET-KEY-1...; the line is not shown)", m[1])
	}

	return err
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
