package rollout

import (
	"strings"
	"testing"
)

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
