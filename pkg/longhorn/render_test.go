package longhorn

import (
	"encoding/json"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/release"
)

func TestUpgradePath(t *testing.T) {
	for _, tc := range []struct {
		from, to string
		want     []string
		err      string
	}{
		{"1.8.1", "1.8.2", []string{"1.8.2"}, ""},
		{"1.8.2", "1.9.2", []string{"1.9.2"}, ""},
		{"1.8.2", "1.10.2", []string{"1.9.2", "1.10.2"}, ""},
		{"1.8.0", "1.10.1", []string{"1.9.2", "1.10.1"}, ""},
		{"v1.8.2", "1.11.3", []string{"1.9.2", "1.10.2", "1.11.3"}, ""},
		{"1.10.2", "1.10.2", nil, ""},
		{"1.10.2", "1.10.1", nil, "refusing to downgrade Longhorn from 1.10.2 to 1.10.1"},
		{"1.10.2", "1.9.2", nil, "downgrading from v1.10.2 to v1.9.2 is not supported"},
		{"1.11.3", "1.12.1", nil, "outside the Longhorn versions talforge supports"},
		{"1.10.2", "latest", nil, "is not a Longhorn version"},
	} {
		got, err := UpgradePath(tc.from, tc.to)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("UpgradePath(%s, %s) err = %v, want %q", tc.from, tc.to, err, tc.err)
			}
			continue
		}
		if err != nil || strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("UpgradePath(%s, %s) = %v, %v; want %v", tc.from, tc.to, got, err, tc.want)
		}
	}
}

func TestRenderManifests(t *testing.T) {
	c := loadProfile(t, "1.9.2")
	out, err := RenderManifests(c)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := RenderManifests(c)
	if string(out) != string(again) {
		t.Error("RenderManifests is not deterministic")
	}
	docs := map[string]map[string]any{}
	dec := yaml.NewDecoder(strings.NewReader(string(out)))
	for {
		var d map[string]any
		if err := dec.Decode(&d); err != nil {
			break
		}
		md := d["metadata"].(map[string]any)
		docs[d["kind"].(string)+"/"+md["name"].(string)] = d
	}
	ns := docs["Namespace/longhorn-system"]
	if ns == nil || ns["metadata"].(map[string]any)["labels"].(map[string]any)["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace = %v", ns)
	}
	rj := docs["RecurringJob/nightly"]["spec"].(map[string]any)
	if rj["task"] != "backup" || rj["cron"] != "0 3 * * *" || rj["retain"] != 7 || rj["concurrency"] != 2 || rj["parameters"].(map[string]any)["full-backup-interval"] != "7" {
		t.Errorf("nightly = %v", rj)
	}
	if trim := docs["RecurringJob/weekly-trim"]["spec"].(map[string]any); trim["retain"] != 0 || trim["concurrency"] != 1 {
		t.Errorf("weekly-trim = %v (Longhorn stores retain 0 for filesystem-trim; concurrency defaults to 1)", trim)
	}
	sc := docs["StorageClass/longhorn-retain"]
	params := sc["parameters"].(map[string]any)
	var sel []map[string]any
	if err := json.Unmarshal([]byte(params["recurringJobSelector"].(string)), &sel); err != nil || len(sel) != 1 || sel[0]["name"] != "critical" || sel[0]["isGroup"] != true {
		t.Errorf("recurringJobSelector = %v (%v)", params["recurringJobSelector"], err)
	}
	if sc["reclaimPolicy"] != "Retain" || params["numberOfReplicas"] != "2" || sc["provisioner"] != "driver.longhorn.io" {
		t.Errorf("storage class = %v", sc)
	}
	for _, secret := range []string{"AWS_", "Secret"} {
		if strings.Contains(string(out), "kind: "+secret) || strings.Contains(string(out), secret+"SECRET") {
			t.Errorf("manifests mention %q", secret)
		}
	}

	c = loadProfile(t, "1.8.2", "task: filesystem-trim", "task: system-backup")
	if _, err := BuildObjects(c, "1.8.2"); err == nil || !strings.Contains(err.Error(), "system-backup jobs need Longhorn 1.9") {
		t.Errorf("system-backup on 1.8: err = %v", err)
	}
	if _, err := BuildObjects(c, "1.9.2"); err != nil {
		t.Errorf("system-backup on 1.9: %v", err)
	}
}

func TestIAMPolicy(t *testing.T) {
	for _, tc := range []struct {
		target, bucketARN, objectsARN string
	}{
		{"s3://tazlab-longhorn@eu-central-1/", "arn:aws:s3:::tazlab-longhorn", "arn:aws:s3:::tazlab-longhorn/*"},
		{"s3://ha-lab@eu-central-1/longhorn/", "arn:aws:s3:::ha-lab", "arn:aws:s3:::ha-lab/longhorn/*"},
		{"s3://cnb@cn-north-1/", "arn:aws-cn:s3:::cnb", "arn:aws-cn:s3:::cnb/*"},
	} {
		c := loadProfile(t, "1.10.2", "s3://tazlab-longhorn@eu-central-1/", tc.target)
		b, err := IAMPolicy(c)
		if err != nil {
			t.Fatal(err)
		}
		var p iamPolicy
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		if p.Version != "2012-10-17" || len(p.Statement) != 2 {
			t.Fatalf("policy = %s", b)
		}
		var actions []string
		for _, s := range p.Statement {
			if s.Effect != "Allow" {
				t.Errorf("statement %s is not Allow", s.Sid)
			}
			actions = append(actions, s.Action...)
		}
		if got := strings.Join(actions, ","); got != "s3:GetBucketLocation,s3:ListBucket,s3:DeleteObject,s3:GetObject,s3:PutObject" {
			t.Errorf("actions = %s", got)
		}
		if p.Statement[0].Resource[0] != tc.bucketARN || p.Statement[1].Resource[0] != tc.objectsARN {
			t.Errorf("%s: resources %v %v", tc.target, p.Statement[0].Resource, p.Statement[1].Resource)
		}
		if !strings.HasSuffix(string(b), "}\n") {
			t.Error("policy does not end with a newline")
		}
	}
}

func TestNotPending(t *testing.T) {
	for _, tc := range []struct {
		status release.Status
		refuse bool
	}{
		{release.StatusDeployed, false}, {release.StatusFailed, false},
		{release.StatusPendingUpgrade, true}, {release.StatusPendingInstall, true}, {release.StatusPendingRollback, true},
	} {
		rel := &release.Release{Version: 4, Info: &release.Info{Status: tc.status}, Chart: &chart.Chart{Metadata: &chart.Metadata{Version: "1.10.2"}}}
		err := notPending(rel)
		if (err != nil) != tc.refuse {
			t.Errorf("%s: err = %v", tc.status, err)
		}
		if err != nil && !strings.Contains(err.Error(), "is "+string(tc.status)+" at revision 4") {
			t.Errorf("%s: message %v", tc.status, err)
		}
	}
	if notPending(nil) != nil {
		t.Error("no release refused")
	}
}

func BenchmarkRenderValues(b *testing.B) {
	c := loadProfile(b, "1.10.2")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := RenderValues(c); err != nil {
			b.Fatal(err)
		}
	}
}
