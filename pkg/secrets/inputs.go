package secrets

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"

	"github.com/talforge/talforge/pkg/atomicfile"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// Kinds of secret input files, as `talforge secret set KIND` names them.
const (
	// KindAWSBackup is longhorn.backup.credentialsFile: the S3 keys Longhorn backs up with.
	KindAWSBackup = "aws-backup"
	// KindProxmox is proxmox.tokenFile: the PVE API token.
	KindProxmox = "proxmox"
)

// Kinds lists the kinds of secret input files.
var Kinds = []string{KindAWSBackup, KindProxmox}

// MaxInputSize bounds a secret input file: the largest legitimate one (S3 keys with a CA
// bundle in AWS_CERT) is a few kilobytes.
const MaxInputSize = 1 << 20

// Input is a secret-bearing file the profile names. talforge only ever reads it decrypted in
// memory, so on disk it must be SOPS-encrypted, every value of it.
type Input struct {
	// Kind is the argument of `talforge secret set` that writes it.
	Kind string
	// Field is the profile field naming the file.
	Field string
	// Path is the file, resolved against the project root.
	Path string
}

// FieldOf returns the profile field that names the file of a kind ("" for an unknown kind).
func FieldOf(kind string) string {
	switch kind {
	case KindAWSBackup:
		return "longhorn.backup.credentialsFile"
	case KindProxmox:
		return "proxmox.tokenFile"
	}

	return ""
}

// Inputs returns the secret input files the profile names.
func Inputs(c *profile.Cluster) []Input {
	var out []Input

	if c.Longhorn != nil && c.Longhorn.Backup != nil && c.Longhorn.Backup.CredentialsFile != "" {
		out = append(out, Input{Kind: KindAWSBackup, Field: FieldOf(KindAWSBackup), Path: c.Resolve(c.Longhorn.Backup.CredentialsFile)})
	}

	if c.Proxmox != nil && c.Proxmox.TokenFile != "" {
		out = append(out, Input{Kind: KindProxmox, Field: FieldOf(KindProxmox), Path: c.Resolve(c.Proxmox.TokenFile)})
	}

	return out
}

// CheckInputs reports, as profile problems, every secret input file of the profile that is
// not SOPS-encrypted or keeps a value in clear, naming the command that encrypts it. It reads
// the files but needs no key. A missing file is the profile loader's to report.
func CheckInputs(c *profile.Cluster) error {
	var problems profile.Problems

	for _, in := range Inputs(c) {
		msg, hint := checkInput(c, in)
		if msg != "" {
			problems = append(problems, profile.Problem{File: c.File(), Field: in.Field, Message: msg, Hint: hint})
		}
	}

	if len(problems) > 0 {
		return problems
	}

	return nil
}

// checkInput returns what is wrong with one input file and how to fix it ("" when nothing is).
func checkInput(c *profile.Cluster, in Input) (msg, hint string) {
	data, err := readBounded(in.Path)
	if errors.Is(err, os.ErrNotExist) {
		return "", ""
	}

	if err != nil {
		return err.Error(), ""
	}

	inClear, err := sopsfile.ClearValues(in.Path, data)

	switch {
	case errors.Is(err, sopsfile.ErrNotEncrypted):
		return fmt.Sprintf("%s is not SOPS-encrypted: its secret is on disk in clear", in.Path),
			"encrypt it in place: " + SetCommand(c, in.Kind) + " < " + shellQuote(in.Path)
	case err != nil:
		return err.Error(), "write it again: " + SetCommand(c, in.Kind)
	case len(inClear) > 0:
		return fmt.Sprintf("%s keeps %s in clear (a value added without sops, or a creation rule that does not encrypt it)", in.Path, strings.Join(inClear, ", ")),
			"write it again, encrypted: " + SetCommand(c, in.Kind)
	}

	return "", ""
}

// SetCommand is the command line that writes the secret input file of kind for the profile.
func SetCommand(c *profile.Cluster, kind string) string {
	return "talforge secret set " + kind + " -p " + shellQuote(c.File())
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	data, err := io.ReadAll(io.LimitReader(f, MaxInputSize+1))
	if err != nil {
		return nil, err
	}

	if len(data) > MaxInputSize {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a secret input file", path, MaxInputSize)
	}

	return data, nil
}

// Compiled on first use, not at package initialisation, to keep start-up cheap (issue 16).
var shellSafe = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[A-Za-z0-9_./@%+=:,-]+$`)
})

// shellQuote quotes s for a POSIX shell when it needs quoting.
func shellQuote(s string) string {
	if shellSafe().MatchString(s) {
		return s
	}

	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ErrForeignInput means a secret input file exists that this machine cannot decrypt: it was
// encrypted for other keys, and may hold what a teammate wrote.
var ErrForeignInput = errors.New("is encrypted for keys this machine does not hold; talforge does not replace what it cannot read (remove the file first if you mean to replace it)")

// WriteInput writes plain, the content of a secret input file, SOPS-encrypted under the
// configuration's creation rule for path, atomically, so that no plaintext ever reaches the
// disk. It reports false when the file already holds plain for the same recipients. It refuses
// a rule that would leave a value in clear, and a file that exists encrypted for keys this
// machine does not hold; a plaintext or damaged file is replaced.
func WriteInput(cfg *sopsfile.Config, path string, plain []byte) (bool, error) {
	rule, err := cfg.RuleFor(path)
	if err != nil {
		return false, err
	}

	same, err := rule.UpToDate(path, plain)

	var foreign *sopsfile.DecryptError

	switch {
	case errors.As(err, &foreign):
		return false, fmt.Errorf("%s %w: it opens with %s", path, ErrForeignInput, strings.Join(foreign.Recipients, ", "))
	case err != nil:
		// Not readable as it is (a value pasted in clear, a broken MAC): the new content replaces it.
	case same:
		return false, nil
	}

	enc, err := rule.Encrypt(path, plain)
	if err != nil {
		return false, err
	}

	inClear, err := sopsfile.ClearValues(path, enc)
	if err != nil {
		return false, err
	}

	if len(inClear) > 0 {
		return false, fmt.Errorf("the creation rule for %s in %s would leave %s in clear; talforge writes secret files with every value encrypted (remove encrypted_regex, unencrypted_suffix and the like from that rule)",
			path, cfg.Path, strings.Join(inClear, ", "))
	}

	return true, atomicfile.Write(path, enc, 0o644)
}
