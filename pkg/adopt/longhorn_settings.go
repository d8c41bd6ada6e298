package adopt

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"gopkg.in/yaml.v3"
	"helm.sh/helm/v3/pkg/releaseutil"
	corev1 "k8s.io/api/core/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/talforge/talforge/pkg/longhorn"
)

// Settings that profile fields or LonghornImport.DataPath carry.
var settingsInFields = map[string]bool{
	"default-replica-count": true, // longhorn.replicaCount
	"default-data-path":     true, // DataPath
}

// settings fills Settings: the live Settings that differ from the installed version's
// built-in default and that the release's values do not set. Those the values set are in
// longhorn.values, and longhorn-manager re-applies them on every change of the
// longhorn-default-setting ConfigMap and every manager start
// (docs/longhorn.md#default-settings).
func (r *lhReader) settings() {
	rendered := releaseDefaultSettings(r.rel.Manifest)
	var outside, reverted []string
	for _, name := range lhKeys(r.live) {
		live := r.live[name]
		if want, ok := rendered[name]; ok {
			if !settingSame(live, want) {
				reverted = append(reverted, fmt.Sprintf("%s is %q, the values say %q", name, live, want))
			}
			continue
		}
		if settingsInFields[name] {
			continue
		}
		def, ok := builtinDefaultOK(name, r.minor)
		if !ok || settingSame(live, def) {
			continue // read-only, set from flags, or unknown to this version's table
		}
		r.out.Settings[name] = live
		outside = append(outside, fmt.Sprintf("%s=%s (Longhorn's default %s)", name, live, def))
	}
	if len(outside) > 0 {
		r.note("Settings changed outside the Helm values (in the UI or with kubectl): %s. They stay so on this cluster, but a rebuilt cluster starts with Longhorn's defaults unless longhorn.values.defaultSettings carries them",
			strings.Join(outside, "; "))
	}
	if len(reverted) > 0 {
		r.note("Settings edited since the values were last applied: %s. The next Helm upgrade or longhorn-manager restart sets them back to the values",
			strings.Join(reverted, "; "))
	}
	if r.live["deleting-confirmation-flag"] == "true" {
		r.note("the Setting deleting-confirmation-flag is \"true\": `helm uninstall` would now delete every Longhorn volume and its data, and talforge refuses to act on Longhorn until it is \"false\" again")
	}
}

// ownedSettings says which of the defaultSettings talforge sets itself on every install and
// upgrade (longhorn.OwnedSettings) differ on this cluster: plan will show them.
func (r *lhReader) ownedSettings() {
	var diffs []string
	for _, s := range longhorn.OwnedSettings(r.out.Longhorn) {
		live, ok := r.live[s.Setting]
		if ok && settingSame(live, s.Value) {
			continue
		}
		if !ok {
			live = "<absent>"
		}
		diffs = append(diffs, fmt.Sprintf("%s is %q here, talforge sets %q", s.Setting, live, s.Value))
	}
	if len(diffs) > 0 {
		r.note("talforge sets some Longhorn Settings itself on every install and upgrade, and this cluster has others: %s. "+
			"default-data-path and create-default-disk-labeled-nodes only matter when a node's default disk is created: disks and replicas that exist stay where they are",
			strings.Join(diffs, "; "))
	}
}

// releaseDefaultSettings reads the longhorn-default-setting ConfigMap from the release's
// rendered manifest: the Settings its values set, by name (null values are left out by
// the chart's template, chart/templates/default-setting.yaml).
func releaseDefaultSettings(manifest string) map[string]string {
	out := map[string]string{}
	for _, doc := range releaseutil.SplitManifests(manifest) {
		var cm corev1.ConfigMap
		if sigsyaml.Unmarshal([]byte(doc), &cm) != nil || cm.Kind != "ConfigMap" || cm.Name != defaultSettingConfigMap {
			continue
		}
		var raw map[string]any
		if yaml.Unmarshal([]byte(cm.Data["default-setting.yaml"]), &raw) != nil {
			continue
		}
		for k, v := range raw {
			out[k] = scalarString(v)
		}
	}
	return out
}

// builtinDefault is longhorn-manager's default of a Setting at minor ("" when unknown).
func builtinDefault(name string, minor uint64) string {
	v, _ := builtinDefaultOK(name, minor)
	return v
}

// builtinDefaultOK looks name up in longhornSettingDefaults; a minor outside the table
// uses its nearest end.
func builtinDefaultOK(name string, minor uint64) (string, bool) {
	lo, hi := longhornSettingDefaults[0].since, longhornSettingDefaults[0].until
	for _, d := range longhornSettingDefaults {
		lo, hi = min(lo, d.since), max(hi, d.until)
	}
	minor = min(max(minor, lo), hi)
	for _, d := range longhornSettingDefaults {
		if d.name == name && d.since <= minor && minor <= d.until {
			return d.value, true
		}
	}
	return "", false
}

// settingSame compares Setting values as Longhorn ≥ 1.10 reads them: a plain value applies
// to every data engine, so "3" equals {"v1":"3","v2":"3"} (types/setting.go
// ParseSettingSingleValue, ParseDataEngineSpecificSetting).
func settingSame(a, b string) bool {
	if a == b {
		return true
	}
	ma, ja := engineMap(a)
	mb, jb := engineMap(b)
	switch {
	case ja && jb:
		return maps.Equal(ma, mb)
	case ja:
		return allEqual(ma, b)
	case jb:
		return allEqual(mb, a)
	}
	return false
}

func engineMap(s string) (map[string]string, bool) {
	var m map[string]string
	if !strings.HasPrefix(strings.TrimSpace(s), "{") || json.Unmarshal([]byte(s), &m) != nil || len(m) == 0 {
		return nil, false
	}
	return m, true
}

func allEqual(m map[string]string, v string) bool {
	for _, x := range m {
		if x != v {
			return false
		}
	}
	return true
}
