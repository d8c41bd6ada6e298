package longhorn

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/talforge/talforge/pkg/profile"
)

// Objects are what talforge applies besides the chart: the namespace (before the chart),
// then RecurringJobs and StorageClasses (after it).
type Objects struct {
	Namespace      *unstructured.Unstructured
	RecurringJobs  []*unstructured.Unstructured
	StorageClasses []*unstructured.Unstructured
}

// BuildObjects returns the objects for chart version.
func BuildObjects(c *profile.Cluster, version string) (*Objects, error) {
	l := c.Longhorn
	if l == nil {
		return nil, errors.New("the profile has no longhorn section")
	}
	minor := minorOf(version)
	o := &Objects{Namespace: namespaceObject()}
	if l.Backup != nil {
		for i, j := range l.Backup.RecurringJobs {
			if j.Task == "system-backup" && minor < 9 {
				return nil, fmt.Errorf("longhorn.backup.recurringJobs[%d].task: system-backup jobs need Longhorn 1.9 or later (this is %s); use another task or upgrade first", i, version)
			}
			o.RecurringJobs = append(o.RecurringJobs, recurringJobObject(j))
		}
	}
	for _, sc := range l.StorageClasses {
		obj, err := storageClassObject(sc, minor)
		if err != nil {
			return nil, err
		}
		o.StorageClasses = append(o.StorageClasses, obj)
	}
	return o, nil
}

// RenderManifests renders the namespace, RecurringJobs and StorageClasses for the profile's
// Longhorn version as multi-document YAML (no secrets), deterministic.
func RenderManifests(c *profile.Cluster) ([]byte, error) {
	if c.Longhorn == nil {
		return nil, errors.New("the profile has no longhorn section")
	}
	o, err := BuildObjects(c, c.Longhorn.Version)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# Longhorn objects applied by talforge (server-side, field manager %q) for cluster %s.\n", FieldManager, c.Metadata.Name)
	fmt.Fprintf(&buf, "# The S3 credentials Secret is not here: talforge creates it from the sops file.\n")
	docs := append([]*unstructured.Unstructured{o.Namespace}, o.RecurringJobs...)
	for i, d := range append(docs, o.StorageClasses...) {
		y, err := sigsyaml.Marshal(d.Object)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(y)
	}
	return buf.Bytes(), nil
}

// namespaceObject: Longhorn runs privileged pods and Talos enforces "baseline" by default.
func namespaceObject() *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "Namespace",
		"metadata": map[string]any{
			"name": Namespace,
			"labels": map[string]any{
				"pod-security.kubernetes.io/enforce": "privileged",
				"pod-security.kubernetes.io/audit":   "privileged",
				"pod-security.kubernetes.io/warn":    "privileged",
			},
		},
	}}
}

func recurringJobObject(j profile.RecurringJob) *unstructured.Unstructured {
	groups := []any{}
	for _, g := range j.Groups {
		groups = append(groups, g)
	}
	labels := map[string]any{}
	for k, v := range j.Labels {
		labels[k] = v
	}
	params := map[string]any{}
	for k, v := range j.Parameters {
		params[k] = v
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "longhorn.io/v1beta2",
		"kind":       "RecurringJob",
		"metadata": map[string]any{
			"name":      j.Name,
			"namespace": Namespace,
			"labels":    map[string]any{ManagedByLabel: ManagedBy},
		},
		"spec": map[string]any{
			"name":        j.Name,
			"task":        j.Task,
			"cron":        j.Cron,
			"retain":      int64(effectiveRetain(j)),
			"concurrency": int64(j.Concurrency),
			"groups":      groups,
			"labels":      labels,
			"parameters":  params,
		},
	}}
}

// effectiveRetain is what Longhorn's RecurringJob mutator stores: 0 for jobs that keep
// nothing, at least 1 for the others. Rendering it avoids a perpetual drift.
func effectiveRetain(j profile.RecurringJob) int {
	switch j.Task {
	case "snapshot-cleanup", "filesystem-trim":
		return 0
	case "snapshot-delete":
		return max(j.Retain, 0)
	default:
		return max(j.Retain, 1)
	}
}

func storageClassObject(sc profile.StorageClass, minor uint64) (*unstructured.Unstructured, error) {
	params := map[string]any{
		"numberOfReplicas":    strconv.Itoa(sc.Replicas),
		"staleReplicaTimeout": "30",
		"fromBackup":          "",
		"fsType":              sc.FSType,
		"dataLocality":        sc.DataLocality,
	}
	if minor >= 8 {
		params["backupTargetName"] = "default"
	}
	if len(sc.RecurringJobs)+len(sc.RecurringJobGroups) > 0 {
		sel, err := recurringJobSelector(sc.RecurringJobs, sc.RecurringJobGroups)
		if err != nil {
			return nil, err
		}
		params["recurringJobSelector"] = sel
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "storage.k8s.io/v1",
		"kind":       "StorageClass",
		"metadata": map[string]any{
			"name":   sc.Name,
			"labels": map[string]any{ManagedByLabel: ManagedBy},
		},
		"provisioner":          CSIDriver,
		"allowVolumeExpansion": true,
		"reclaimPolicy":        sc.ReclaimPolicy,
		"volumeBindingMode":    "Immediate",
		"parameters":           params,
	}}, nil
}

// VolumeLabels are the recurring-job labels a profile volume must carry.
func VolumeLabels(v profile.Volume) map[string]string {
	out := map[string]string{}
	for _, j := range v.RecurringJobs {
		out[RecurringJobLabelPrefix+j] = "enabled"
	}
	for _, g := range v.RecurringJobGroups {
		out[RecurringJobGroupLabelPrefix+g] = "enabled"
	}
	return out
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
