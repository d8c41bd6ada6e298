package lhchart

import (
	"strings"
	"testing"

	"github.com/Masterminds/semver/v3"
	"gopkg.in/yaml.v3"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
)

func render(t *testing.T, version, valuesYAML string) map[string]string {
	t.Helper()
	ch, err := Chart(version)
	if err != nil {
		t.Fatal(err)
	}
	user, err := chartutil.ReadValues([]byte(valuesYAML))
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ToRenderValues(ch, user, chartutil.ReleaseOptions{Name: "longhorn", Namespace: "longhorn-system", IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	out, err := engine.Render(ch, vals)
	if err != nil {
		t.Fatalf("render %s: %v", version, err)
	}
	return out
}

// configMapData returns data[key] of the ConfigMap rendered into template file name.
func configMapData(t *testing.T, out map[string]string, file, key string) string {
	t.Helper()
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal([]byte(out["longhorn/templates/"+file]), &cm); err != nil {
		t.Fatalf("%s: %v\n%s", file, err, out["longhorn/templates/"+file])
	}
	v, ok := cm.Data[key]
	if !ok {
		t.Fatalf("%s has no data key %s", file, key)
	}
	return v
}

func TestDefaultSettingRendering(t *testing.T) {
	for _, tc := range []struct {
		name, version, values, want string
	}{
		{"all null renders nothing", "1.10.2", ``, ""},
		{"1.8 prints values as they are", "1.8.2",
			"defaultSettings: {defaultDataPath: /var/mnt/longhorn, defaultReplicaCount: 2, replicaSoftAntiAffinity: true}",
			"default-data-path: /var/mnt/longhorn\nreplica-soft-anti-affinity: true\ndefault-replica-count: 2"},
		{"1.8 prints a per-engine map the Go way", "1.8.2",
			`defaultSettings: {defaultReplicaCount: {v1: "2"}}`, "default-replica-count: map[v1:2]"},
		{"1.10 renders a per-engine map as JSON", "1.10.2",
			`defaultSettings: {defaultReplicaCount: {v1: "2", v2: "1"}}`, `default-replica-count: "{\"v1\":\"2\",\"v2\":\"1\"}"`},
		{"1.10 quotes a per-engine scalar", "1.10.2",
			`defaultSettings: {defaultReplicaCount: 2}`, `default-replica-count: "2"`},
		{"1.8 knows orphanAutoDeletion, not its 1.9 successor", "1.8.2",
			`defaultSettings: {orphanAutoDeletion: false, orphanResourceAutoDeletion: replica-data}`, "orphan-auto-deletion: false"},
		{"1.9 knows orphanResourceAutoDeletion only", "1.9.2",
			`defaultSettings: {orphanAutoDeletion: false, orphanResourceAutoDeletion: replica-data}`, "orphan-resource-auto-deletion: replica-data"},
		{"backupTarget under defaultSettings is silently ignored", "1.10.2",
			`defaultSettings: {backupTarget: "s3://b@r/"}`, ""},
		{"an empty string is a present key", "1.9.2", `defaultSettings: {defaultDataPath: ""}`, "default-data-path: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := configMapData(t, render(t, tc.version, tc.values), "default-setting.yaml", "default-setting.yaml")
			if got != tc.want {
				t.Errorf("default-setting.yaml =\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestDefaultResourceRendering(t *testing.T) {
	for _, tc := range []struct{ name, values, want string }{
		{"null keys are left out", ``, ""},
		{"all three", `defaultBackupStore: {backupTarget: "s3://bucket@eu-central-1/", backupTargetCredentialSecret: longhorn-s3, pollInterval: 300}`,
			"backup-target: s3://bucket@eu-central-1/\nbackup-target-credential-secret: longhorn-s3\nbackupstore-poll-interval: 300"},
		{"empty string clears", `defaultBackupStore: {backupTarget: ""}`, "backup-target: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := configMapData(t, render(t, "1.10.2", tc.values), "default-resource.yaml", "default-resource.yaml")
			if got != tc.want {
				t.Errorf("default-resource.yaml = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStorageClassRendering(t *testing.T) {
	type sc struct {
		ReclaimPolicy     string            `yaml:"reclaimPolicy"`
		VolumeBindingMode string            `yaml:"volumeBindingMode"`
		Parameters        map[string]string `yaml:"parameters"`
	}
	parse := func(t *testing.T, version, values string) sc {
		var s sc
		raw := configMapData(t, render(t, version, values), "storageclass.yaml", "storageclass.yaml")
		if err := yaml.Unmarshal([]byte(raw), &s); err != nil {
			t.Fatalf("%v\n%s", err, raw)
		}
		return s
	}
	s := parse(t, "1.10.2", `persistence: {defaultClassReplicaCount: 2, reclaimPolicy: Retain, recurringJobSelector: {enable: true, jobList: '[{"name":"nightly","isGroup":true}]'}}`)
	if s.ReclaimPolicy != "Retain" || s.Parameters["numberOfReplicas"] != "2" {
		t.Errorf("storage class = %+v", s)
	}
	if got := s.Parameters["recurringJobSelector"]; got != `[{"name":"nightly","isGroup":true}]` {
		t.Errorf("recurringJobSelector = %q", got)
	}
	// The upstream trap, reproduced: a YAML list prints as Go's map syntax.
	s = parse(t, "1.10.2", `persistence: {recurringJobSelector: {enable: true, jobList: [{name: nightly, isGroup: true}]}}`)
	if got := s.Parameters["recurringJobSelector"]; got != "[map[isGroup:true name:nightly]]" {
		t.Errorf("list jobList rendered %q, want Go map syntax as upstream", got)
	}
	if got := parse(t, "1.8.2", `persistence: {removeSnapshotsDuringFilesystemTrim: enabled, unmapMarkSnapChainRemoved: disabled}`).Parameters["unmapMarkSnapChainRemoved"]; got != "enabled" {
		t.Errorf("1.8 unmapMarkSnapChainRemoved from removeSnapshotsDuringFilesystemTrim = %q, want enabled", got)
	}
	if got := parse(t, "1.9.2", `persistence: {volumeBindingMode: WaitForFirstConsumer}`).VolumeBindingMode; got != "WaitForFirstConsumer" {
		t.Errorf("1.9 volumeBindingMode = %q", got)
	}
}

func TestCRDsAndHooks(t *testing.T) {
	for _, version := range Versions {
		t.Run(version, func(t *testing.T) {
			out := render(t, version, ``)
			crds := out["longhorn/templates/crds.yaml"]
			dec := yaml.NewDecoder(strings.NewReader(crds))
			names := map[string][]string{}
			for {
				var crd struct {
					Metadata struct{ Name string }
					Spec     struct {
						Versions []struct {
							Name    string
							Storage bool
						}
					}
				}
				if err := dec.Decode(&crd); err != nil {
					break
				}
				for _, v := range crd.Spec.Versions {
					names[crd.Metadata.Name] = append(names[crd.Metadata.Name], v.Name)
				}
			}
			for _, want := range []string{"settings", "backuptargets", "recurringjobs", "volumes", "engines", "backupvolumes", "backups"} {
				vs := names[want+".longhorn.io"]
				legacy := strings.Join(vs, ",") == "v1beta1,v1beta2"
				if semver.MustParse(version).Minor() >= 10 {
					if strings.Join(vs, ",") != "v1beta2" {
						t.Errorf("%s versions %v, want only v1beta2 from 1.10", want, vs)
					}
				} else if !legacy {
					t.Errorf("%s versions %v, want v1beta1,v1beta2 before 1.10", want, vs)
				}
			}
			job := out["longhorn/templates/preupgrade-job.yaml"]
			for _, want := range []string{`"helm.sh/hook": pre-upgrade`, `"helm.sh/hook-delete-policy": hook-succeeded,before-hook-creation,hook-failed`, "longhornio/longhorn-manager:v" + version} {
				if !strings.Contains(job, want) {
					t.Errorf("pre-upgrade job lacks %q:\n%s", want, job)
				}
			}
			if ds := out["longhorn/templates/daemonset-manager.yaml"]; !strings.Contains(ds, "image: longhornio/longhorn-manager:v"+version) {
				t.Errorf("manager DaemonSet does not carry the version:\n%s", ds)
			}
		})
	}
	if job := render(t, "1.10.2", `preUpgradeChecker: {jobEnabled: false}`)["longhorn/templates/preupgrade-job.yaml"]; strings.TrimSpace(job) != "" {
		t.Errorf("pre-upgrade job rendered with jobEnabled=false:\n%s", job)
	}
}
