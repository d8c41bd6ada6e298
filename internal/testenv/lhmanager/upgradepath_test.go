package lhmanager

import "testing"

func TestCheckUpgradePath(t *testing.T) {
	for _, tc := range []struct{ current, next, want string }{
		{"", "v1.10.2", ""}, // fresh install: no checks
		{"v1.8.2", "v1.9.2", ""},
		{"v1.8.1", "v1.9.0", ""},
		{"v1.9.2", "v1.9.2", ""}, // same version re-applied
		{"v1.10.1", "v1.10.2", ""},
		{"v1.8.2", "v1.10.2", "failed to upgrade since upgrading from v1.8.2 to v1.10.2 for minor version is not supported"},
		{"v1.10.2", "v1.10.1", "failed to upgrade since downgrading from v1.10.2 to v1.10.1 is not supported"},
		{"v1.10.2", "v1.9.2", "failed to upgrade since downgrading from v1.10.2 to v1.9.2 is not supported"},
		{"v1.10.2", "v1.8.2", "failed to upgrade since downgrading from v1.10.2 to v1.8.2 is not supported"},
		{"v2.0.0", "v1.10.2", "failed to upgrade since downgrading from v2.0.0 to v1.10.2 for major version is not supported"},
		{"v1.11.3", "v2.0.0", "failed to upgrade since upgrading major version with minor version under 30 is not supported"},
		{"v1.10.2", "latest", "failed to upgrade since upgrading version latest is not valid"},
	} {
		err := checkUpgradePath(tc.current, tc.next)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("checkUpgradePath(%q, %q) = %q, want %q", tc.current, tc.next, got, tc.want)
		}
	}
}

func TestParseFlatYAML(t *testing.T) {
	got, err := parseFlatYAML("default-data-path: /var/mnt/longhorn\ndefault-replica-count: 2\nreplica-soft-anti-affinity: true\nguaranteed-instance-manager-cpu: \"{\\\"v1\\\":\\\"12\\\"}\"\nbackup-target: \nratio: 1.5")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"default-data-path": "/var/mnt/longhorn", "default-replica-count": "2", "replica-soft-anti-affinity": "true",
		"guaranteed-instance-manager-cpu": `{"v1":"12"}`, "backup-target": "", "ratio": "1.5",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d keys, want %d: %v", len(got), len(want), got)
	}
}
