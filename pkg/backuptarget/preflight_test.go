package backuptarget_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/talforge/talforge/internal/testenv/s3server"
	"github.com/talforge/talforge/pkg/backuptarget"
)

func TestPreflight(t *testing.T) {
	srv := s3srv.Get(t)
	a := newAdmin(t, srv)
	withKeys := func(u s3server.User, ak, sk string) backuptarget.Credentials {
		c := creds(srv, u)
		c[backuptarget.KeyAccessKeyID], c[backuptarget.KeySecretAccessKey] = ak, sk
		return c
	}
	allSteps := []string{backuptarget.StepCredentials, backuptarget.StepURL, backuptarget.StepAuthentication, backuptarget.StepBucket, backuptarget.StepRegion, backuptarget.StepWrite, backuptarget.StepRead, backuptarget.StepDelete}
	tests := []struct {
		name   string
		target string
		creds  backuptarget.Credentials
		// failed is the step that fails ("" for none), with words its detail and fix hold.
		failed string
		words  []string
	}{
		{name: "the policy of talforge iam-policy", target: rootTarget + "pf/", creds: creds(srv, policyUser)},
		{name: "a policy for the target's path", target: pathTarget, creds: creds(srv, pathUser)},
		{name: "outside the policy's path", target: rootTarget + "cluster-b/", creds: creds(srv, pathUser),
			failed: backuptarget.StepWrite, words: []string{"AccessDenied", "s3:PutObject", "talforge iam-policy"}},
		{name: "a policy without PutObject", target: rootTarget + "pf/", creds: creds(srv, noWriteUser),
			failed: backuptarget.StepWrite, words: []string{"AccessDenied", "allow s3:PutObject"}},
		{name: "wrong secret key", target: rootTarget, creds: withKeys(policyUser, policyUser.AccessKey, strings.Repeat("w", 40)),
			failed: backuptarget.StepAuthentication, words: []string{"SignatureDoesNotMatch", "AWS_SECRET_ACCESS_KEY"}},
		{name: "unknown access key", target: rootTarget, creds: withKeys(policyUser, "AKIANOSUCHKEY0000000", policyUser.SecretKey),
			failed: backuptarget.StepAuthentication, words: []string{"InvalidAccessKeyId", "AWS_ACCESS_KEY_ID"}},
		{name: "missing bucket", target: missingTarget, creds: creds(srv, missingBucketUser),
			failed: backuptarget.StepBucket, words: []string{"NoSuchBucket", "bucket talforge-missing does not exist", "create the bucket"}},
		{name: "no keys", target: rootTarget, creds: backuptarget.Credentials{backuptarget.KeyEndpoints: srv.Endpoint},
			failed: backuptarget.StepCredentials, words: []string{"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"}},
		{name: "no region", target: "s3://" + testBucket + "/", creds: creds(srv, policyUser),
			failed: backuptarget.StepURL, words: []string{"names no region", "s3://talforge-bt@<region>/"}},
		{name: "no path", target: "s3://" + testBucket + "@" + testRegion, creds: creds(srv, policyUser),
			failed: backuptarget.StepURL, words: []string{"invalid URL", "s3://bucket@region/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := backuptarget.Preflight(t.Context(), tt.target, tt.creds)
			var names []string
			for _, s := range r.Steps {
				names = append(names, s.Name)
			}
			if tt.failed == "" {
				if err != nil {
					t.Fatalf("Preflight: %v\nsteps %+v", err, r.Steps)
				}
				if strings.Join(names, " ") != strings.Join(allSteps, " ") {
					t.Errorf("steps = %v, want %v", names, allSteps)
				}
				for _, s := range r.Steps {
					want := backuptarget.StepOK
					if s.Name == backuptarget.StepRegion {
						// SeaweedFS reports no region (weed/s3api GetBucketLocationHandler).
						want = backuptarget.StepSkipped
					}
					if s.Status != want {
						t.Errorf("step %s = %s (%s), want %s", s.Name, s.Status, s.Detail, want)
					}
				}
				if !strings.HasPrefix(r.Probe, strings.TrimPrefix(strings.SplitN(tt.target, "/", 4)[3], "/")+"talforge-preflight-") {
					t.Errorf("probe %q is not under the target's path", r.Probe)
				}
				return
			}
			var pe *backuptarget.PreflightError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *backuptarget.PreflightError", err)
			}
			t.Log(err)
			if pe.Step.Name != tt.failed || r.Failed() == nil || r.Failed().Name != tt.failed || names[len(names)-1] != tt.failed {
				t.Fatalf("failed step %q, want %q; steps %v", pe.Step.Name, tt.failed, names)
			}
			for _, w := range tt.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error lacks %q", w)
				}
			}
			if strings.Contains(err.Error(), "0x") {
				t.Errorf("the error dumps Go pointers: %v", err)
			}
		})
	}
	// Nothing is left behind, by the successes nor the failures.
	for k := range a.keys("") {
		if strings.Contains(k, "talforge-preflight-") {
			t.Errorf("probe object %s left in the bucket", k)
		}
	}
}
