package sopsfile

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/getsops/sops/v3"
	yaml "go.yaml.in/yaml/v4"
)

// encryptedPrefix starts every value sops encrypted (aes/cipher.go, Cipher.Encrypt).
const encryptedPrefix = "ENC[AES256_GCM,"

// PlaintextError says that a .sops.yaml creation rule leaves values of a file talforge
// encrypts in clear: encrypted_regex, unencrypted_regex, encrypted_suffix, unencrypted_suffix
// and the comment regexes select what sops encrypts, and talforge's files (the secrets bundle,
// talosconfig, kubeconfig, machine configs) must be encrypted whole.
type PlaintextError struct {
	// ConfigPath is the .sops.yaml.
	ConfigPath string
	// Rule is the rule's position in creation_rules, from 1; 0 when it could not be told.
	Rule int
	// PathRegex is the rule's path_regex.
	PathRegex string
	// Setting is what makes sops leave values in clear, e.g. `encrypted_regex: ^(data)$`.
	Setting string
	// File is the file being encrypted.
	File string
	// Fields are the values left in clear, as key paths (at most five).
	Fields []string
}

func (e *PlaintextError) Error() string {
	rule := "the creation rule"
	if e.Rule > 0 {
		rule = fmt.Sprintf("creation rule %d (path_regex: %s)", e.Rule, e.PathRegex)
	}

	setting, _, _ := strings.Cut(e.Setting, ":")

	return fmt.Sprintf("%s: %s would leave %s of %s in clear (%s): talforge encrypts its files whole, so remove %s from that rule, "+
		"or add a rule before it for talforge's files (path_regex: \\.sops\\.ya?ml$|\\.enc$, as `talforge init` writes) "+
		"with none of encrypted_regex, unencrypted_regex, encrypted_suffix, unencrypted_suffix, encrypted_comment_regex, unencrypted_comment_regex",
		e.ConfigPath, rule, strings.Join(e.Fields, ", "), e.File, e.Setting, setting)
}

// checkEncrypted returns a *PlaintextError if any value of an encrypted tree was left in
// clear by the rule's settings (sops.go, Tree.shouldBeEncrypted): encrypted values are
// strings with encryptedPrefix, empty values stay empty, comments are not values.
func (r *Rule) checkEncrypted(path string, branches sops.TreeBranches) error {
	var clear []string

	for _, b := range branches {
		plaintextLeaves(b, nil, &clear)
	}

	if len(clear) == 0 {
		return nil
	}

	e := &PlaintextError{ConfigPath: r.ConfigPath, File: path, Setting: r.setting()}

	if len(clear) > 5 {
		clear = append(clear[:5], fmt.Sprintf("and %d more", len(clear)-5))
	}

	e.Fields = clear
	e.Rule, e.PathRegex = ruleNumber(r.ConfigPath, path)

	return e
}

func plaintextLeaves(v any, path []string, out *[]string) {
	switch v := v.(type) {
	case sops.TreeBranch:
		for _, item := range v {
			if key, ok := item.Key.(string); ok {
				plaintextLeaves(item.Value, append(path, key), out)
			}
		}
	case []any:
		for _, x := range v {
			plaintextLeaves(x, path, out)
		}
	case nil, sops.Comment:
	case string:
		if v != "" && !strings.HasPrefix(v, encryptedPrefix) {
			*out = append(*out, strings.Join(path, "."))
		}
	default:
		// ints, floats, booleans and times are encrypted to strings; one that is not is clear.
		*out = append(*out, strings.Join(path, "."))
	}
}

// setting names the rule's setting that selects what is encrypted (sops allows one).
func (r *Rule) setting() string {
	m := r.metadata()

	for _, s := range []struct{ name, value string }{
		{"encrypted_regex", m.EncryptedRegex},
		{"unencrypted_regex", m.UnencryptedRegex},
		{"encrypted_suffix", m.EncryptedSuffix},
		{"unencrypted_suffix", m.UnencryptedSuffix},
		{"encrypted_comment_regex", m.EncryptedCommentRegex},
		{"unencrypted_comment_regex", m.UnencryptedCommentRegex},
	} {
		if s.value != "" {
			return s.name + ": " + s.value
		}
	}

	return "no encryption setting"
}

// ruleNumber finds which creation rule of the .sops.yaml at conf covers file, as sops does
// (config/config.go, parseCreationRuleForFile: the first rule without path_regex or whose
// path_regex matches the path relative to the configuration's directory), to name it in
// errors. It returns 0 when it cannot tell.
func ruleNumber(conf, file string) (int, string) {
	data, err := os.ReadFile(conf)
	if err != nil {
		return 0, ""
	}

	var c struct {
		CreationRules []struct {
			PathRegex string `yaml:"path_regex"`
		} `yaml:"creation_rules"`
	}

	if yaml.Unmarshal(data, &c) != nil {
		return 0, ""
	}

	abs, err := filepath.Abs(file)
	if err != nil {
		return 0, ""
	}

	dir, err := filepath.Abs(filepath.Dir(conf))
	if err != nil {
		return 0, ""
	}

	rel := strings.TrimPrefix(abs, dir+string(filepath.Separator))

	for i, rule := range c.CreationRules {
		if rule.PathRegex == "" {
			return i + 1, ""
		}

		if re, err := regexp.Compile(rule.PathRegex); err == nil && re.MatchString(rel) {
			return i + 1, rule.PathRegex
		}
	}

	return 0, ""
}
