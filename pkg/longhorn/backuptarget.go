package longhorn

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// waitBackupTarget waits for BackupTarget "default" to point at the profile's target and
// be available, and otherwise says why from its status.
func (cl *Client) waitBackupTarget(ctx context.Context) error {
	b := cl.cluster.Longhorn.Backup
	if b == nil {
		return nil
	}
	err := cl.kube.WaitWatching(ctx, cl.opts.BackupTargetTimeout, "BackupTarget "+DefaultBackupTarget+" available", BackupTargetGVR, DefaultBackupTarget, func(ctx context.Context) (bool, string, error) {
		st, err := cl.backupTarget(ctx)
		if err != nil {
			return false, "", err
		}
		switch {
		case !st.Exists:
			return false, "it does not exist yet (longhorn-manager creates it from the longhorn-default-resource ConfigMap)", nil
		case st.URL != b.Target:
			return false, fmt.Sprintf("it points at %q, not %q yet", st.URL, b.Target), nil
		case !st.Available:
			if st.Message == "" {
				return false, "Longhorn has not reported it available", nil
			}
			return false, "Longhorn reports: " + st.Message, nil
		}
		return true, "", nil
	})
	if err != nil {
		return fmt.Errorf("backups are not working: %w", err)
	}
	cl.logf("BackupTarget %s available: %s", DefaultBackupTarget, b.Target)
	return nil
}

// BackupTargetStatus is what Longhorn reports about BackupTarget "default".
type BackupTargetStatus struct {
	Exists       bool
	URL          string
	Secret       string
	PollInterval string
	Available    bool
	Message      string
}

func (cl *Client) backupTarget(ctx context.Context) (BackupTargetStatus, error) {
	u, err := cl.kube.Resource(BackupTargetGVR).Get(ctx, DefaultBackupTarget, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return BackupTargetStatus{}, nil
	}
	if err != nil {
		return BackupTargetStatus{}, err
	}
	st := BackupTargetStatus{Exists: true}
	st.URL, _, _ = unstructured.NestedString(u.Object, "spec", "backupTargetURL")
	st.Secret, _, _ = unstructured.NestedString(u.Object, "spec", "credentialSecret")
	st.PollInterval, _, _ = unstructured.NestedString(u.Object, "spec", "pollInterval")
	st.Available, _, _ = unstructured.NestedBool(u.Object, "status", "available")
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["status"] == "True" {
			if msg, _ := m["message"].(string); msg != "" {
				st.Message = msg
			}
		}
	}
	return st, nil
}
