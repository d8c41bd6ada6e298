// Settings: longhorn-default-setting turned into Setting CRs, with longhorn-manager's built-in
// defaults for the rest.

package lhmanager

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// getSetting returns a Setting's value; ok is false when it (or its CRD) does not exist.
func (m *Manager) getSetting(ctx context.Context, name string) (value string, ok bool, err error) {
	u, err := m.dyn.Resource(SettingGVR).Namespace(m.ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	v, _, _ := unstructured.NestedString(u.Object, "value")
	return v, true, nil
}

// setSetting creates or updates a Setting, optionally stamping the ConfigMap resourceVersion.
func (m *Manager) setSetting(ctx context.Context, name, value, cmRV string) error {
	res := m.dyn.Resource(SettingGVR).Namespace(m.ns)
	u, err := res.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		u = &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": group + "/" + version, "kind": "Setting",
			"metadata": map[string]any{"name": name, "namespace": m.ns},
			"value":    value,
		}}
		if cmRV != "" {
			u.SetAnnotations(map[string]string{annotationConfigMapResourceVersion: cmRV})
		}
		_, err = createCR(ctx, res, u)
		return err
	}
	if err != nil {
		return err
	}
	old, _, _ := unstructured.NestedString(u.Object, "value")
	ann := u.GetAnnotations()
	if old == value && (cmRV == "" || ann[annotationConfigMapResourceVersion] == cmRV) {
		return nil
	}
	u.Object["value"] = value
	if cmRV != "" {
		if ann == nil {
			ann = map[string]string{}
		}
		ann[annotationConfigMapResourceVersion] = cmRV
		u.SetAnnotations(ann)
	}
	_, err = res.Update(ctx, u, metav1.UpdateOptions{})
	return err
}

// syncSettings applies longhorn-default-setting as upstream's UpdateCustomizedSettings:
// on every change of the ConfigMap every present key overwrites its Setting (UI edits
// are lost), unknown names are skipped, and missing Settings are created with their
// built-in default.
func (m *Manager) syncSettings(ctx context.Context) error {
	cm, err := m.cms.ConfigMaps(m.ns).Get(DefaultSettingConfigMap)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if cm.ResourceVersion == m.appliedSettingRV {
		return nil
	}
	if ok, err := m.crdServed(ctx, SettingGVR); !ok {
		return err
	}
	minor := chartMinor(cm)
	custom, err := parseFlatYAML(cm.Data["default-setting.yaml"])
	if err != nil {
		m.logf("customized settings are invalid, will give up using them: %v", err)
		custom = nil
	}
	for name := range custom {
		if def, ok := definitions[name]; !ok || !def.in(minor) {
			m.logf("customized settings are invalid, will give up using them: undefined setting %v", name)
			delete(custom, name)
		}
	}
	// As upstream: first every missing Setting is created (customized values become the
	// defaults), then the existing ones are overwritten with the customized values.
	for _, name := range sortedNames(definitions) {
		def := definitions[name]
		if !def.in(minor) {
			continue
		}
		if _, ok, err := m.getSetting(ctx, name); err != nil {
			return err
		} else if !ok {
			value, customized := custom[name]
			if !customized {
				value = def.value
			}
			rv := ""
			if customized {
				rv = cm.ResourceVersion
			}
			if err := m.setSetting(ctx, name, value, rv); err != nil {
				return fmt.Errorf("setting %s: %w", name, err)
			}
		}
	}
	for _, name := range sortedNames(custom) {
		if err := m.setSetting(ctx, name, custom[name], cm.ResourceVersion); err != nil {
			return fmt.Errorf("setting %s: %w", name, err)
		}
	}
	m.appliedSettingRV = cm.ResourceVersion
	return nil
}

type definition struct {
	value      string
	sinceMinor uint64 // 0: all
	untilMinor uint64 // 0: all; else last minor that has it
}

func (d definition) in(minor uint64) bool {
	return (d.sinceMinor == 0 || minor == 0 || minor >= d.sinceMinor) && (d.untilMinor == 0 || minor == 0 || minor <= d.untilMinor)
}

// definitions: the Settings this fake knows, with longhorn-manager's built-in defaults.
var definitions = map[string]definition{
	"allow-recurring-job-while-volume-detached":          {value: "false"},
	"create-default-disk-labeled-nodes":                  {value: "false"},
	"default-data-path":                                  {value: "/var/lib/longhorn/"},
	"default-data-locality":                              {value: "disabled"},
	"replica-soft-anti-affinity":                         {value: "false"},
	"replica-auto-balance":                               {value: "disabled"},
	"storage-over-provisioning-percentage":               {value: "100"},
	"storage-minimal-available-percentage":               {value: "25"},
	"storage-reserved-percentage-for-default-disk":       {value: "30"},
	"upgrade-checker":                                    {value: "true"},
	"default-replica-count":                              {value: "3"},
	"recurring-job-max-retention":                        {value: "100"},
	"node-drain-policy":                                  {value: "block-if-contains-last-replica"},
	"disable-revision-counter":                           {value: "true"},
	"auto-cleanup-recurring-job-backup-snapshot":         {value: "true"},
	"concurrent-automatic-engine-upgrade-per-node-limit": {value: "0"},
	"guaranteed-instance-manager-cpu":                    {value: "12"},
	SettingDeletingConfirmationFlag:                      {value: "false"},
	"v1-data-engine":                                     {value: "true"},
	"v2-data-engine":                                     {value: "false"},
	"orphan-auto-deletion":                               {value: "false", untilMinor: 8},
	"orphan-resource-auto-deletion":                      {value: "", sinceMinor: 9},
	"offline-replica-rebuilding":                         {value: "false", sinceMinor: 9},
	"default-backup-block-size":                          {value: "2", sinceMinor: 10},
	"replica-rebuilding-bandwidth-limit":                 {value: "0", sinceMinor: 10},
	"data-engine-log-level":                              {value: "Notice", sinceMinor: 10},
	"node-disk-health-monitoring":                        {value: "true", sinceMinor: 11},
}

// chartMinor is the minor version of the chart that rendered cm (its version label).
func chartMinor(cm *corev1.ConfigMap) uint64 {
	v := strings.TrimPrefix(cm.Labels["app.kubernetes.io/version"], "v")
	parts := strings.Split(v, ".")
	if len(parts) < 2 {
		return 0
	}
	n, _ := strconv.ParseUint(parts[1], 10, 64)
	return n
}

// parseFlatYAML reads "key: value" lines as longhorn-manager does: every scalar becomes
// its string form, an empty value an empty string.
func parseFlatYAML(s string) (map[string]string, error) {
	var raw map[string]any
	if err := yaml.Unmarshal([]byte(s), &raw); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		switch x := v.(type) {
		case nil:
			out[k] = ""
		case string:
			out[k] = x
		case bool:
			out[k] = strconv.FormatBool(x)
		case int:
			out[k] = strconv.Itoa(x)
		case float64:
			out[k] = strconv.FormatFloat(x, 'f', -1, 64)
		default:
			out[k] = fmt.Sprint(x)
		}
	}
	return out, nil
}
