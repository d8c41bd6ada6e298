// BackupTarget "default": longhorn-default-resource applied to the CR and, without a data
// path, its availability judged from the URL and the credential Secret.

package lhmanager

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// SetBackupStoreError makes the backup target unavailable with msg (e.g. an S3
// AccessDenied) whatever the store says; "" restores normal behaviour.
func (m *Manager) SetBackupStoreError(msg string) {
	m.mu.Lock()
	m.storeError = msg
	m.mu.Unlock()
	m.poke()
}

// syncBackupTarget applies longhorn-default-resource to BackupTarget "default" as
// upstream's CreateOrUpdateDefaultBackupTarget (keys absent from the ConfigMap keep the
// CR's value; poll interval defaults to 300 s), then reports availability.
func (m *Manager) syncBackupTarget(ctx context.Context) error {
	cm, err := m.cms.ConfigMaps(m.ns).Get(DefaultResourceConfigMap)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	res := m.dyn.Resource(BackupTargetGVR).Namespace(m.ns)
	bt, err := res.Get(ctx, DefaultBackupTarget, metav1.GetOptions{})
	switch {
	case meta.IsNoMatchError(err):
		return nil
	case apierrors.IsNotFound(err):
		if ok, err := m.crdServed(ctx, BackupTargetGVR); !ok {
			return err
		}
		bt = &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": group + "/" + version, "kind": "BackupTarget",
			"metadata": map[string]any{"name": DefaultBackupTarget, "namespace": m.ns},
			"spec":     map[string]any{"backupTargetURL": "", "credentialSecret": "", "pollInterval": (300 * time.Second).String()},
		}}
		m.appliedResourceRV = ""
	case err != nil:
		return err
	}
	if cm.ResourceVersion != m.appliedResourceRV {
		custom, err := parseFlatYAML(cm.Data["default-resource.yaml"])
		if err != nil {
			m.logf("default resource ConfigMap is invalid: %v", err)
			custom = nil
		}
		spec, _, _ := unstructured.NestedMap(bt.Object, "spec")
		if spec == nil {
			spec = map[string]any{}
		}
		if v, ok := custom["backup-target"]; ok {
			spec["backupTargetURL"] = v
		}
		if v, ok := custom["backup-target-credential-secret"]; ok {
			spec["credentialSecret"] = v
		}
		if v, ok := custom["backupstore-poll-interval"]; ok {
			secs, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				m.logf("invalid backupstore-poll-interval %q: %v", v, err)
			} else {
				spec["pollInterval"] = (time.Duration(secs) * time.Second).String()
			}
		}
		spec["syncRequestedAt"] = time.Now().UTC().Format(time.RFC3339)
		bt.Object["spec"] = spec
		if bt.GetResourceVersion() == "" {
			bt, err = createCR(ctx, res, bt)
		} else {
			bt, err = res.Update(ctx, bt, metav1.UpdateOptions{})
		}
		if err != nil {
			return err
		}
		m.appliedResourceRV = cm.ResourceVersion
	}
	if m.data != nil {
		return nil // RunBackups reaches the store and reports availability
	}
	return m.updateBackupTargetStatus(ctx, bt)
}

func (m *Manager) updateBackupTargetStatus(ctx context.Context, bt *unstructured.Unstructured) error {
	url, _, _ := unstructured.NestedString(bt.Object, "spec", "backupTargetURL")
	secret, _, _ := unstructured.NestedString(bt.Object, "spec", "credentialSecret")
	problem := m.backupStoreProblem(url, secret, m.secrets.Secrets(m.ns).Get)
	available := problem == ""
	oldAvail, _, _ := unstructured.NestedBool(bt.Object, "status", "available")
	oldConds, _, _ := unstructured.NestedSlice(bt.Object, "status", "conditions")
	oldMsg := ""
	if len(oldConds) > 0 {
		if c, ok := oldConds[0].(map[string]any); ok {
			oldMsg, _ = c["message"].(string)
		}
	}
	if _, has, _ := unstructured.NestedFieldNoCopy(bt.Object, "status", "available"); has && oldAvail == available && oldMsg == problem {
		return nil
	}
	now := time.Now().UTC().Format(time.RFC3339)
	status := map[string]any{"available": available, "ownerID": "node-1"}
	// lastSyncedAt says when the backup store was last listed: only the backup loop sets it.
	if last, ok, _ := unstructured.NestedString(bt.Object, "status", "lastSyncedAt"); ok {
		status["lastSyncedAt"] = last
	}
	if available {
		status["conditions"] = []any{map[string]any{"type": "Unavailable", "status": "False", "reason": "", "message": "", "lastTransitionTime": now}}
	} else {
		status["conditions"] = []any{map[string]any{"type": "Unavailable", "status": "True", "reason": "Unavailable", "message": problem, "lastTransitionTime": now}}
	}
	bt.Object["status"] = status
	_, err := m.dyn.Resource(BackupTargetGVR).Namespace(m.ns).UpdateStatus(ctx, bt, metav1.UpdateOptions{})
	return err
}

// credentialKeys are the Secret keys Longhorn refuses with surrounding whitespace.
var credentialKeys = []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINTS", "AWS_CERT", "AWS_IAM_ROLE_ARN", "VIRTUAL_HOSTED_STYLE"}

// backupStoreProblem says why the backup store cannot be used before trying it (the URL's
// form, the credential Secret), or "" when nothing stands in the way; getSecret reads the
// Secret from the namespace.
func (m *Manager) backupStoreProblem(url, secretName string, getSecret func(name string) (*corev1.Secret, error)) string {
	if url == "" {
		return "backup target URL is empty"
	}
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return fmt.Sprintf("invalid backup target URL %s: missing scheme", url)
	}
	switch scheme {
	case "s3":
		host, _, hasPath := strings.Cut(rest, "/")
		bucket, _, _ := strings.Cut(host, "@")
		if bucket == "" || !hasPath {
			return "invalid URL. Must be either s3://bucket@region/path/, or s3://bucket/path"
		}
	case "nfs", "cifs", "azblob":
	default:
		return fmt.Sprintf("failed to init backup target clients: unsupported backup store type %q", scheme)
	}
	if strings.ContainsAny(rest, "$") {
		return fmt.Sprintf("url %s contains an invalid character", url)
	}
	if secretName != "" {
		sec, err := getSecret(secretName)
		if apierrors.IsNotFound(err) {
			// the apiserver's wording (the lister says "secret")
			err = apierrors.NewNotFound(corev1.Resource("secrets"), secretName)
		}
		if err != nil {
			return fmt.Sprintf("failed to get credential secret %s/%s: %v", m.ns, secretName, err)
		}
		var bad []string
		for _, k := range credentialKeys {
			v := string(sec.Data[k])
			if v == strings.TrimSpace(v) {
				continue
			}
			where, c := "leading", v[0]
			if v != strings.TrimRight(v, " \t\r\n") {
				where, c = "trailing", v[len(v)-1]
			}
			kind := "space"
			if c == '\n' || c == '\r' {
				kind = "newline"
			}
			bad = append(bad, fmt.Sprintf("invalid %s %s in %s", where, kind, k))
		}
		if len(bad) > 0 {
			return "credential validation error(s): " + strings.Join(bad, "; ")
		}
		// Without a data path nothing tries the keys; with one the S3 driver reports what is
		// missing, as in Longhorn.
		if m.data == nil && scheme == "s3" && len(sec.Data["AWS_IAM_ROLE_ARN"]) == 0 {
			for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
				if len(sec.Data[k]) == 0 {
					return fmt.Sprintf("credential secret %s/%s has no %s", m.ns, secretName, k)
				}
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.storeError
}
