package adopt

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/release"

	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
)

// findLonghornRelease finds the release of the longhorn chart in every namespace, in Helm's
// Secrets (the helm CLI's default storage) and then in ConfigMaps (HELM_DRIVER=configmap),
// and returns its newest revision (action.Get, as `helm get values`) and the driver.
func findLonghornRelease(kubeconfig []byte) (*release.Release, string, error) {
	for _, driver := range []string{"secret", "configmap"} {
		cfg, err := longhorn.HelmConfig(kubeconfig, "", driver, nil)
		if err != nil {
			return nil, "", err
		}
		list := action.NewList(cfg)
		list.AllNamespaces, list.All = true, true
		list.SetStateMask()
		rels, err := list.Run()
		if err != nil {
			return nil, "", fmt.Errorf("list Helm releases (%s storage): %w", driver, err)
		}
		var found []*release.Release
		for _, rel := range rels {
			if rel.Chart == nil || rel.Chart.Metadata == nil || rel.Chart.Metadata.Name != longhorn.ChartName {
				continue
			}
			if rel.Info != nil && (rel.Info.Status == release.StatusUninstalled || rel.Info.Status == release.StatusUninstalling) {
				continue // `helm uninstall --keep-history` leaves its record
			}
			found = append(found, rel)
		}
		switch len(found) {
		case 0:
			continue
		case 1:
		default:
			var names []string
			for _, rel := range found {
				names = append(names, rel.Name+" in "+rel.Namespace)
			}
			slices.Sort(names)
			return nil, "", fmt.Errorf("%d Helm releases of the longhorn chart (%s): a cluster runs one Longhorn; uninstalling the stray one may delete volumes, so settle it by hand first",
				len(found), strings.Join(names, ", "))
		}
		nsCfg, err := longhorn.HelmConfig(kubeconfig, found[0].Namespace, driver, nil)
		if err != nil {
			return nil, "", err
		}
		rel, err := action.NewGet(nsCfg).Run(found[0].Name)
		if err != nil {
			return nil, "", fmt.Errorf("read Helm release %s/%s: %w", found[0].Namespace, found[0].Name, err)
		}
		return rel, driver, nil
	}
	return nil, "", fmt.Errorf("%w in any namespace (neither in Helm's Secrets nor its ConfigMaps): import describes a Longhorn installed with Helm", ErrNoLonghornRelease)
}

// splitValues are the user-supplied values split into what profile fields express and
// the rest, which goes to longhorn.values.
type splitValues struct {
	rest map[string]any

	// defaultBackupStore (chart ≥ 1.8); nil when not given
	backupTarget, credentialSecret, pollSeconds *string
	classReplicaCount                           int    // persistence.defaultClassReplicaCount
	defaultReplicaCount                         int    // defaultSettings.defaultReplicaCount
	dataPath                                    string // defaultSettings.defaultDataPath
	// owned are the other defaultSettings talforge owns (longhorn.OwnedSettings), by
	// Setting name, as the user gave them.
	owned map[string]string
	// jobSelector is persistence.recurringJobSelector.jobList when enabled.
	jobSelector string
	notes       []string
}

// ownedKeys maps the defaultSettings keys talforge sets itself (longhorn.OwnedSettings) to
// their Setting names: talforge's value wins over the user's (values.go mergeValues), so
// keeping them in longhorn.values would say something the cluster would not get.
func ownedKeys() map[string]string {
	out := map[string]string{}
	for _, s := range longhorn.OwnedSettings(&profile.Longhorn{}) {
		out[s.Key] = s.Setting
	}
	return out
}

// secretWords are the key fragments of values that hold credentials (the upstream chart's
// privateRegistry.registryPasswd; anything alike a person added).
var secretWords = []string{"passw", "token", "secretkey", "accesskey", "privatekey", "apikey"}

// splitUserValues takes release.Config apart. cfg is not modified.
func splitUserValues(cfg map[string]any) splitValues {
	s := splitValues{rest: deepCopy(cfg), owned: map[string]string{}}
	rest := s.rest
	str := func(v any) *string { x := scalarString(v); return &x }

	if v, ok := take(rest, "defaultBackupStore", "backupTarget"); ok && v != nil {
		s.backupTarget = str(v)
	}
	if v, ok := take(rest, "defaultBackupStore", "backupTargetCredentialSecret"); ok && v != nil {
		s.credentialSecret = str(v)
	}
	if v, ok := take(rest, "defaultBackupStore", "pollInterval"); ok && v != nil {
		s.pollSeconds = str(v)
	}
	// Since 1.8 the chart ignores these and longhorn-manager refuses a backup-target Setting
	// (docs/longhorn.md#backup-target); talforge refuses them in longhorn.values.
	for _, k := range []string{"backupTarget", "backupTargetCredentialSecret", "backupstorePollInterval"} {
		if v, ok := take(rest, "defaultSettings", k); ok && v != nil {
			s.notes = append(s.notes, fmt.Sprintf("the values set defaultSettings.%s (%q), which Longhorn ignores since 1.8 (the backup target is defaultBackupStore and BackupTarget \"default\"): left out of longhorn.values", k, scalarString(v)))
		}
	}
	for _, path := range [][]string{{"deletingConfirmationFlag"}, {"defaultSettings", "deletingConfirmationFlag"}} {
		if v, ok := take(rest, path...); ok {
			s.notes = append(s.notes, fmt.Sprintf("the values set %s to %v: left out of longhorn.values, talforge never sets deleting-confirmation-flag (it is the only guard that stops `helm uninstall` from deleting every volume)",
				strings.Join(path, "."), scalarString(v)))
		}
	}
	if v, ok := take(rest, "defaultSettings", "defaultReplicaCount"); ok && v != nil {
		s.defaultReplicaCount, _ = intOf(engineValue(scalarString(v)))
	}
	if v, ok := take(rest, "defaultSettings", "defaultDataPath"); ok && v != nil {
		s.dataPath = scalarString(v)
	}
	owned := ownedKeys()
	for _, k := range lhKeys(owned) {
		if k == "defaultReplicaCount" || k == "defaultDataPath" {
			continue
		}
		if v, ok := take(rest, "defaultSettings", k); ok && v != nil {
			s.owned[owned[k]] = scalarString(v)
		}
	}
	if v, ok := take(rest, "persistence", "defaultClassReplicaCount"); ok && v != nil {
		s.classReplicaCount, _ = intOf(v)
	}
	if en, _ := nested(rest, "persistence", "recurringJobSelector", "enable").(bool); en {
		if jl, ok := nested(rest, "persistence", "recurringJobSelector", "jobList").(string); ok {
			s.jobSelector = jl
		}
	}
	for _, k := range []string{"jobEnabled", "upgradeVersionCheck"} {
		if v, ok := nested(rest, "preUpgradeChecker", k).(bool); ok && !v {
			take(rest, "preUpgradeChecker", k)
			s.notes = append(s.notes, fmt.Sprintf("the values turn off preUpgradeChecker.%s: left out of longhorn.values, talforge keeps Longhorn's pre-upgrade check (the guard against unsupported upgrade paths)", k))
		}
	}
	if ns, _ := rest["namespaceOverride"].(string); ns != "" {
		s.notes = append(s.notes, fmt.Sprintf("the values set namespaceOverride=%s: Longhorn's objects are in %s, not in the release's namespace", ns, ns))
	}
	for _, p := range secretPaths(rest, nil) {
		take(rest, p...)
		s.notes = append(s.notes, fmt.Sprintf("the values hold a credential at %s: left out of the profile (it would be stored in clear); create that Secret yourself and point the chart at it by name",
			strings.Join(p, ".")))
	}
	return s
}

// secretPaths finds non-empty string values under credential-like keys.
func secretPaths(m map[string]any, prefix []string) [][]string {
	var out [][]string
	for _, k := range lhKeys(m) {
		p := append(slices.Clone(prefix), k)
		switch v := m[k].(type) {
		case map[string]any:
			out = append(out, secretPaths(v, p)...)
		case string:
			lk := strings.ToLower(k)
			if v != "" && slices.ContainsFunc(secretWords, func(w string) bool { return strings.Contains(lk, w) }) {
				out = append(out, p)
			}
		}
	}
	return out
}

// take removes the value at path from m and prunes the maps it leaves empty.
func take(m map[string]any, path ...string) (any, bool) {
	if len(path) == 0 || m == nil {
		return nil, false
	}
	if len(path) == 1 {
		v, ok := m[path[0]]
		delete(m, path[0])
		return v, ok
	}
	sub, ok := m[path[0]].(map[string]any)
	if !ok {
		return nil, false
	}
	v, ok := take(sub, path[1:]...)
	if len(sub) == 0 {
		delete(m, path[0])
	}
	return v, ok
}

// nested reads the value at path (nil when absent).
func nested(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}

// deepCopy copies a values map; numbers Helm decoded from the release record's JSON as
// float64 become int64 when whole, so the profile reads 2 rather than 2.0.
func deepCopy(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = copyValue(v)
	}
	return out
}

func copyValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return deepCopy(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = copyValue(e)
		}
		return out
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x)
		}
		return x
	default:
		return v
	}
}

// scalarString renders a value as Longhorn stores Settings: strings as they are, numbers
// without exponent.
func scalarString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case int64:
		return strconv.FormatInt(x, 10)
	case int:
		return strconv.Itoa(x)
	case map[string]any:
		b, _ := json.Marshal(x) // per-data-engine settings (chart ≥ 1.10 longhorn.multiTypeSetting)
		return string(b)
	default:
		return fmt.Sprint(x)
	}
}

func intOf(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case int64:
		return int(x), true
	case float64:
		return int(x), x == math.Trunc(x)
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(x))
		return n, err == nil
	}
	return 0, false
}

// engineValue is the v1 data engine's value of a Setting that Longhorn ≥ 1.10 may hold per
// data engine as JSON ({"v1":"3","v2":"3"}; types/setting.go DataEngineSpecific), or the
// value itself.
func engineValue(s string) string {
	var m map[string]string
	if json.Unmarshal([]byte(s), &m) != nil || len(m) == 0 {
		return s
	}
	if v, ok := m["v1"]; ok {
		return v
	}
	return m[slices.Sorted(maps.Keys(m))[0]]
}
