package longhorn

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// ValueChange is one Helm value that a Helm upgrade would change: its dotted path, the
// value in the installed release's user-supplied values and the one talforge would pass
// ("(unset)" when absent on that side).
type ValueChange struct {
	Path    string `json:"path"`
	Live    string `json:"live"`
	Planned string `json:"planned"`
}

func (c ValueChange) String() string {
	return fmt.Sprintf("%s: %s -> %s", c.Path, c.Live, c.Planned)
}

const unsetValue = "(unset)"

// hiddenValue stands for a value under a key that names a credential: Helm values are
// free-form, and a chart option such as privateRegistry.registryPasswd holds one.
const hiddenValue = "(hidden)"

// Compiled on first use, not at package initialisation, to keep start-up cheap (issue 16).
var credentialKey = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?i)(passw|token|secretkey|accesskey|privatekey|apikey)`)
})

// ValuesDiff lists the values that differ between the installed release's user-supplied
// values (Helm's release Config) and the values a Helm upgrade would pass, sorted by path.
// Maps are compared key by key; lists and scalars as a whole, as Helm replaces them.
func ValuesDiff(live, planned map[string]any) []ValueChange {
	lf, pf := map[string]string{}, map[string]string{}
	flattenValues("", normalizeValues(live), lf)
	flattenValues("", normalizeValues(planned), pf)
	var out []ValueChange
	for path, pv := range pf {
		if lv, ok := lf[path]; !ok {
			out = append(out, ValueChange{Path: path, Live: unsetValue, Planned: pv})
		} else if lv != pv {
			out = append(out, ValueChange{Path: path, Live: lv, Planned: pv})
		}
	}
	for path, lv := range lf {
		if _, ok := pf[path]; !ok {
			out = append(out, ValueChange{Path: path, Live: lv, Planned: unsetValue})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	for i, c := range out {
		if credentialKey().MatchString(c.Path[strings.LastIndex(c.Path, ".")+1:]) {
			out[i].Live, out[i].Planned = hide(c.Live), hide(c.Planned)
		}
	}
	return out
}

func hide(v string) string {
	if v == unsetValue {
		return v
	}
	return hiddenValue
}

// normalizeValues round-trips v through JSON, so that values read from a release (float64
// numbers, []any) and values rendered from the profile (int, []string) compare equal.
func normalizeValues(v map[string]any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var n any
	if json.Unmarshal(b, &n) != nil {
		return v
	}
	return n
}

// flattenValues writes every leaf of v under its dotted path, JSON-encoded; an empty map is
// a leaf of its own ({}), as it is a value a user can set.
func flattenValues(prefix string, v any, out map[string]string) {
	if m, ok := v.(map[string]any); ok && len(m) > 0 {
		for k, sub := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flattenValues(p, sub, out)
		}
		return
	}
	if prefix == "" {
		return // no values at all
	}
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(fmt.Sprint(v))
	}
	out[prefix] = string(b)
}
