package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"gopkg.in/yaml.v3"

	"github.com/talforge/talforge/pkg/backuptarget"
	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/proxmox"
	"github.com/talforge/talforge/pkg/secrets"
)

func newSecretCmd(o *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Write the profile's secret input files (S3 keys, PVE token), SOPS-encrypted",
		Args:  cobra.NoArgs,
	}

	cmd.AddCommand(newSecretSetCmd(o))

	return cmd
}

func newSecretSetCmd(o *rootOptions) *cobra.Command {
	var sopsConfig string

	cmd := &cobra.Command{
		Use:   "set aws-backup|proxmox",
		Short: "Encrypt a secret from standard input or a prompt into the file the profile names",
		Long: `secret set writes a secret input file of the profile, SOPS-encrypted for the recipients of the
project's .sops.yaml (or --sops-config), atomically: the secret never reaches the disk in clear,
and neither the sops CLI nor a plaintext file is needed.

  aws-backup  longhorn.backup.credentialsFile: the S3 keys Longhorn backs up with. Standard
              input is the YAML mapping the file holds (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
              optional AWS_ENDPOINTS, AWS_CERT, VIRTUAL_HOSTED_STYLE, ...).
  proxmox     proxmox.tokenFile: the PVE API token USER@REALM!TOKENID=SECRET, alone or as
              "token: ..." (the file's own format).

On a terminal it prompts instead, without echoing secrets. Piping a plaintext file in encrypts
it in place: talforge secret set proxmox -p P < secrets/proxmox.sops.yaml

A file encrypted for keys this machine does not hold is never replaced; the same secret for the
same recipients is not rewritten.`,
		Example: `  talforge secret set proxmox -p profiles/tazlab.yaml
  printf 'talforge@pve!provision=%s\n' "$SECRET" | talforge secret set proxmox -p profiles/tazlab.yaml
  talforge secret set aws-backup -p profiles/tazlab.yaml < aws-keys.yaml`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: secrets.Kinds,
		RunE: func(cmd *cobra.Command, args []string) error {
			kind := args[0]
			if !slices.Contains(secrets.Kinds, kind) {
				return &flagError{fmt.Errorf("unknown secret %q: one of %s", kind, strings.Join(secrets.Kinds, ", "))}
			}

			profilePath, err := o.profilePath()
			if err != nil {
				return err
			}

			target, root, err := secretTarget(profilePath, kind)
			if err != nil {
				return err
			}

			plain, summary, err := readSecret(kind, o.in, o.errOut)
			if err != nil {
				return invalid(err)
			}
			defer clear(plain)

			cfg, _, err := generate.SOPS(root, sopsConfig, o.errOut)
			if err != nil {
				return err
			}

			wrote, err := secrets.WriteInput(cfg, target, plain)
			if err != nil {
				return err
			}

			if !wrote {
				fmt.Fprintf(o.out, "%s unchanged: it already holds %s for the same recipients\n", target, summary)

				return nil
			}

			fmt.Fprintf(o.out, "wrote %s: %s, SOPS-encrypted with the rules of %s\n", target, summary, cfg.Path)

			return nil
		},
	}

	cmd.Flags().StringVar(&sopsConfig, "sops-config", "", "SOPS creation rules to encrypt with (default: .sops.yaml at the project root)")

	return cmd
}

// secretTarget returns the file the profile names for a kind of secret, and the project root.
//
// The profile is loaded as usual; the only problems tolerated are with the fields that name
// secret input files (they do not exist yet), which is what this command is for. Then the
// field is read without the rest of the validation, and must stay inside the project.
func secretTarget(profilePath, kind string) (target, root string, err error) {
	field := secrets.FieldOf(kind)

	c, err := profile.Load(profilePath)
	if err == nil {
		for _, in := range secrets.Inputs(c) {
			if in.Kind == kind {
				return in.Path, c.Root(), nil
			}
		}

		return "", "", invalid(fmt.Errorf("%s names no %s: set it first (e.g. secrets/%s.sops.yaml)", c.File(), field, kind))
	}

	// Only problems with secret input files are tolerated: this command is how they are fixed.
	var problems profile.Problems
	if !errors.As(err, &problems) || slices.ContainsFunc(problems, func(p profile.Problem) bool {
		return !slices.ContainsFunc(secrets.Kinds, func(k string) bool { return secrets.FieldOf(k) == p.Field })
	}) {
		return "", "", err
	}

	name, err := rawField(profilePath, kind)
	if err != nil {
		return "", "", err
	}

	if !filepath.IsLocal(name) {
		return "", "", invalid(fmt.Errorf("%s: %s: %s is outside the project root; talforge writes a new secret file only inside it (e.g. secrets/%s.sops.yaml)", profilePath, field, name, kind))
	}

	root = projectRootOf(profilePath)

	return filepath.Join(root, name), root, nil
}

// rawField reads the file name of a kind of secret from a profile that does not validate.
func rawField(profilePath, kind string) (string, error) {
	data, err := os.ReadFile(profilePath)
	if err != nil {
		return "", err
	}

	var doc struct {
		Proxmox struct {
			TokenFile string `yaml:"tokenFile"`
		} `yaml:"proxmox"`
		Longhorn struct {
			Backup struct {
				CredentialsFile string `yaml:"credentialsFile"`
			} `yaml:"backup"`
		} `yaml:"longhorn"`
	}

	if err := yaml.Unmarshal(data, &doc); err != nil {
		return "", fmt.Errorf("%s: %w", profilePath, err)
	}

	name := doc.Proxmox.TokenFile
	if kind == secrets.KindAWSBackup {
		name = doc.Longhorn.Backup.CredentialsFile
	}

	if name == "" {
		return "", invalid(fmt.Errorf("%s names no %s: set it first (e.g. secrets/%s.sops.yaml)", profilePath, secrets.FieldOf(kind), kind))
	}

	return name, nil
}

// projectRootOf is profile.Cluster.Root for a profile that does not load: the parent of
// profiles/ when the profile is in one, else its directory (pkg/profile/derive.go projectRoot).
func projectRootOf(profilePath string) string {
	dir := filepath.Dir(profilePath)
	if filepath.Base(dir) == "profiles" {
		return filepath.Dir(dir)
	}

	return dir
}

// readSecret reads a kind of secret from in, prompting on prompt when in is a terminal, and
// returns the file content to encrypt and a description of it that holds no secret.
func readSecret(kind string, in io.Reader, prompt io.Writer) ([]byte, string, error) {
	tty := terminal(in)

	switch kind {
	case secrets.KindProxmox:
		var raw []byte

		var err error
		if tty != nil {
			raw, err = readHidden(tty, prompt, "PVE API token (USER@REALM!TOKENID=SECRET, not echoed): ")
		} else {
			raw, err = readAllBounded(in)
		}

		if err != nil {
			return nil, "", err
		}
		defer clear(raw)

		return proxmoxTokenFile(raw)
	default:
		if tty != nil {
			return promptAWS(tty, prompt)
		}

		raw, err := readAllBounded(in)
		if err != nil {
			return nil, "", err
		}
		defer clear(raw)

		return awsBackupFile(raw)
	}
}

// proxmoxTokenFile turns a token, alone or as the file's `token: ...`, into the file's content.
func proxmoxTokenFile(raw []byte) ([]byte, string, error) {
	token := strings.TrimSpace(string(raw))

	if strings.HasPrefix(token, "token:") {
		fields, err := secretMapping(raw)
		if err != nil {
			return nil, "", err
		}

		if len(fields) != 1 || fields["token"] == "" {
			return nil, "", errors.New("the input is a mapping, but not `token: USER@REALM!TOKENID=SECRET` alone")
		}

		token = fields["token"]
	}

	t, err := proxmox.ParseToken(token)
	if err != nil {
		return nil, "", err
	}

	plain, err := yaml.Marshal(map[string]string{"token": strings.TrimSpace(token)})
	if err != nil {
		return nil, "", err
	}

	return plain, "the API token " + t.ID, nil
}

// awsBackupFile checks S3 credentials given as the file's YAML mapping and returns the file's
// content.
func awsBackupFile(raw []byte) ([]byte, string, error) {
	fields, err := secretMapping(raw)
	if err != nil {
		return nil, "", err
	}

	for k, v := range fields {
		// Only names Longhorn reads are quoted (backuptarget.Credentials.Validate quotes an
		// unknown key): a secret pasted as a key must not be.
		if !strings.HasPrefix(k, "AWS_") && !slices.Contains([]string{backuptarget.KeyVirtualHostedStyle, "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"}, k) {
			return nil, "", errors.New("a key is not one Longhorn reads (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINTS, AWS_CERT, VIRTUAL_HOSTED_STYLE, ...; the key is not shown)")
		}

		// Longhorn refuses these ("invalid trailing newline in AWS_SECRET_ACCESS_KEY").
		if k != backuptarget.KeyCert && v != strings.TrimSpace(v) {
			return nil, "", fmt.Errorf("%s has leading or trailing whitespace or a newline, which Longhorn refuses", k)
		}
	}

	if err := backuptarget.Credentials(fields).Validate(); err != nil {
		return nil, "", err
	}

	plain, err := yaml.Marshal(fields)
	if err != nil {
		return nil, "", err
	}

	return plain, "the S3 credentials (" + strings.Join(slices.Sorted(maps.Keys(fields)), ", ") + ")", nil
}

// envName is what a key of a credentials mapping looks like; anything else is not quoted in
// errors, since a secret pasted on the wrong side of ':' becomes a key.
// Compiled on first use, not at package initialisation, to keep start-up cheap (issue 16).
var envName = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)
})

// secretMapping decodes a flat YAML mapping of scalars. Its errors name keys that look like
// variable names and never quote a value or YAML's own message, which can quote the input.
func secretMapping(raw []byte) (map[string]string, error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(raw)).Decode(&doc); err != nil {
		return nil, errors.New("the input is not a YAML mapping of KEY: value (the input is not shown)")
	}

	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("the input is not a YAML mapping of KEY: value (the input is not shown)")
	}

	m := doc.Content[0]
	out := map[string]string{}

	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]

		if k.Kind != yaml.ScalarNode || !envName().MatchString(k.Value) {
			return nil, fmt.Errorf("entry %d of the mapping has a key that is not a variable name like AWS_ACCESS_KEY_ID (not shown)", i/2+1)
		}

		if v.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("%s is not a single value", k.Value)
		}

		if _, dup := out[k.Value]; dup {
			return nil, fmt.Errorf("%s appears twice", k.Value)
		}

		out[k.Value] = v.Value
	}

	return out, nil
}

// terminal returns in as a file when it is an interactive terminal.
func terminal(in io.Reader) *os.File {
	f, ok := in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}

	return f
}

// isTerminal reports whether w is a terminal (progress shows as a live status line there).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)

	return ok && term.IsTerminal(int(f.Fd()))
}

func readAllBounded(in io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(in, secrets.MaxInputSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading standard input: %w", err)
	}

	if len(data) > secrets.MaxInputSize {
		clear(data)

		return nil, fmt.Errorf("standard input is larger than %d bytes: not a secret", secrets.MaxInputSize)
	}

	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("standard input is empty: pipe the secret in, or run on a terminal to be prompted")
	}

	return data, nil
}

// readHidden prompts and reads one line from the terminal without echoing it.
func readHidden(tty *os.File, prompt io.Writer, question string) ([]byte, error) {
	fmt.Fprint(prompt, question)

	line, err := term.ReadPassword(int(tty.Fd()))

	fmt.Fprintln(prompt)

	if err != nil {
		return nil, fmt.Errorf("reading from the terminal: %w", err)
	}

	return line, nil
}

// readLine prompts and reads one echoed line from the terminal, a byte at a time so that
// nothing of a later hidden answer is buffered here.
func readLine(tty *os.File, prompt io.Writer, question string) (string, error) {
	fmt.Fprint(prompt, question)

	var line []byte

	b := make([]byte, 1)

	for {
		n, err := tty.Read(b)
		if n == 1 {
			if b[0] == '\n' {
				return strings.TrimSpace(string(line)), nil
			}

			line = append(line, b[0])
		}

		if err != nil {
			return "", fmt.Errorf("reading from the terminal: %w", err)
		}
	}
}

// promptAWS asks for S3 credentials on the terminal; the secret key is not echoed.
func promptAWS(tty *os.File, prompt io.Writer) ([]byte, string, error) {
	id, err := readLine(tty, prompt, backuptarget.KeyAccessKeyID+": ")
	if err != nil {
		return nil, "", err
	}

	secret, err := readHidden(tty, prompt, backuptarget.KeySecretAccessKey+" (not echoed): ")
	if err != nil {
		return nil, "", err
	}
	defer clear(secret)

	endpoints, err := readLine(tty, prompt, backuptarget.KeyEndpoints+" (Enter for AWS S3 itself): ")
	if err != nil {
		return nil, "", err
	}

	fields := map[string]string{backuptarget.KeyAccessKeyID: id, backuptarget.KeySecretAccessKey: strings.TrimSpace(string(secret))}
	if endpoints != "" {
		fields[backuptarget.KeyEndpoints] = endpoints
	}

	if err := backuptarget.Credentials(fields).Validate(); err != nil {
		return nil, "", err
	}

	plain, err := yaml.Marshal(fields)

	return plain, "the S3 credentials (" + strings.Join(slices.Sorted(maps.Keys(fields)), ", ") + ")", err
}
