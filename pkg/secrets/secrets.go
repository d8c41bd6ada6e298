package secrets

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"go.yaml.in/yaml/v4"

	"github.com/talforge/talforge/pkg/sopsfile"
)

// FileName is the bundle's file name inside clusters/<name>/.
const FileName = "secrets.sops.yaml"

// Load decrypts and parses the bundle at path.
func Load(path string) (*secrets.Bundle, error) {
	plain, err := sopsfile.DecryptFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets bundle: %w", err)
	}

	return Parse(path, plain)
}

// Parse parses a decrypted bundle (talosctl `gen secrets` format).
func Parse(name string, plain []byte) (*secrets.Bundle, error) {
	bundle := &secrets.Bundle{Clock: secrets.NewClock()}

	dec := yaml.NewDecoder(bytes.NewReader(plain))
	dec.KnownFields(true)

	if err := dec.Decode(bundle); err != nil {
		return nil, fmt.Errorf("secrets bundle %s: %w", name, err)
	}

	return bundle, nil
}

// Marshal encodes a bundle in talosctl's `gen secrets` format.
func Marshal(b *secrets.Bundle) ([]byte, error) {
	var buf bytes.Buffer

	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(4)

	if err := enc.Encode(b); err != nil {
		return nil, err
	}

	if err := enc.Close(); err != nil {
		return nil, err
	}

	return buf.Bytes(), nil
}

// New generates a new bundle for a Talos version contract. It is not written anywhere: see
// Create.
func New(contract *config.VersionContract) (*secrets.Bundle, error) {
	b, err := secrets.NewBundle(secrets.NewFixedClock(time.Now()), contract)
	if err != nil {
		return nil, fmt.Errorf("generating secrets bundle: %w", err)
	}

	b.Clock = secrets.NewClock()

	return b, nil
}

// Exists reports whether a bundle file is present at path.
func Exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if err == nil {
		return true, nil
	}

	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}

	return false, err
}

// ErrExists means a bundle file appeared where a new one was to be created.
var ErrExists = errors.New("a secrets bundle already exists there; talforge never replaces one")

// Create writes an encrypted bundle to path only if no file exists there: the file appears
// complete or not at all, and it never replaces another.
func Create(path string, encrypted []byte) error {
	if err := createExclusive(path, encrypted); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w", path, ErrExists)
		}

		return err
	}

	return nil
}

// createExclusive writes data to a temporary file and hard-links it to path, which fails if
// path exists: the file appears complete or not at all, and never replaces another.
func createExclusive(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}

	tmp, err := os.CreateTemp(dir, ".secrets-*.tmp")
	if err != nil {
		return err
	}

	defer os.Remove(tmp.Name())

	if _, err := tmp.Write(data); err != nil {
		tmp.Close()

		return err
	}

	if err := tmp.Sync(); err != nil {
		tmp.Close()

		return err
	}

	if err := tmp.Close(); err != nil {
		return err
	}

	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}

	return os.Link(tmp.Name(), path)
}
