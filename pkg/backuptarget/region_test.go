package backuptarget

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeAWS answers the few S3 requests a preflight makes before the probe the way AWS S3
// answers them for a bucket in region bucketRegion. SeaweedFS does not check regions (it
// accepts any region in the signature scope and answers GetBucketLocation with an empty
// LocationConstraint, weed/s3api/s3api_bucket_handlers.go), so AWS's behaviour is played
// here from its documentation:
//
//   - Amazon S3 API Reference, "Error responses", list of error codes:
//     AuthorizationHeaderMalformed, "The authorization header that you provided is not
//     valid.", 400; PermanentRedirect, "The bucket that you are attempting to access must
//     be addressed using the specified endpoint. Send all future requests to this
//     endpoint.", 301. The AuthorizationHeaderMalformed message AWS sends for a request
//     signed for the wrong region reads "The authorization header is malformed; the region
//     'us-east-1' is wrong; expecting 'eu-central-1'" and the body carries <Region>.
//   - GetBucketLocation: "Buckets in Region us-east-1 have a LocationConstraint of null.
//     Buckets with a LocationConstraint of EU reside in eu-west-1."
type fakeAWS struct {
	bucket, bucketRegion string
	// mode: "malformed" (wrong region → 400 AuthorizationHeaderMalformed), "redirect"
	// (301 PermanentRedirect), "location" (does not check the signing region, as many
	// S3-compatible servers, but GetBucketLocation tells the bucket's region).
	mode string

	mu   sync.Mutex
	reqs []string
}

func (f *fakeAWS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.reqs = append(f.reqs, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
	f.mu.Unlock()
	// The region the request was signed for: Credential=AKID/date/REGION/s3/aws4_request.
	signed := ""
	if _, cred, ok := strings.Cut(r.Header.Get("Authorization"), "Credential="); ok {
		if parts := strings.Split(cred, "/"); len(parts) > 2 {
			signed = parts[2]
		}
	}
	w.Header().Set("x-amz-bucket-region", f.bucketRegion)
	w.Header().Set("Content-Type", "application/xml")
	if signed != f.bucketRegion {
		switch f.mode {
		case "malformed":
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AuthorizationHeaderMalformed</Code><Message>The authorization header is malformed; the region '%s' is wrong; expecting '%s'</Message><Region>%s</Region><RequestId>TALFORGETEST1</RequestId><HostId>talforge</HostId></Error>`, signed, f.bucketRegion, f.bucketRegion)
			return
		case "redirect":
			w.WriteHeader(http.StatusMovedPermanently)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint. Please send all future requests to this endpoint.</Message><Endpoint>%s.s3.%s.amazonaws.com</Endpoint><Bucket>%s</Bucket><RequestId>TALFORGETEST2</RequestId><HostId>talforge</HostId></Error>`, f.bucket, f.bucketRegion, f.bucket)
			return
		}
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Query().Has("location"):
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">%s</LocationConstraint>`, f.bucketRegion)
	case r.Method == http.MethodGet && r.URL.Query().Get("list-type") == "2":
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>%s</Name><Prefix>%s</Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><Delimiter>/</Delimiter><IsTruncated>false</IsTruncated></ListBucketResult>`, f.bucket, r.URL.Query().Get("prefix"))
	default:
		w.WriteHeader(http.StatusNotImplemented)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code><Message>not in this test</Message></Error>`)
	}
}

func TestPreflightWrongRegion(t *testing.T) {
	tests := []struct {
		name, mode string
		wantDetail string
		wantFix    string
	}{
		{name: "AuthorizationHeaderMalformed on the first request", mode: "malformed",
			wantDetail: "the bucket is in region eu-central-1", wantFix: "s3://lh-backups@eu-central-1/cluster/"},
		{name: "PermanentRedirect on the first request", mode: "redirect",
			wantDetail: "the bucket is in region eu-central-1 (x-amz-bucket-region)", wantFix: "s3://lh-backups@eu-central-1/cluster/"},
		{name: "the server tells the location", mode: "location",
			wantDetail: "bucket lh-backups is in region eu-central-1 (GetBucketLocation), the URL says us-east-1", wantFix: "s3://lh-backups@eu-central-1/cluster/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeAWS{bucket: "lh-backups", bucketRegion: "eu-central-1", mode: tt.mode}
			srv := httptest.NewServer(f)
			defer srv.Close()
			creds := Credentials{KeyAccessKeyID: "AKIATALFORGETEST0001", KeySecretAccessKey: "secret", KeyEndpoints: srv.URL}
			r, err := Preflight(t.Context(), "s3://lh-backups@us-east-1/cluster/", creds)
			var pe *PreflightError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *PreflightError; report %+v", err, r)
			}
			t.Log(err)
			if pe.Step.Name != StepRegion {
				t.Fatalf("failed step %q (%s), want region", pe.Step.Name, pe.Step.Detail)
			}
			if !strings.Contains(pe.Step.Detail, tt.wantDetail) || !strings.Contains(pe.Step.Fix, tt.wantFix) {
				t.Errorf("region step = %+v\nwant detail with %q, fix with %q", pe.Step, tt.wantDetail, tt.wantFix)
			}
			if last := r.Steps[len(r.Steps)-1]; last.Name != StepRegion || last.Status != StepFailed {
				t.Errorf("the report does not end at the failed region step: %+v", r.Steps)
			}
			// Stopped at the first failure: no probe object was written.
			f.mu.Lock()
			defer f.mu.Unlock()
			for _, req := range f.reqs {
				if strings.HasPrefix(req, "PUT") {
					t.Errorf("a probe was written after the region step failed: %v", f.reqs)
				}
			}
		})
	}
}
