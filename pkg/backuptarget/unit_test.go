package backuptarget

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		in      string
		want    Target
		wantErr string
	}{
		{in: "s3://tazlab-longhorn@eu-central-1/", want: Target{Bucket: "tazlab-longhorn", Region: "eu-central-1", Path: ""}},
		{in: "s3://b@us-east-1/longhorn/", want: Target{Bucket: "b", Region: "us-east-1", Path: "longhorn/"}},
		{in: "s3://b/some/path", want: Target{Bucket: "b", Path: "some/path"}},
		{in: "s3://b@eu-west-1", wantErr: "invalid URL"},
		{in: "s3://@eu-west-1/", wantErr: "invalid URL"},
		{in: "nfs://server:/export", wantErr: `scheme "nfs" is not s3`},
		{in: "s3://b@eu west/", wantErr: "backup target"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseURL(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseURL = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestParseKubernetesStatus(t *testing.T) {
	// The label as longhorn-manager writes it (json.Marshal of longhorn.KubernetesStatus).
	const real = `{"pvName":"pvc-0f1e","pvStatus":"Bound","namespace":"traefik","pvcName":"traefik","lastPVCRefAt":"","workloadsStatus":[{"podName":"traefik-7d9","podStatus":"Running","workloadName":"traefik-7d9","workloadType":"ReplicaSet"}],"lastPodRefAt":""}`
	tests := []struct {
		name   string
		labels map[string]string
		want   *KubernetesStatus
	}{
		{name: "longhorn's label", labels: map[string]string{KubernetesStatusLabel: real, "RecurringJob": "nightly"},
			want: &KubernetesStatus{PVName: "pvc-0f1e", PVStatus: "Bound", Namespace: "traefik", PVCName: "traefik",
				WorkloadsStatus: []WorkloadStatus{{PodName: "traefik-7d9", PodStatus: "Running", WorkloadName: "traefik-7d9", WorkloadType: "ReplicaSet"}}}},
		{name: "no label", labels: map[string]string{"RecurringJob": "nightly"}},
		{name: "nil labels"},
		{name: "not JSON", labels: map[string]string{KubernetesStatusLabel: "{traefik"}},
		{name: "bound to a PV only", labels: map[string]string{KubernetesStatusLabel: `{"pvName":"pv-1","pvStatus":"Available"}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseKubernetesStatus(tt.labels)
			if ok != (tt.want != nil) {
				t.Fatalf("ok = %v, want %v", ok, tt.want != nil)
			}
			if tt.want == nil {
				if got != nil {
					t.Fatalf("got %+v, want nil", got)
				}
				return
			}
			if fmt.Sprint(*got) != fmt.Sprint(*tt.want) {
				t.Fatalf("got %+v\nwant %+v", *got, *tt.want)
			}
			// Label renders what Longhorn writes: it parses back to the same status.
			back, ok := ParseKubernetesStatus(map[string]string{KubernetesStatusLabel: got.Label()})
			if !ok || fmt.Sprint(*back) != fmt.Sprint(*got) {
				t.Errorf("Label() does not round-trip: %s", got.Label())
			}
		})
	}
}

func TestClassify(t *testing.T) {
	// Error texts as Longhorn's S3 driver produces them (s3/s3_service.go).
	tests := []struct {
		err  string
		want Cause
	}{
		{"failed to list objects with param: {...} error: AWS Error: InvalidAccessKeyId The AWS Access Key Id you provided does not exist in our records.", CauseCredentials},
		{"failed to list objects with param: {...} error: AWS Error: SignatureDoesNotMatch The request signature we calculated does not match", CauseCredentials},
		{"failed to list objects with param: {...} error: AWS Error: NoSuchBucket The specified bucket does not exist", CauseBucket},
		{"failed to put object: x: AWS Error: AccessDenied Access Denied.", CauseDenied},
		{"error: AWS Error: AuthorizationHeaderMalformed The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-central-1'", CauseRegion},
		{"error: AWS Error: PermanentRedirect The bucket you are attempting to access must be addressed using the specified endpoint.", CauseRegion},
		{`failed to list objects: operation error S3: ListObjectsV2, https response error StatusCode: 0, RequestID: , HostID: , canceled, context deadline exceeded: dial tcp 127.0.0.1:1: connect: connection refused`, CauseUnreachable},
		{"something else", CauseNone},
	}
	for _, tt := range tests {
		if got, _ := classify(errors.New(tt.err)); got != tt.want {
			t.Errorf("classify(%.60q) = %q, want %q", tt.err, got, tt.want)
		}
	}
	if _, msg := classify(errors.New(tests[4].err)); !strings.Contains(msg, "region eu-central-1") {
		t.Errorf("the wrong-region meaning does not name the bucket's region: %q", msg)
	}
}

func TestLatestForClaimAcrossVolumes(t *testing.T) {
	at := func(s string) time.Time { tm, _ := time.Parse(time.RFC3339, s); return tm }
	claim := func(ns, name string) *KubernetesStatus { return &KubernetesStatus{Namespace: ns, PVCName: name} }
	old1 := &Backup{Name: "backup-old1", Volume: "pvc-old", Created: at("2026-01-01T03:00:00Z"), Claim: claim("traefik", "traefik")}
	old2 := &Backup{Name: "backup-old2", Volume: "pvc-old", Created: at("2026-01-02T03:00:00Z"), Claim: claim("traefik", "traefik")}
	new1 := &Backup{Name: "backup-new1", Volume: "pvc-new", Created: at("2026-01-03T03:00:00Z"), Claim: claim("traefik", "traefik")}
	other := &Backup{Name: "backup-other", Volume: "pvc-other", Created: at("2026-01-04T03:00:00Z"), Claim: claim("traefik", "other")}
	bare := &Backup{Name: "backup-bare", Volume: "static", Created: at("2026-01-05T03:00:00Z")}
	l := &Listing{Volumes: []*Volume{
		{Name: "pvc-new", Backups: []*Backup{new1}},
		{Name: "pvc-old", Backups: []*Backup{old2, old1}},
		{Name: "pvc-other", Backups: []*Backup{other}},
		{Name: "static", Backups: []*Backup{bare}},
	}}
	if got := l.LatestForClaim("traefik", "traefik"); got != new1 {
		t.Errorf("LatestForClaim = %v, want backup-new1", got)
	}
	if got := l.LatestForClaim("default", "traefik"); got != nil {
		t.Errorf("LatestForClaim of another namespace = %v, want nil", got.Name)
	}
	if got := l.LatestForVolume("pvc-old"); got != old2 {
		t.Errorf("LatestForVolume(pvc-old) = %v", got)
	}
	if got := l.LatestForVolume("nope"); got != nil {
		t.Errorf("LatestForVolume(nope) = %v", got)
	}
	claims := l.Claims()
	if len(claims) != 2 || claims[0].Name != "other" || claims[1].Name != "traefik" || claims[1].Latest != new1 ||
		claims[1].Backups != 3 || strings.Join(claims[1].Volumes, ",") != "pvc-new,pvc-old" {
		t.Errorf("Claims() = %+v", claims)
	}

	// Same second: the snapshot time decides, then the name.
	a := &Backup{Name: "a", Created: at("2026-01-01T03:00:00Z"), SnapshotCreated: "2026-01-01T02:59:00Z"}
	b := &Backup{Name: "b", Created: at("2026-01-01T03:00:00Z"), SnapshotCreated: "2026-01-01T02:59:30Z"}
	c := &Backup{Name: "c", Created: at("2026-01-01T03:00:00Z"), SnapshotCreated: "2026-01-01T02:59:30Z"}
	bs := []*Backup{a, c, b}
	sortNewestFirst(bs)
	if bs[0] != b || bs[1] != c || bs[2] != a {
		t.Errorf("order = %s %s %s, want b c a", bs[0].Name, bs[1].Name, bs[2].Name)
	}
}

func TestBlockPathRefusesDamagedChecksums(t *testing.T) {
	for _, sum := range []string{"", "ab", "../../x", "ABCDEF0123", "abc/def0"} {
		if _, err := blockPath("vol", sum); err == nil {
			t.Errorf("blockPath(%q) accepted it", sum)
		}
	}
	p, err := blockPath("vol", "0123456789abcdef")
	if err != nil || !strings.HasSuffix(p, "/vol/blocks/01/23/0123456789abcdef.blk") || !strings.HasPrefix(p, "backupstore/volumes/") {
		t.Errorf("blockPath = %q, %v", p, err)
	}
}

func TestValidateCredentials(t *testing.T) {
	keys := Credentials{KeyAccessKeyID: "AKIA1", KeySecretAccessKey: "s"}
	with := func(k, v string) Credentials {
		c := Credentials{}
		for a, b := range keys {
			c[a] = b
		}
		c[k] = v
		return c
	}
	tests := []struct {
		name    string
		creds   Credentials
		wantErr string
	}{
		{name: "keys", creds: keys},
		{name: "endpoint and path style", creds: with(KeyVirtualHostedStyle, "false")},
		// Keys of Longhorn's credential Secret besides AWS_* (pkg/longhorn credentialKeys).
		{name: "proxy", creds: with("HTTPS_PROXY", "http://proxy.lan:3128")},
		{name: "no secret", creds: Credentials{KeyAccessKeyID: "AKIA1"}, wantErr: "no AWS_SECRET_ACCESS_KEY"},
		{name: "virtual hosted style typo", creds: with(KeyVirtualHostedStyle, "yes"), wantErr: `"true" or "false"`},
		{name: "unknown key", creds: with("PASSWORD", "x"), wantErr: `unknown key "PASSWORD"`},
	}
	for _, tt := range tests {
		err := tt.creds.Validate()
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: Validate() = %v, want %q", tt.name, err, tt.wantErr)
		}
	}
}
