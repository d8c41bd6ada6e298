package gitops

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/talforge/talforge/pkg/sopsfile"
)

var (
	pemPrivateKeyRE = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----`)
	ageIdentityRE   = regexp.MustCompile(`AGE-SECRET-KEY-1[0-9A-Z]{20,}`)
	// Kubernetes/Talos bootstrap tokens ([a-z0-9]{6}.[a-z0-9]{16}).
	bootstrapTokenRE = regexp.MustCompile(`(^|[^a-z0-9.])[a-z0-9]{6}\.[a-z0-9]{16}($|[^a-z0-9.])`)
	// base64 of "-----BEGIN": a PEM block inside a base64 field, as Talos stores its CAs.
	base64PEMRE      = regexp.MustCompile(`LS0tLS1CRUdJTi[A-Za-z0-9+/]+={0,2}`)
	secretKeyRE      = regexp.MustCompile(sopsfile.MachineConfigSecretsRegex)
	awsSecretKeyName = regexp.MustCompile(`(?i)^aws_secret_access_key$`)
)

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
// also base64-wrapped), age identities, bootstrap tokens, AWS secret keys and, in files that
// are meant to be SOPS-encrypted, any secret field left unencrypted.
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

func scan(f File) []Leak {
	var leaks []Leak

	add := func(what string, offset int) {
		leaks = append(leaks, Leak{File: f.Path, What: what, Line: 1 + bytes.Count(f.Data[:offset], []byte("\n"))})
	}

	if loc := pemPrivateKeyRE.FindIndex(f.Data); loc != nil {
		add("PEM private key", loc[0])
	}

	if loc := ageIdentityRE.FindIndex(f.Data); loc != nil {
		add("age identity (AGE-SECRET-KEY-1…)", loc[0])
	}

	if loc := bootstrapTokenRE.FindIndex(f.Data); loc != nil {
		add("bootstrap token", loc[0])
	}

	for _, loc := range base64PEMRE.FindAllIndex(f.Data, -1) {
		enc := f.Data[loc[0]:loc[1]]
		dec := make([]byte, base64.StdEncoding.DecodedLen(len(enc)))

		n, _ := base64.StdEncoding.Decode(dec, enc)
		if pemPrivateKeyRE.Match(dec[:n]) {
			add("base64-encoded PEM private key", loc[0])

			break
		}
	}

	if strings.HasSuffix(f.Path, ".yaml") || strings.HasSuffix(f.Path, ".yml") {
		leaks = append(leaks, scanYAMLFields(f)...)
	}

	return leaks
}

// scanYAMLFields reports secret-named fields whose value is plaintext: in SOPS files every
// field MachineConfigSecretsRegex names must be encrypted; anywhere, an AWS secret key.
func scanYAMLFields(f File) []Leak {
	var leaks []Leak

	dec := yaml.NewDecoder(bytes.NewReader(f.Data))

	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			return leaks // end of input, or not YAML: the byte patterns above still apply
		}

		walk(&doc, func(key, val *yaml.Node) {
			if val.Kind != yaml.ScalarNode || val.Value == "" || strings.HasPrefix(val.Value, "ENC[") {
				return
			}

			switch {
			case awsSecretKeyName.MatchString(key.Value):
				leaks = append(leaks, Leak{File: f.Path, Line: val.Line, What: "plaintext " + key.Value})
			case f.Secret && secretKeyRE.MatchString(key.Value):
				leaks = append(leaks, Leak{File: f.Path, Line: val.Line, What: fmt.Sprintf("plaintext %q in a file that must be encrypted", key.Value)})
			}
		})
	}
}

func walk(n *yaml.Node, visit func(key, val *yaml.Node)) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			walk(c, visit)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "sops" {
				continue // SOPS metadata: encrypted data keys and MAC
			}

			visit(n.Content[i], n.Content[i+1])
			walk(n.Content[i+1], visit)
		}
	}
}
