package longhorn

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
)

// TestPreflightHookRunsBeforeHelm: Install and Upgrade call Options.Preflight with the
// profile's target and the decrypted credentials before any Helm action, and its error
// stops them; without a hook nothing is checked.
func TestPreflightHookRunsBeforeHelm(t *testing.T) {
	e := newEnv(t, "1.9.2")
	type call struct {
		target string
		creds  map[string]string
	}
	var calls []call
	refuse := errors.New(`preflight step "write" failed: AccessDenied`)
	hook := func(fail bool) func(*Options) {
		return func(o *Options) {
			o.Preflight = func(_ context.Context, target string, creds map[string]string) error {
				calls = append(calls, call{target, maps.Clone(creds)})
				if fail {
					return refuse
				}
				return nil
			}
		}
	}
	wantCreds := map[string]string{"AWS_ACCESS_KEY_ID": "AKIATALFORGETEST0001", "AWS_SECRET_ACCESS_KEY": e.secret}

	_, err := e.client(hook(true)).Install(e.ctx)
	if !errors.Is(err, refuse) || !strings.Contains(err.Error(), "backup target preflight") {
		t.Fatalf("install with a failing preflight: err = %v", err)
	}
	if e.revision() != 0 {
		t.Fatalf("Helm ran after the preflight failed: revision %d", e.revision())
	}
	if len(calls) != 1 || calls[0].target != "s3://tazlab-longhorn@eu-central-1/" || !maps.Equal(calls[0].creds, wantCreds) {
		t.Fatalf("preflight calls = %+v", calls)
	}

	if res, err := e.client(hook(false)).Install(e.ctx); err != nil || res.Action != "install" || len(calls) != 2 {
		t.Fatalf("install with a passing preflight = %+v, %v (%d calls)", res, err, len(calls))
	}

	e.setVersion("1.9.2", "1.10.2")
	if _, err := e.client(hook(true)).Upgrade(e.ctx, "1.10.2"); !errors.Is(err, refuse) {
		t.Fatalf("upgrade with a failing preflight: err = %v", err)
	}
	if e.revision() != 1 || len(e.mgr.UpgradeChecks()) != 0 || len(calls) != 3 {
		t.Errorf("Helm ran after the preflight failed: revision %d, checks %q, %d calls", e.revision(), e.mgr.UpgradeChecks(), len(calls))
	}

	// No hook, no check: the existing tests install against a bucket that does not exist.
	if _, err := e.client().Upgrade(e.ctx, "1.10.2"); err != nil || len(calls) != 3 {
		t.Errorf("upgrade without a hook: %v (%d calls)", err, len(calls))
	}
}

func TestBackupCredentials(t *testing.T) {
	p := newProject(t, "1.10.2", nil)
	c := p.load(t)
	decrypt := func(plain string) func(string) ([]byte, error) {
		return func(path string) ([]byte, error) {
			if path != c.Resolve(c.Longhorn.Backup.CredentialsFile) {
				t.Errorf("decrypt(%q)", path)
			}
			return []byte(plain), nil
		}
	}
	got, err := BackupCredentials(c, decrypt("AWS_ACCESS_KEY_ID: AKIA1\nAWS_SECRET_ACCESS_KEY: s3cr3t\nAWS_ENDPOINTS: https://minio.lan:9000\nVIRTUAL_HOSTED_STYLE: false\n"))
	want := map[string]string{"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "s3cr3t", "AWS_ENDPOINTS": "https://minio.lan:9000", "VIRTUAL_HOSTED_STYLE": "false"}
	if err != nil || !maps.Equal(got, want) {
		t.Errorf("BackupCredentials = %v, %v", got, err)
	}
	// The Secret's checks apply, and no value is shown.
	if _, err := BackupCredentials(c, decrypt("AWS_ACCESS_KEY_ID: AKIA1\nAWS_SECRET_ACCESS_KEY: \"s3cr3t\\n\"\n")); err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("a secret with a newline: %v", err)
	}
	c.Longhorn.Backup = nil
	if _, err := BackupCredentials(c, decrypt("")); err == nil {
		t.Error("no backup section: no error")
	}
}
