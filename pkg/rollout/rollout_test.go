package rollout

import (
	"strings"
	"testing"
)

func TestKubernetesPath(t *testing.T) {
	for _, tt := range []struct{ from, to, refused string }{
		{"v1.36.0", "v1.37.0", ""},
		{"v1.37.0", "v1.37.2", ""},
		{"v1.35.0", "v1.37.0", "one minor version at a time; set talos.kubernetes to the latest v1.36.x first"},
		{"v1.37.0", "v1.36.0", "does not downgrade"},
	} {
		err := checkKubernetesPath(tt.from, tt.to)
		if (tt.refused == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.refused) {
			t.Errorf("%s -> %s: %v, want %q", tt.from, tt.to, err, tt.refused)
		}
	}
}

func TestAPIAndPathByReportedVersion(t *testing.T) {
	tests := []struct {
		from, to string
		api      string
		refused  string // part of the refusal, "" when allowed
	}{
		{from: "v1.12.6", to: "v1.13.4", api: APILegacy},
		{from: "v1.13.0-alpha.2", to: "v1.13.4", api: APILegacy},
		{from: "v1.13.0-beta.0", to: "v1.13.4", api: APILifecycle},
		{from: "v1.13.4", to: "v1.14.1", api: APILifecycle},
		{from: "v1.14.0", to: "v1.14.1", api: APILifecycle},
		{from: "v1.12.6", to: "v1.14.1", refused: "one minor version at a time; set talos.version to the latest v1.13.x first"},
		{from: "v1.14.1", to: "v1.13.4", refused: "does not downgrade"},
		{from: "garbage", to: "v1.14.1", refused: `reports Talos version "garbage"`},
	}
	for _, tt := range tests {
		t.Run(tt.from+"->"+tt.to, func(t *testing.T) {
			err := checkPath(tt.from, tt.to)
			if tt.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tt.refused) {
					t.Fatalf("checkPath = %v, want a refusal containing %q", err, tt.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if api, err := apiFor(tt.from); err != nil || api != tt.api {
				t.Errorf("apiFor(%s) = %s, %v; want %s", tt.from, api, err, tt.api)
			}
		})
	}
}

func TestRemovedAPIsFromTheMetrics(t *testing.T) {
	metrics := []byte(`# HELP apiserver_requested_deprecated_apis [STABLE] Gauge of deprecated APIs that have been requested, broken out by API group, version, resource, subresource, and removed_release.
# TYPE apiserver_requested_deprecated_apis gauge
apiserver_requested_deprecated_apis{group="flowcontrol.apiserver.k8s.io",removed_release="1.32",resource="flowschemas",subresource="",version="v1beta3"} 1
apiserver_requested_deprecated_apis{group="",removed_release="1.40",resource="endpoints",subresource="",version="v1"} 1
apiserver_requested_deprecated_apis{group="storage.k8s.io",removed_release="1.37",resource="volumeattributesclasses",subresource="",version="v1beta1"} 1
apiserver_requested_deprecated_apis{group="storage.k8s.io",removed_release="1.37",resource="volumeattributesclasses",subresource="",version="v1beta1"} 1
apiserver_request_total{code="200"} 1
`)
	tests := []struct {
		major, minor uint64
		want         string
	}{
		{1, 31, ""},
		{1, 32, "flowcontrol.apiserver.k8s.io/v1beta3 flowschemas (removed in 1.32)"},
		{1, 37, "flowcontrol.apiserver.k8s.io/v1beta3 flowschemas (removed in 1.32), storage.k8s.io/v1beta1 volumeattributesclasses (removed in 1.37)"},
	}
	for _, tt := range tests {
		if got := strings.Join(RemovedAPIs(metrics, tt.major, tt.minor), ", "); got != tt.want {
			t.Errorf("removed by %d.%d: %q, want %q", tt.major, tt.minor, got, tt.want)
		}
	}
}
