package gitops

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/talforge/talforge/pkg/atomicfile"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// Compiled on first use, not at package initialisation, to keep start-up cheap (issue 16).
var (
	pemPrivateKeyRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----`)
	})
	ageIdentityRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`AGE-SECRET-KEY-1[0-9A-Z]{20,}`)
	})
	// Field names are matched whatever their case: the secrets bundle spells them in lower
	// case (secretboxencryptionsecret, aescbcencryptionsecret, bootstraptoken), machine configs
	// in camel case, kubeconfigs with dashes.
	secretKeyRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile("(?i)" + sopsfile.SecretFieldsRegex)
	})

	// A URL whose user info holds a password (https://user:pass@host), as proxy and registry
	// URLs carry them. Longhorn's s3://bucket@region/ has no password and does not match.
	urlPasswordRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@'"]+:[^/\s@'"]+@[^\s'"]`)
	})
)

// awsSecretAccessKey is the credential field of Longhorn's S3 Secret, whatever its case.
const awsSecretAccessKey = "aws_secret_access_key"

// Leak is plaintext secret material found in output meant for Git.
type Leak struct {
	File, What string
	Line       int
}

func (l Leak) String() string {
	if l.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", l.File, l.Line, l.What)
	}

	return fmt.Sprintf("%s: %s", l.File, l.What)
}

// LeakError lists every leak found; nothing was written.
type LeakError []Leak

func (e LeakError) Error() string {
	lines := make([]string, len(e))
	for i, l := range e {
		lines[i] = l.String()
	}

	return "refusing to write plaintext secrets under the output directory (nothing was written):\n  " + strings.Join(lines, "\n  ")
}

// CheckLeaks scans files as they would be written and reports plaintext private keys (PEM,
// also base64-wrapped), age identities, bootstrap tokens, AWS secret keys, URLs with a
// password and, in files that are SOPS-encrypted or redacted, any secret field left in
// plaintext (field names matched whatever their case).
func CheckLeaks(files []File) error {
	var leaks LeakError

	for _, f := range files {
		leaks = append(leaks, scan(f)...)
	}

	if len(leaks) > 0 {
		return leaks
	}

	return nil
}

// CheckPrintable scans text talforge is about to print (a redacted config diff, a plan) as it
// scans a redacted view: what is shown must hold no private key, token, password or secret
// field in clear. what names the text in the error.
func CheckPrintable(what string, text []byte) error {
	leaks := scan(File{Path: what, Data: text, Redacted: true})
	if len(leaks) == 0 {
		return nil
	}

	lines := make([]string, len(leaks))
	for i, l := range leaks {
		lines[i] = l.String()
	}

	return fmt.Errorf("refusing to print %s, it would show secrets (nothing was printed):\n  %s", what, strings.Join(lines, "\n  "))
}

// WriteSecret encrypts plain for path with rule and writes it atomically (mode 0644: the
// content is encrypted) unless the file already holds the same content for the same
// recipients, as sopsfile's Rule.WriteFile, but leak-checks the encrypted bytes before they
// touch the disk. It reports whether it wrote. For files written outside a Writer run: the
// kubeconfig and talosconfig that bootstrap stores.
func WriteSecret(rule *sopsfile.Rule, path string, plain []byte) (bool, error) {
	same, err := rule.UpToDate(path, plain)
	if err != nil {
		return false, err
	}

	if same {
		return false, nil
	}

	enc, err := rule.Encrypt(path, plain)
	if err != nil {
		return false, err
	}

	if err := CheckLeaks([]File{{Path: filepath.Base(path), Data: enc, Secret: true}}); err != nil {
		return false, err
	}

	return true, atomicfile.Write(path, enc, 0o644)
}

// findBootstrapToken returns the offset of a Kubernetes/Talos bootstrap token
// ([a-z0-9]{6}.[a-z0-9]{16}, not part of a longer dotted name), or -1. A hand-written scan:
// the equivalent regular expression has no literal prefix and backtracks through every byte
// of every file.
func findBootstrapToken(data []byte) int {
	isTok := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	isWord := func(c byte) bool { return isTok(c) || c == '.' }

	for i := 0; ; {
		j := bytes.IndexByte(data[i:], '.')
		if j < 0 {
			return -1
		}

		dot := i + j
		i = dot + 1

		start, end := dot-6, dot+17
		if start < 0 || end > len(data) {
			continue
		}

		ok := (start == 0 || !isWord(data[start-1])) && (end == len(data) || !isWord(data[end]))
		for k := start; ok && k < end; k++ {
			ok = k == dot || isTok(data[k])
		}

		if ok {
			return start
		}
	}
}

func lineAt(data []byte, offset int) int { return 1 + bytes.Count(data[:offset], []byte("\n")) }

func scan(f File) []Leak {
	var leaks []Leak

	add := func(what string, offset int) {
		leaks = append(leaks, Leak{File: f.Path, What: what, Line: lineAt(f.Data, offset)})
	}

	if loc := pemPrivateKeyRE().FindIndex(f.Data); loc != nil {
		add("PEM private key", loc[0])
	}

	if loc := ageIdentityRE().FindIndex(f.Data); loc != nil {
		add("age identity (AGE-SECRET-KEY-1…)", loc[0])
	}

	if at := findBootstrapToken(f.Data); at >= 0 {
		add("bootstrap token", at)
	}

	if at := findURLPassword(f.Data); at >= 0 {
		add("URL with a password (scheme://user:password@host)", at)
	}

	for _, loc := range findBase64PEMs(f.Data) {
		enc := f.Data[loc[0]:loc[1]]
		dec := make([]byte, base64.StdEncoding.DecodedLen(len(enc)))

		n, _ := base64.StdEncoding.Decode(dec, enc)
		if pemPrivateKeyRE().Match(dec[:n]) {
			add("base64-encoded PEM private key", loc[0])

			break
		}
	}

	return append(leaks, scanFields(f)...)
}

// base64PEM is the base64 of "-----BEGIN": a PEM block inside a base64 field, as Talos stores
// its certificates.
const base64PEM = "LS0tLS1CRUdJTi"

// findBase64PEMs is regexp `LS0tLS1CRUdJTi[A-Za-z0-9+/]+={0,2}`'s FindAllIndex, hand-written:
// the regexp engine runs its slowest matcher over every certificate of every node (85% of the
// leak check of a 1,000-node review view), where a literal search and a run of base64
// characters do.
func findBase64PEMs(data []byte) [][]int {
	isB64 := func(c byte) bool {
		return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/'
	}

	var locs [][]int

	for off := 0; ; {
		i := bytes.Index(data[off:], []byte(base64PEM))
		if i < 0 {
			return locs
		}

		start := off + i
		end := start + len(base64PEM)

		for end < len(data) && isB64(data[end]) {
			end++
		}

		if end == start+len(base64PEM) { // the regexp needs one base64 character after it
			off = start + 1

			continue
		}

		for pad := 0; pad < 2 && end < len(data) && data[end] == '='; pad++ {
			end++
		}

		locs = append(locs, []int{start, end})
		off = end
	}
}

// findURLPassword is urlPasswordRE().FindIndex(data)[0] (-1 for none), run only on the lines that
// hold "://": a match cannot span lines (its classes exclude whitespace) and must contain
// "://", and the regexp engine, which has no such literal to skip to, would otherwise try every
// word boundary of a large file.
func findURLPassword(data []byte) int {
	for off := 0; off < len(data); {
		i := bytes.Index(data[off:], []byte("://"))
		if i < 0 {
			return -1
		}

		start := off + i
		for start > 0 && data[start-1] != '\n' {
			start--
		}

		end := off + i
		for end < len(data) && data[end] != '\n' {
			end++
		}

		if loc := urlPasswordRE().FindIndex(data[start:end]); loc != nil {
			return start + loc[0]
		}

		off = end
	}

	return -1
}

// scanFields reports secret-named fields whose value is plaintext, line by line (YAML or JSON):
// in SOPS and redacted files every field SecretFieldsRegex names must be encrypted, redacted
// or empty; anywhere, an AWS secret key must not appear in plaintext. Multi-line values are
// covered by the PEM patterns above.
func scanFields(f File) []Leak {
	var leaks []Leak

	checkNames := f.Secret || f.Redacted
	line := 0
	// A view of a thousand nodes repeats a few hundred field names 200,000 times: each name
	// goes through the regexp once.
	secretName := map[string]bool{}

	for rest := f.Data; len(rest) > 0; {
		line++

		var l []byte
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			l, rest = rest[:i], rest[i+1:]
		} else {
			l, rest = rest, nil
		}

		key, val, ok := splitField(l)
		if ok && plaintextValue(val) {
			switch {
			case bytes.EqualFold(key, []byte(awsSecretAccessKey)):
				leaks = append(leaks, Leak{File: f.Path, Line: line, What: "plaintext " + string(key)})
			case checkNames && isSecretName(secretName, key):
				leaks = append(leaks, Leak{File: f.Path, Line: line, What: fmt.Sprintf("plaintext %q in a file that must not show secrets", key)})
			}
		}
	}

	return leaks
}

func isSecretName(seen map[string]bool, key []byte) bool {
	secret, ok := seen[string(key)]
	if !ok {
		secret = secretKeyRE().Match(key)
		seen[string(key)] = secret
	}

	return secret
}

// splitField splits a YAML "key: value" line or a JSON "key": "value" member, also as a line
// of a unified diff ("+    key: value") and as a sequence item ("- key: value"). Key and value
// share line's memory: a view has hundreds of thousands of lines.
func splitField(line []byte) (key, val []byte, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i < 0 {
		return nil, nil, false
	}

	k := bytes.TrimLeft(line[:i], "+- \t")
	k = bytes.TrimSpace(k)
	k = bytes.Trim(k, `"'`)

	if len(k) == 0 || len(k) > 64 || bytes.ContainsAny(k, " \t{}[],") {
		return nil, nil, false
	}

	v := bytes.TrimSpace(line[i+1:])
	v = bytes.TrimSuffix(v, []byte(","))
	v = bytes.Trim(v, `"'`)

	return k, v, true
}

func plaintextValue(v []byte) bool {
	switch string(v) {
	case "", RedactedMarker, "|", ">", "|-", ">-", "{}", "[]", "null", "~":
		return false
	}

	return !bytes.HasPrefix(v, []byte("ENC[AES256_GCM,"))
}
