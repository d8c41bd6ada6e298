package sopsfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	sopsconfig "github.com/getsops/sops/v3/config"
)

// Config is the SOPS configuration whose creation rules decide who can decrypt what talforge
// writes: the project's own .sops.yaml, or one the user names explicitly. It is chosen once
// per run and never looked up from where a file is written, because whoever can put a
// .sops.yaml above an output directory (`generate --out /tmp/x` finds /tmp/.sops.yaml) would
// otherwise choose the recipients of the cluster's secrets.
//
// A Config is one run's: it reads each creation rule once (see ruleCache), the files its rules
// encrypt for the same recipients share a data key (see runKeys), and the next run's Config
// makes new ones.
type Config struct {
	// Path is the absolute path of the .sops.yaml.
	Path string

	keys  *runKeys
	rules *ruleCache // nil: sops reads the file for every rule
}

// ProjectConfig returns the project's own creation rules, root/.sops.yaml, where `talforge
// init` and `generate` write them. A .sops.yaml in a parent directory is not used: pass it
// explicitly with OpenConfig (--sops-config) if that is where the rules live.
func ProjectConfig(root string) (*Config, error) {
	path := filepath.Join(root, ConfigFileName)

	cfg, err := OpenConfig(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: the project has no %s (run `talforge init`, or pass --sops-config FILE)", ErrNoRules, path)
	}

	return cfg, err
}

// OpenConfig returns the creation rules in the SOPS configuration file at path.
func OpenConfig(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}

	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("SOPS configuration: %w", err)
	}

	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("SOPS configuration %s is not a regular file", abs)
	}

	// Parses the whole file, so a broken one fails here rather than at the first encryption.
	if _, err := sopsconfig.LoadStoresConfig(abs); err != nil {
		return nil, fmt.Errorf("SOPS configuration %s: %w", abs, err)
	}

	return &Config{Path: abs, keys: &runKeys{}, rules: newRuleCache(abs)}, nil
}

// RuleFor returns this configuration's creation rule for the file at path. sops matches a
// rule's path_regex against the path relative to the configuration's directory when the file
// is below it, else against the absolute path (sops config/config.go parseCreationRuleForFile).
func (c *Config) RuleFor(path string) (*Rule, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}

	var r *Rule

	if i, ok := c.rules.index(abs); ok {
		r, err = c.rules.rule(i, abs, path)
	} else {
		r, err = ruleIn(c.Path, abs, path)
	}

	if err != nil {
		return nil, err
	}

	r.keys = c.keys

	return r, nil
}

// WriteFile is the package-level WriteFile with the creation rule of this configuration.
func (c *Config) WriteFile(path string, plain []byte) (bool, error) {
	r, err := c.RuleFor(path)
	if err != nil {
		return false, err
	}

	return r.WriteFile(path, plain)
}
