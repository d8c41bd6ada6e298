package proxmox

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/talforge/talforge/pkg/profile"
)

// EnvToken names the environment variable that overrides proxmox.tokenFile.
const EnvToken = "TALFORGE_PVE_TOKEN"

// Token is a PVE API token "USER@REALM!TOKENID=SECRET". Printing it in any form (%v, %+v,
// %#v, %s, %q, JSON) shows only the id: the secret is never written anywhere.
type Token struct {
	// ID is USER@REALM!TOKENID.
	ID     string
	secret string
}

// Compiled on first use, not at package initialisation, to keep start-up cheap (issue 16).
var rxTokenID = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[^\s@!=]+@[A-Za-z0-9.\-_]+![A-Za-z][A-Za-z0-9.\-_]*$`)
})

// ParseToken parses USER@REALM!TOKENID=SECRET. The id ends at the first '=' (none of its parts
// may contain one), and the secret, a UUID that PVE generates, holds no '=' or space either.
// Errors never quote the input: until the id has parsed, nobody knows where the secret starts
// (a stray '=' or a space in place of '=' moves it into the "id"), so they describe what is
// wrong instead; after, they name the id only.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)

	id, secret, found := strings.Cut(s, "=")
	if !found {
		hint := ""
		if strings.ContainsAny(s, " \t") {
			hint = "; a space separates the id from the secret where '=' belongs"
		}

		return Token{}, fmt.Errorf("API token: expected USER@REALM!TOKENID=SECRET, found no '=' before the secret%s (the input is not shown)", hint)
	}

	if !rxTokenID().MatchString(id) {
		return Token{}, fmt.Errorf("API token: the part before the first '=' is not USER@REALM!TOKENID (e.g. talforge@pve!provision): %s (the input is not shown)", idProblem(id))
	}

	switch {
	case secret == "":
		return Token{}, fmt.Errorf("API token %s: the secret after '=' is empty", id)
	case strings.ContainsAny(secret, " \t\r\n"):
		return Token{}, fmt.Errorf("API token %s: the secret after '=' contains spaces", id)
	case strings.Contains(secret, "="):
		return Token{}, fmt.Errorf("API token %s: the secret after '=' contains another '=' (a PVE token secret is a UUID: is there a stray '=' at its end?)", id)
	}

	return Token{ID: id, secret: secret}, nil
}

// idProblem says what is wrong with a token id without quoting any of it.
func idProblem(id string) string {
	user, rest, hasAt := strings.Cut(id, "@")
	_, tokenID, hasBang := strings.Cut(rest, "!")

	switch {
	case strings.ContainsAny(id, " \t\r\n"):
		return "it contains a space (is there a space where '=' belongs?)"
	case id == "":
		return "it is empty"
	case !hasAt || user == "":
		return "it has no USER@ part"
	case !hasBang:
		return "it has no !TOKENID part"
	case tokenID == "":
		return "the TOKENID after '!' is empty"
	default:
		return "the realm or the TOKENID has a character PVE does not allow (letters, digits, '.', '-', '_'; a TOKENID starts with a letter)"
	}
}

// NewToken builds a token from its parts.
func NewToken(id, secret string) (Token, error) { return ParseToken(id + "=" + secret) }

func (t Token) String() string { return t.ID + "=<redacted>" }

// GoString keeps %#v from printing the secret field.
func (t Token) GoString() string {
	return "proxmox.Token{ID:" + strconv.Quote(t.ID) + ", secret:<redacted>}"
}

// Format implements fmt.Formatter so that every verb prints the redacted form.
func (t Token) Format(f fmt.State, verb rune) {
	switch verb {
	case 'q':
		_, _ = io.WriteString(f, strconv.Quote(t.String()))
	default:
		if verb == 'v' && f.Flag('#') {
			_, _ = io.WriteString(f, t.GoString())
			return
		}

		_, _ = io.WriteString(f, t.String())
	}
}

// MarshalJSON writes the redacted form.
func (t Token) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(t.String())), nil }

// MarshalYAML writes the redacted form.
func (t Token) MarshalYAML() (any, error) { return t.String(), nil }

// Decrypter returns the plaintext of a SOPS-encrypted file (pkg/sopsfile.DecryptFile).
type Decrypter func(path string) ([]byte, error)

// ResolveToken finds the API token: $TALFORGE_PVE_TOKEN if set, else the `token` key of the
// SOPS-encrypted proxmox.tokenFile. It returns where the token came from (for messages).
func ResolveToken(c *profile.Cluster, getenv func(string) string, decrypt Decrypter) (Token, string, error) {
	if v := getenv(EnvToken); v != "" {
		t, err := ParseToken(v)
		if err != nil {
			return Token{}, "", fmt.Errorf("$%s: %w", EnvToken, err)
		}

		return t, "$" + EnvToken, nil
	}

	if c.Proxmox == nil || c.Proxmox.TokenFile == "" {
		return Token{}, "", fmt.Errorf("%s: proxmox.tokenFile: no API token: set proxmox.tokenFile to a SOPS-encrypted file "+
			"with `token: USER@REALM!TOKENID=SECRET`, or export %s", c.File(), EnvToken)
	}

	path := c.Resolve(c.Proxmox.TokenFile)
	if decrypt == nil {
		return Token{}, "", fmt.Errorf("%s: cannot decrypt: no SOPS decrypter configured", path)
	}

	plain, err := decrypt(path)
	if err != nil {
		return Token{}, "", fmt.Errorf("proxmox.tokenFile %s: %w", path, err)
	}

	var doc struct {
		Token string `yaml:"token"`
	}
	if err := yaml.Unmarshal(plain, &doc); err != nil {
		return Token{}, "", fmt.Errorf("proxmox.tokenFile %s: not a YAML mapping (expected `token: USER@REALM!TOKENID=SECRET`)", path)
	}

	if doc.Token == "" {
		return Token{}, "", fmt.Errorf("proxmox.tokenFile %s: key `token` is missing or empty (expected `token: USER@REALM!TOKENID=SECRET`)", path)
	}

	t, err := ParseToken(doc.Token)
	if err != nil {
		return Token{}, "", fmt.Errorf("proxmox.tokenFile %s: %w", path, err)
	}

	return t, path, nil
}

// TLSConfig returns the client TLS configuration: verification on with the system roots, or
// with the CA bundle in caFile; insecure (an explicit choice) disables verification.
func TLSConfig(caFile string, insecure bool) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if insecure {
		cfg.InsecureSkipVerify = true // explicit opt-in (--insecure / proxmox.insecureSkipVerify)
		return cfg, nil
	}

	if caFile == "" {
		return cfg, nil
	}

	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("proxmox CA file: %w", err)
	}

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("proxmox CA file %s: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)", caFile)
	}

	cfg.RootCAs = pool

	return cfg, nil
}
