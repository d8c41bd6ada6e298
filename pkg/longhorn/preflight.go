package longhorn

import (
	"context"
	"fmt"

	"github.com/talforge/talforge/pkg/profile"
)

// BackupCredentials decrypts the profile's longhorn.backup.credentialsFile in memory and
// returns the credential Secret's data as strings, key for key: what Longhorn's S3 driver
// reads from its environment. decrypt is sopsfile.DecryptFile unless a test says otherwise.
// The same checks as for the Secret apply; errors name the file and key, never a value.
func BackupCredentials(c *profile.Cluster, decrypt func(string) ([]byte, error)) (map[string]string, error) {
	if c.Longhorn == nil || c.Longhorn.Backup == nil {
		return nil, fmt.Errorf("%s has no longhorn.backup section", c.File())
	}
	sec, err := credentialsSecret(c, decrypt)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(sec.Data))
	for k, v := range sec.Data {
		out[k] = string(v)
	}
	return out, nil
}

// backupPreflight runs Options.Preflight against the profile's backup target, if both are
// set, before a Helm action: a target Longhorn cannot use is found before Longhorn is
// installed or upgraded pointing at it, with a message that says what to fix, instead of
// minutes later as BackupTarget "default" never becoming available.
func (cl *Client) backupPreflight(ctx context.Context) error {
	b := cl.cluster.Longhorn.Backup
	if cl.opts.Preflight == nil || b == nil || b.Target == "" {
		return nil
	}
	creds, err := BackupCredentials(cl.cluster, cl.opts.Decrypt)
	if err != nil {
		return err
	}
	defer clear(creds)
	cl.logf("checking backup target %s", b.Target)
	if err := cl.opts.Preflight(ctx, b.Target, creds); err != nil {
		return fmt.Errorf("backup target preflight: %w", err)
	}
	return nil
}
