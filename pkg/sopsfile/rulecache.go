package sopsfile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	sopsconfig "github.com/getsops/sops/v3/config"
	"gopkg.in/yaml.v3"
)

// ruleCache loads each creation rule of one Config once, rather than once per file: sops reads
// and parses the whole .sops.yaml, compiles its regular expressions and parses every recipient
// for each file it is asked about (config.LoadCreationRuleForFile), a tenth of the CPU time of
// a 1,000-node generate (issue 16).
//
// Which rule applies to a path is decided as sops decides it (config.parseCreationRuleForFile):
// the first creation rule whose path_regex is empty or matches the path relative to the
// configuration's directory (the absolute path, for a file outside it). What the rule is —
// recipients, key groups, what to encrypt — is still sops's own reading of the file, loaded for
// the first path that selects it.
type ruleCache struct {
	conf     string           // the .sops.yaml, absolute
	snapshot []byte           // its content when the Config was opened
	match    []*regexp.Regexp // each creation rule's path_regex, in order; nil matches any path

	mu     sync.Mutex
	loaded map[int]*sopsconfig.Config // by index in match
}

// newRuleCache reads the rules' path_regex from the .sops.yaml at conf (absolute), or returns
// nil when it cannot: then every file's rule is sops's reading of the file, as without a cache.
func newRuleCache(conf string) *ruleCache {
	data, err := os.ReadFile(conf)
	if err != nil {
		return nil
	}

	var file struct {
		CreationRules []struct {
			PathRegex string `yaml:"path_regex"`
		} `yaml:"creation_rules"`
	}

	if yaml.Unmarshal(data, &file) != nil || len(file.CreationRules) == 0 {
		return nil
	}

	c := &ruleCache{conf: conf, snapshot: data, loaded: map[int]*sopsconfig.Config{}}

	for _, r := range file.CreationRules {
		if r.PathRegex == "" {
			c.match = append(c.match, nil)

			continue
		}

		re, err := regexp.Compile(r.PathRegex)
		if err != nil {
			return nil // sops reports it, naming the file
		}

		c.match = append(c.match, re)
	}

	return c
}

// index is the creation rule sops selects for the file at abs, if any.
func (c *ruleCache) index(abs string) (int, bool) {
	if c == nil {
		return 0, false
	}

	rel := strings.TrimPrefix(abs, filepath.Dir(c.conf)+string(filepath.Separator))

	for i, re := range c.match {
		if re == nil || re.MatchString(rel) {
			return i, true
		}
	}

	return 0, false
}

// rule returns creation rule i, which the file at abs (path as given) selects, loading it
// through sops the first time. A .sops.yaml that changed since the Config was opened is an
// error: the rules already loaded are the old file's.
func (c *ruleCache) rule(i int, abs, path string) (*Rule, error) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if conf := c.loaded[i]; conf != nil {
		return &Rule{ConfigPath: c.conf, conf: conf}, nil
	}

	r, err := ruleIn(c.conf, abs, path)
	if err != nil {
		return nil, err
	}

	if now, err := os.ReadFile(c.conf); err != nil || !bytes.Equal(now, c.snapshot) {
		return nil, fmt.Errorf("%s changed during the run; run again", c.conf)
	}

	c.loaded[i] = r.conf

	return r, nil
}
