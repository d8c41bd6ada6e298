package profile

import (
	"strings"
	"testing"
)

func TestCPUCannotBootTalos(t *testing.T) {
	for model, refused := range map[string]bool{
		"kvm64": true, "KVM64": true, "qemu64": true, "kvm32": true, "n270": true, "core2duo": true, "x86-64-v1": true,
		"host": false, "x86-64-v2": false, "x86-64-v2-AES": false, "x86-64-v3": false, "Nehalem": false, "EPYC": false, "": false,
	} {
		if got := CPUCannotBootTalos(model); got != refused {
			t.Errorf("CPUCannotBootTalos(%q) = %v, want %v", model, got, refused)
		}
	}
}

func TestDNSNames(t *testing.T) {
	long := strings.Repeat("a", 63)

	for _, tc := range []struct {
		s                string
		label, subdomain bool
	}{
		{"homelab", true, true},
		{"lab-1", true, true},
		{long, true, true},
		{long + "a", false, true},
		{"home.example.com", false, true},
		{"Homelab", false, false},
		{"home_lab", false, false},
		{"-lab", false, false},
		{"lab-", false, false},
		{"", false, false},
		// The hand-written subdomain pattern this replaced let these through; the API server does not.
		{"a..b", false, false},
		{"a.-b", false, false},
		{"a-.b", false, false},
	} {
		if got := isDNSLabel(tc.s); got != tc.label {
			t.Errorf("isDNSLabel(%q) = %v, want %v", tc.s, got, tc.label)
		}

		if got := ValidClusterName(tc.s); got != tc.label {
			t.Errorf("ValidClusterName(%q) = %v, want %v", tc.s, got, tc.label)
		}

		if got := isDNSSubdomain(tc.s); got != tc.subdomain {
			t.Errorf("isDNSSubdomain(%q) = %v, want %v", tc.s, got, tc.subdomain)
		}
	}
}

// TestLonghornReleases keeps the table longhornRange relies on: parseable, one chart per
// minor, ascending without gaps, ending at the default.
func TestLonghornReleases(t *testing.T) {
	var prev version

	for i, r := range longhornReleases {
		v, err := parseVersion(r)
		if err != nil || v.Pre != "" {
			t.Fatalf("longhornReleases[%d] = %q: not a release version (%v)", i, r, err)
		}

		if i > 0 && (v.Major != prev.Major || v.Minor != prev.Minor+1) {
			t.Errorf("longhornReleases[%d] = %s does not follow %s by one minor", i, v, prev)
		}

		prev = v
	}

	if last := longhornReleases[len(longhornReleases)-1]; last != DefaultLonghornVersion {
		t.Errorf("newest release %s is not DefaultLonghornVersion %s", last, DefaultLonghornVersion)
	}

	if got := SupportedLonghorn(); got != "1.8.x to 1.11.x" {
		t.Errorf("SupportedLonghorn() = %q", got)
	}

	for _, tc := range []struct {
		major, minor uint64
		want         string
	}{{1, 7, ""}, {1, 8, "1.8.2"}, {1, 9, "1.9.2"}, {1, 10, "1.10.2"}, {1, 11, "1.11.3"}, {1, 12, ""}, {2, 8, ""}} {
		got, ok := LonghornLatestPatch(tc.major, tc.minor)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("LonghornLatestPatch(%d, %d) = %q, %v; want %q", tc.major, tc.minor, got, ok, tc.want)
		}
	}
}

// TestCronMessages: robfig/cron decides, the message names the field and its bounds.
func TestCronMessages(t *testing.T) {
	for expr, want := range map[string]string{
		"0 3 * * *":           "",
		"? 3 ? * SUN":         "",
		"0 3 * *":             `"0 3 * *" has 4 fields, want 5`,
		"@daily":              `"@daily" has 1 fields, want 5`,
		"CRON_TZ=UTC 0 3 * *": "takes no time-zone prefix",
		"61 3 * * *":          `minute field "61": 61 is outside 0-59`,
		"0 0-24 * * *":        `hour field "0-24": 24 is outside 0-23`,
		"0 0 0 * *":           `day of month field "0": 0 is outside 1-31`,
		"0 0 * 1,13 *":        `month field "1,13": 13 is outside 1-12`,
		"0 0 * * 7":           `day of week field "7": 7 is outside 0-6`,
		"*/0 * * * *":         `minute field "*/0": step of range should be a positive number`,
		"0 0 * * mon-fri/x":   `day of week field "mon-fri/x": failed to parse int from x`,
		"0 0 * jan-foo *":     `month field "jan-foo": failed to parse int from foo`,
		"5-1 * * * *":         `minute field "5-1": beginning of range (5) beyond end of range (1)`,
	} {
		err := validateCron(expr)

		switch {
		case want == "" && err != nil:
			t.Errorf("%q: %v, want valid", expr, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: err = %v, want it to contain %q", expr, err, want)
		}
	}
}
