package longhorn

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/talforge/talforge/pkg/profile"
)

// credentialKeys are the keys Longhorn's S3 backup store reads from the credential Secret.
var credentialKeys = map[string]bool{
	"AWS_ACCESS_KEY_ID": true, "AWS_SECRET_ACCESS_KEY": true, "AWS_ENDPOINTS": true, "AWS_CERT": true,
	"AWS_IAM_ROLE_ARN": true, "VIRTUAL_HOSTED_STYLE": true, "HTTP_PROXY": true, "HTTPS_PROXY": true, "NO_PROXY": true,
}

// credentialsSecret builds the S3 credential Secret from the sops-encrypted credentials
// file, decrypted in memory by decrypt; nothing is written anywhere. Errors name the file
// and key, never a value.
func credentialsSecret(c *profile.Cluster, decrypt func(string) ([]byte, error)) (*corev1.Secret, error) {
	b := c.Longhorn.Backup
	path := c.Resolve(b.CredentialsFile)
	plain, err := decrypt(path)
	if err != nil {
		return nil, fmt.Errorf("longhorn.backup.credentialsFile: %w", err)
	}
	defer clear(plain)
	// Bound the decoding first: yaml.Unmarshal into a map expands every alias.
	if err := profile.CheckYAML(path, plain); errors.Is(err, profile.ErrTooLarge) {
		return nil, fmt.Errorf("longhorn.backup.credentialsFile: the decrypted content: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(plain, &doc); err != nil {
		// yaml errors may quote the offending text: do not pass them on.
		return nil, fmt.Errorf("%s: the decrypted content is not a YAML mapping of AWS_* keys (run `sops edit %s`)", path, b.CredentialsFile)
	}
	data := map[string][]byte{}
	for _, k := range sortedKeys(doc) {
		if !credentialKeys[k] {
			return nil, fmt.Errorf("%s: unknown key %s; Longhorn reads only %s", path, k, strings.Join(sortedKeys(credentialKeys), ", "))
		}
		var s string
		switch v := doc[k].(type) {
		case string:
			s = v
		case bool:
			s = strconv.FormatBool(v)
		case int:
			s = strconv.Itoa(v)
		default:
			return nil, fmt.Errorf("%s: %s must be a string", path, k)
		}
		// Longhorn's webhook refuses these ("credential validation error(s): invalid
		// trailing newline in AWS_SECRET_ACCESS_KEY"); a block scalar adds one silently.
		if s != strings.TrimSpace(s) && k != "AWS_CERT" {
			return nil, fmt.Errorf("%s: %s has leading or trailing whitespace or a newline, which Longhorn refuses; remove it with `sops edit %s` (use a plain quoted string, not a | block)", path, k, b.CredentialsFile)
		}
		data[k] = []byte(s)
	}
	if len(data["AWS_IAM_ROLE_ARN"]) == 0 {
		for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
			if len(data[k]) == 0 {
				return nil, fmt.Errorf("%s: %s is missing or empty (Longhorn needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for S3)", path, k)
			}
		}
	}
	return &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      b.CredentialSecret,
			Namespace: Namespace,
			Labels:    map[string]string{ManagedByLabel: ManagedBy},
		},
		Type: corev1.SecretTypeOpaque,
		Data: data,
	}, nil
}

func sameSecretData(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// CredentialsManifest is the S3 credential Secret as a manifest, for a tool that applies it
// in place of talforge (a Cluster API ClusterResourceSet); it holds the keys in clear, so
// whoever writes it must encrypt it.
func CredentialsManifest(c *profile.Cluster, decrypt func(string) ([]byte, error)) ([]byte, error) {
	s, err := credentialsSecret(c, decrypt)
	if err != nil {
		return nil, err
	}

	return sigsyaml.Marshal(s)
}
