package sopsfile

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/getsops/sops/v3"
	"github.com/getsops/sops/v3/aes"
	"github.com/getsops/sops/v3/cmd/sops/formats"
	sopsconfig "github.com/getsops/sops/v3/config"
	"github.com/getsops/sops/v3/stores/dotenv"
	"github.com/getsops/sops/v3/stores/ini"
	sopsjson "github.com/getsops/sops/v3/stores/json"
	sopsyaml "github.com/getsops/sops/v3/stores/yaml"

	"github.com/talforge/talforge/pkg/atomicfile"
)

// ConfigFileName is the SOPS configuration file holding creation rules.
const ConfigFileName = ".sops.yaml"

// ErrNoRules means no .sops.yaml creation rule covers a file that talforge must encrypt.
var ErrNoRules = errors.New("no SOPS creation rule")

// storeFor returns the SOPS store the sops CLI uses for a path: YAML for *.yaml/*.yml, JSON,
// dotenv and INI by extension, and binary (the whole file as one encrypted value) otherwise,
// each with the CLI's default store settings. It is the CLI's own table (sops
// cmd/sops/common.storeConstructors), not a call into it: that package links the CLI's
// command-line framework and manual-page renderer into every talforge command (issue 16).
func storeFor(path string) sops.Store {
	c := sopsconfig.NewStoresConfig()

	switch formats.FormatForPath(path) {
	case formats.Yaml:
		return sopsyaml.NewStore(&c.YAML)
	case formats.Json:
		return sopsjson.NewStore(&c.JSON)
	case formats.Dotenv:
		return dotenv.NewStore(&c.Dotenv)
	case formats.Ini:
		return ini.NewStore(&c.INI)
	default:
		return sopsjson.NewBinaryStore(&c.JSONBinary)
	}
}

// sopsVersion is the version of the sops library talforge is built with (go.mod), which SOPS
// writes into every file's metadata. It is not read from sops's version package: that one links
// the sops CLI's command-line framework (urfave/cli) into every talforge command (issue 16).
// TestSOPSVersionIsTheLibrarys fails when go.mod moves to another sops and this is not updated.
const sopsVersion = "3.13.3"

// encryptTree encrypts tree's values with dataKey and seals its MAC, as the sops CLI does
// (cmd/sops/common.EncryptTree: the MAC is encrypted with the modification time as its
// additional data).
func encryptTree(tree *sops.Tree, dataKey []byte) error {
	cipher := aes.NewCipher()

	mac, err := tree.Encrypt(dataKey, cipher)
	if err != nil {
		return fmt.Errorf("error encrypting tree: %w", err)
	}

	tree.Metadata.LastModified = time.Now().UTC()

	tree.Metadata.MessageAuthenticationCode, err = cipher.Encrypt(mac, dataKey, tree.Metadata.LastModified.Format(time.RFC3339))
	if err != nil {
		return fmt.Errorf("could not encrypt the MAC: %w", err)
	}

	return nil
}

// Decrypt decrypts SOPS-encrypted data. name is the file's path or name: its extension selects
// the format as the sops CLI does (*.yaml is YAML; *.enc and other unknown extensions are
// whole-file binary), and it identifies the data in errors.
func Decrypt(name string, data []byte) ([]byte, error) {
	store := storeFor(name)

	tree, err := store.LoadEncryptedFile(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, notEncrypted(err))
	}

	key, err := tree.Metadata.GetDataKey()
	if err != nil {
		return nil, &DecryptError{File: name, Recipients: recipients(tree.Metadata), Err: err}
	}

	cipher := aes.NewCipher()

	// sops' errors quote a value that does not decrypt: report its key instead.
	quiet := &quietCipher{Cipher: cipher}

	mac, err := tree.Decrypt(key, quiet)
	if err != nil {
		if quiet.failed != "" {
			return nil, fmt.Errorf("decrypting %s: the value of %s is not SOPS-encrypted data (was it edited without sops? set it again with sops or talforge)", name, quiet.failed)
		}

		return nil, fmt.Errorf("decrypting %s: a value is not SOPS-encrypted data (was the file edited without sops?)", name)
	}

	original, err := cipher.Decrypt(tree.Metadata.MessageAuthenticationCode, key, tree.Metadata.LastModified.Format(time.RFC3339))
	if err != nil {
		return nil, fmt.Errorf("decrypting %s: MAC: %w", name, err)
	}

	if original != mac {
		return nil, fmt.Errorf("decrypting %s: integrity check failed: the file was modified without sops", name)
	}

	return store.EmitPlainFile(tree.Branches)
}

// DecryptFile reads and decrypts a SOPS-encrypted YAML file.
func DecryptFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}

	return Decrypt(path, data)
}

// DecryptError says that no available key opens a file, and for whom it was encrypted.
type DecryptError struct {
	File       string
	Recipients []string
	Err        error
}

func (e *DecryptError) Error() string {
	return fmt.Sprintf("cannot decrypt %s: none of your keys opens it (it is encrypted for %s); "+
		"age identities are read from SOPS_AGE_KEY, SOPS_AGE_KEY_FILE or %s; ask a recipient to add your public key and run `sops updatekeys %s`",
		e.File, strings.Join(e.Recipients, ", "), DefaultIdentityPathHint, e.File)
}

func (e *DecryptError) Unwrap() error { return e.Err }

// recipients lists the master keys of a file (age recipients, PGP fingerprints, KMS ARNs...).
func recipients(m sops.Metadata) []string {
	var out []string

	for _, group := range m.KeyGroups {
		for _, k := range group {
			out = append(out, k.ToString())
		}
	}

	slices.Sort(out)

	return out
}

// Rule is the creation rule that applies to a file.
type Rule struct {
	// ConfigPath is the .sops.yaml the rule came from.
	ConfigPath string
	conf       *sopsconfig.Config
	keys       *runKeys
}

// RuleFor finds the .sops.yaml above path (walking up from its directory, as sops does from
// the working directory) and returns the creation rule matching path. talforge's commands use
// Config.RuleFor instead: a .sops.yaml found above an output location must not decide who can
// decrypt what is written there.
func RuleFor(path string) (*Rule, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}

	conf, err := findConfig(filepath.Dir(abs))
	if err != nil {
		return nil, err
	}

	return ruleIn(conf, abs, path)
}

// ruleIn returns the creation rule of the .sops.yaml at conf that matches the file at abs
// (path as the caller named it, for messages).
func ruleIn(conf, abs, path string) (*Rule, error) {
	c, err := sopsconfig.LoadCreationRuleForFile(conf, abs, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (talforge encrypts *.sops.yaml and *.enc files: add a creation rule whose path_regex matches %s, as `talforge init` writes)", conf, err, filepath.Base(path))
	}

	if c == nil || len(c.KeyGroups) == 0 {
		return nil, fmt.Errorf("%w for %s in %s (run `talforge init` to write one)", ErrNoRules, path, conf)
	}

	return &Rule{ConfigPath: conf, conf: c}, nil
}

func findConfig(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		p := filepath.Join(d, ConfigFileName)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}

		if filepath.Dir(d) == d {
			return "", fmt.Errorf("%w: no %s in %s or any parent directory (run `talforge init` to write one)", ErrNoRules, ConfigFileName, dir)
		}
	}
}

// Encrypt encrypts plaintext for path under rule, as `sops encrypt` would: in the format the
// path's extension selects.
func (r *Rule) Encrypt(path string, plain []byte) ([]byte, error) {
	store := storeFor(path)

	branches, err := store.LoadPlainFile(plain)
	if err != nil {
		return nil, fmt.Errorf("encrypting %s: %w", path, err)
	}

	if len(branches) == 0 {
		return nil, fmt.Errorf("encrypting %s: empty document", path)
	}

	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}

	tree := sops.Tree{
		Branches: branches,
		FilePath: abs,
		Metadata: r.metadata(),
	}

	dataKey, err := r.dataKey(abs, path, &tree.Metadata)
	if err != nil {
		return nil, fmt.Errorf("encrypting %s: %w", path, err)
	}

	if err := encryptTree(&tree, dataKey); err != nil {
		return nil, fmt.Errorf("encrypting %s: %w", path, err)
	}

	// A rule that encrypts only some values (encrypted_regex and the like) is refused: every
	// file talforge encrypts is secret as a whole.
	if err := r.checkEncrypted(path, tree.Branches); err != nil {
		return nil, err
	}

	return store.EmitEncryptedFile(tree)
}

// metadata is the SOPS metadata for new files under this rule. Like the sops CLI, a rule that
// says nothing about what to encrypt gets the default "_unencrypted" suffix.
func (r *Rule) metadata() sops.Metadata {
	m := sops.Metadata{
		KeyGroups:               r.conf.KeyGroups,
		ShamirThreshold:         r.conf.ShamirThreshold,
		UnencryptedSuffix:       r.conf.UnencryptedSuffix,
		EncryptedSuffix:         r.conf.EncryptedSuffix,
		UnencryptedRegex:        r.conf.UnencryptedRegex,
		EncryptedRegex:          r.conf.EncryptedRegex,
		UnencryptedCommentRegex: r.conf.UnencryptedCommentRegex,
		EncryptedCommentRegex:   r.conf.EncryptedCommentRegex,
		MACOnlyEncrypted:        r.conf.MACOnlyEncrypted,
		Version:                 sopsVersion,
	}

	if m.UnencryptedSuffix == "" && m.EncryptedSuffix == "" && m.UnencryptedRegex == "" && m.EncryptedRegex == "" &&
		m.UnencryptedCommentRegex == "" && m.EncryptedCommentRegex == "" {
		m.UnencryptedSuffix = sops.DefaultUnencryptedSuffix
	}

	return m
}

// Fingerprint identifies what the rule encrypts for: a digest of its recipients and of what it
// encrypts. Files written under a rule with another fingerprint need re-encrypting.
func (r *Rule) Fingerprint() string {
	m := r.metadata()
	h := sha256.New()

	for _, k := range recipients(m) {
		fmt.Fprintf(h, "recipient %s\n", k)
	}

	fmt.Fprintf(h, "%q %q %q %q %q %q %v %d\n", m.UnencryptedSuffix, m.EncryptedSuffix, m.UnencryptedRegex, m.EncryptedRegex,
		m.UnencryptedCommentRegex, m.EncryptedCommentRegex, m.MACOnlyEncrypted, m.ShamirThreshold)

	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// UpToDate reports whether the encrypted file at path already holds plain, for the same
// recipients and with the same encryption rule, so rewriting it would only churn Git. An
// existing file that cannot be decrypted is an error: it must not be overwritten blindly.
func (r *Rule) UpToDate(path string, plain []byte) (bool, error) {
	old, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}

	if err != nil {
		return false, err
	}

	store := storeFor(path)

	tree, err := store.LoadEncryptedFile(old)
	if err != nil {
		return false, nil // not a SOPS file: replace it
	}

	// Decrypt first, whatever else differs: a file this machine cannot read is never
	// replaced (it may hold what someone else wrote for recipients not yet in .sops.yaml).
	current, err := Decrypt(path, old)
	if err != nil {
		return false, err
	}

	if r.checkEncrypted(path, tree.Branches) != nil {
		return false, nil // values in clear: re-encrypt (Encrypt refuses a rule that keeps them so)
	}

	want := r.metadata()
	got := tree.Metadata

	if !slices.Equal(recipients(got), recipients(want)) ||
		got.EncryptedRegex != want.EncryptedRegex || got.UnencryptedRegex != want.UnencryptedRegex ||
		got.EncryptedSuffix != want.EncryptedSuffix || got.UnencryptedSuffix != want.UnencryptedSuffix ||
		got.EncryptedCommentRegex != want.EncryptedCommentRegex || got.UnencryptedCommentRegex != want.UnencryptedCommentRegex ||
		got.MACOnlyEncrypted != want.MACOnlyEncrypted {
		return false, nil
	}

	branches, err := store.LoadPlainFile(plain)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}

	normalized, err := store.EmitPlainFile(branches)
	if err != nil {
		return false, err
	}

	return string(current) == string(normalized), nil
}

// WriteFile encrypts plain for path with the creation rule that covers it and writes it
// atomically (mode 0644: the content is encrypted), unless the file already holds the same
// content for the same recipients. It reports whether it wrote. If the existing file cannot
// be decrypted, WriteFile fails rather than overwrite data it cannot read.
func WriteFile(path string, plain []byte) (bool, error) {
	r, err := RuleFor(path)
	if err != nil {
		return false, err
	}

	return r.WriteFile(path, plain)
}

// WriteFile is the package-level WriteFile with a known rule.
func (r *Rule) WriteFile(path string, plain []byte) (bool, error) {
	same, err := r.UpToDate(path, plain)
	if err != nil {
		return false, err
	}

	if same {
		return false, nil
	}

	enc, err := r.Encrypt(path, plain)
	if err != nil {
		return false, err
	}

	return true, atomicfile.Write(path, enc, 0o644)
}
