package longhorn

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/release"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/talforge/talforge/pkg/claim"
	"github.com/talforge/talforge/pkg/profile"
)

// Difference is one way the cluster differs from the profile.
type Difference struct {
	Kind, Name, Field string
	Want, Got         string
	fix               func(context.Context) error
}

func (d Difference) String() string {
	field := ""
	if d.Field != "" {
		field = " " + d.Field
	}
	return fmt.Sprintf("%s %s%s: want %s, got %s", d.Kind, d.Name, field, d.Want, d.Got)
}

const missing = "<missing>"

// Drift compares the live Helm values, credentials Secret, owned Settings, BackupTarget
// "default", RecurringJobs, StorageClasses and volume labels with the profile, at the
// installed Longhorn version. The result is sorted; values of Secrets are never shown.
func (cl *Client) Drift(ctx context.Context) ([]Difference, error) {
	rel, err := cl.helm.lastRelease()
	if err != nil {
		return nil, err
	}
	if rel == nil {
		return nil, ErrNotInstalled
	}
	version := rel.Chart.Metadata.Version
	vals, err := Values(cl.cluster, version)
	if err != nil {
		return nil, err
	}
	objs, err := BuildObjects(cl.cluster, version)
	if err != nil {
		return nil, err
	}
	var diffs []Difference
	add := func(d Difference) { diffs = append(diffs, d) }
	// An adopted release keeps its values (and the Settings they set) until it is upgraded.
	keep := keepsValues(cl.cluster.Longhorn, rel)

	otherValues := !sameValues(rel.Config, vals)
	if rel.Info.Status != "deployed" || (!keep && otherValues) {
		got := fmt.Sprintf("revision %d is %s", rel.Version, rel.Info.Status)
		if otherValues {
			var paths []string
			for _, c := range ValuesDiff(rel.Config, vals) {
				paths = append(paths, c.Path)
			}
			got = fmt.Sprintf("revision %d (%s) with other values at %s", rel.Version, rel.Info.Status, strings.Join(paths, ", "))
		}
		add(Difference{Kind: "HelmRelease", Name: ReleaseName, Field: "values", Want: "the values rendered from the profile for " + version, Got: got,
			fix: func(ctx context.Context) error { _, err := cl.upgradeTo(ctx, version, vals); return err }})
	}

	if b := cl.cluster.Longhorn.Backup; b != nil {
		want, err := credentialsSecret(cl.cluster, cl.opts.Decrypt)
		if err != nil {
			return nil, err
		}
		got, err := cl.kube.CS.CoreV1().Secrets(Namespace).Get(ctx, want.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			add(Difference{Kind: "Secret", Name: want.Name, Field: "data", Want: "keys from " + b.CredentialsFile, Got: missing, fix: cl.applyCredentials})
		case err != nil:
			return nil, err
		case !sameSecretData(got.Data, want.Data):
			add(Difference{Kind: "Secret", Name: want.Name, Field: "data", Want: "keys from " + b.CredentialsFile, Got: "other content (not shown)", fix: cl.applyCredentials})
		}
	}

	for _, s := range OwnedSettings(cl.cluster.Longhorn) {
		if keep {
			break
		}
		got, ok, err := cl.setting(ctx, s.Setting)
		if err != nil {
			return nil, err
		}
		if ok && settingEqual(s.Value, got) {
			continue
		}
		if !ok {
			got = missing
		}
		add(Difference{Kind: "Setting", Name: s.Setting, Field: "value", Want: quote(s.Value), Got: quote(got), fix: cl.settingFix(s)})
	}

	if b := cl.cluster.Longhorn.Backup; b != nil {
		st, err := cl.backupTarget(ctx)
		if err != nil {
			return nil, err
		}
		wantPoll, _ := time.ParseDuration(b.PollInterval)
		gotPoll, perr := time.ParseDuration(st.PollInterval)
		fix := cl.backupTargetFix(b.Target, b.CredentialSecret, wantPoll)
		switch {
		case !st.Exists:
			add(Difference{Kind: "BackupTarget", Name: DefaultBackupTarget, Want: "present", Got: missing, fix: fix})
		default:
			if st.URL != b.Target {
				add(Difference{Kind: "BackupTarget", Name: DefaultBackupTarget, Field: "spec.backupTargetURL", Want: quote(b.Target), Got: quote(st.URL), fix: fix})
			}
			if st.Secret != b.CredentialSecret {
				add(Difference{Kind: "BackupTarget", Name: DefaultBackupTarget, Field: "spec.credentialSecret", Want: quote(b.CredentialSecret), Got: quote(st.Secret), fix: fix})
			}
			if perr != nil || gotPoll != wantPoll {
				add(Difference{Kind: "BackupTarget", Name: DefaultBackupTarget, Field: "spec.pollInterval", Want: wantPoll.String(), Got: quote(st.PollInterval), fix: fix})
			}
		}
	}

	rjDiffs, err := cl.recurringJobDrift(ctx, objs.RecurringJobs)
	if err != nil {
		return nil, err
	}
	diffs = append(diffs, rjDiffs...)
	scDiffs, err := cl.storageClassDrift(ctx, objs.StorageClasses)
	if err != nil {
		return nil, err
	}
	diffs = append(diffs, scDiffs...)

	for _, v := range cl.cluster.Longhorn.Volumes {
		want := VolumeLabels(v)
		if len(want) == 0 {
			continue
		}
		r, err := claim.Resolve(ctx, cl.kube.CS, v.Namespace, v.Claim, v.Name)
		if err != nil {
			return nil, err
		}
		if r.Volume == "" {
			continue // no volume yet: nothing to label
		}
		live, err := cl.kube.Resource(VolumeGVR).Get(ctx, r.Volume, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue // not created yet: nothing to label
		}
		if err != nil {
			return nil, err
		}
		got := live.GetLabels()
		for _, k := range sortedKeys(want) {
			if got[k] != want[k] {
				g := got[k]
				if _, ok := got[k]; !ok {
					g = missing
				}
				add(Difference{Kind: "Volume", Name: r.Volume + " (claim " + r.String() + ")", Field: "label " + k, Want: want[k], Got: g, fix: cl.applyVolumeLabels})
			}
		}
	}

	slices.SortStableFunc(diffs, func(a, b Difference) int {
		return strings.Compare(a.Kind+"/"+a.Name+"/"+a.Field, b.Kind+"/"+b.Name+"/"+b.Field)
	})
	return diffs, nil
}

// Reconcile fixes the drift Drift finds and returns what it fixed. Settings and the
// BackupTarget are written directly (server-side apply, field manager talforge), as the
// chart's ConfigMaps are only re-read by Longhorn when they change.
func (cl *Client) Reconcile(ctx context.Context) ([]Difference, error) {
	if err := cl.preflight(ctx); err != nil {
		return nil, err
	}
	diffs, err := cl.Drift(ctx)
	if err != nil {
		return nil, err
	}
	return diffs, cl.fix(ctx, diffs)
}

// fix applies the fixes of diffs, once per object (one fix may cover several differences).
func (cl *Client) fix(ctx context.Context, diffs []Difference) error {
	done := map[string]bool{}
	for _, d := range diffs {
		key := d.Kind + "/" + d.Name
		if done[key] {
			continue
		}
		done[key] = true
		cl.logf("reconcile: %s", d)
		if err := d.fix(ctx); err != nil {
			return fmt.Errorf("reconcile %s %s: %w", d.Kind, d.Name, err)
		}
	}
	return nil
}

func (cl *Client) settingFix(s Setting) func(context.Context) error {
	return func(ctx context.Context) error {
		return cl.apply(ctx, SettingGVR, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "longhorn.io/v1beta2", "kind": "Setting",
			"metadata": map[string]any{"name": s.Setting, "namespace": Namespace},
			"value":    s.Value,
		}})
	}
}

func (cl *Client) backupTargetFix(url, secret string, poll time.Duration) func(context.Context) error {
	return func(ctx context.Context) error {
		return cl.apply(ctx, BackupTargetGVR, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "longhorn.io/v1beta2", "kind": "BackupTarget",
			"metadata": map[string]any{"name": DefaultBackupTarget, "namespace": Namespace},
			"spec": map[string]any{
				"backupTargetURL":  url,
				"credentialSecret": secret,
				"pollInterval":     poll.String(),
				// asks Longhorn to sync with the (new) target now
				"syncRequestedAt": cl.kube.Now().UTC().Format(time.RFC3339),
			},
		}})
	}
}

var recurringJobFields = []string{"task", "cron", "retain", "concurrency", "groups", "labels", "parameters"}

func (cl *Client) recurringJobDrift(ctx context.Context, want []*unstructured.Unstructured) ([]Difference, error) {
	var diffs []Difference
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w.GetName()] = true
		fix := func(ctx context.Context) error { return cl.apply(ctx, RecurringJobGVR, w) }
		live, err := cl.kube.Resource(RecurringJobGVR).Get(ctx, w.GetName(), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			diffs = append(diffs, Difference{Kind: "RecurringJob", Name: w.GetName(), Want: "present", Got: missing, fix: fix})
			continue
		}
		if err != nil {
			return nil, err
		}
		differs := false
		for _, f := range recurringJobFields {
			wv, _, _ := unstructured.NestedFieldNoCopy(w.Object, "spec", f)
			lv, _, _ := unstructured.NestedFieldNoCopy(live.Object, "spec", f)
			if a, b := canonical(f, wv), canonical(f, lv); a != b {
				diffs = append(diffs, Difference{Kind: "RecurringJob", Name: w.GetName(), Field: "spec." + f, Want: a, Got: b, fix: fix})
				differs = true
			}
		}
		if !differs && live.GetLabels()[ManagedByLabel] != ManagedBy {
			// A job made by hand with the profile's spec: applying it only adds talforge's label.
			diffs = append(diffs, Difference{Kind: "RecurringJob", Name: w.GetName(), Field: OwnershipField, Want: ManagedByLabel + "=" + ManagedBy, Got: missing, fix: fix})
		}
	}
	stale, err := cl.kube.Resource(RecurringJobGVR).List(ctx, metav1.ListOptions{LabelSelector: ManagedByLabel + "=" + ManagedBy})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	if stale != nil {
		for _, s := range stale.Items {
			name := s.GetName()
			if wanted[name] {
				continue
			}
			diffs = append(diffs, Difference{Kind: "RecurringJob", Name: name, Want: "absent (no longer in the profile)", Got: "present",
				fix: func(ctx context.Context) error {
					return cl.kube.Resource(RecurringJobGVR).Delete(ctx, name, metav1.DeleteOptions{})
				}})
		}
	}
	return diffs, nil
}

func (cl *Client) storageClassDrift(ctx context.Context, want []*unstructured.Unstructured) ([]Difference, error) {
	var diffs []Difference
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w.GetName()] = true
		fix := func(ctx context.Context) error { return cl.applyStorageClass(ctx, w) }
		live, err := cl.kube.CS.StorageV1().StorageClasses().Get(ctx, w.GetName(), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			diffs = append(diffs, Difference{Kind: "StorageClass", Name: w.GetName(), Want: "present", Got: missing, fix: fix})
			continue
		}
		if err != nil {
			return nil, err
		}
		fieldDiffs := storageClassFieldDiffs(w, live)
		for _, d := range fieldDiffs {
			d.Kind, d.Name, d.fix = "StorageClass", w.GetName(), fix
			diffs = append(diffs, d)
		}
		if len(fieldDiffs) == 0 && live.Labels[ManagedByLabel] != ManagedBy && cl.adoptedClass(w.GetName()) {
			diffs = append(diffs, Difference{Kind: "StorageClass", Name: w.GetName(), Field: OwnershipField, Want: ManagedByLabel + "=" + ManagedBy, Got: missing, fix: fix})
		}
	}
	list, err := cl.kube.CS.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{LabelSelector: ManagedByLabel + "=" + ManagedBy})
	if err != nil {
		return nil, err
	}
	for _, s := range list.Items {
		name := s.Name
		if wanted[name] {
			continue
		}
		diffs = append(diffs, Difference{Kind: "StorageClass", Name: name, Want: "absent (no longer in the profile)", Got: "present",
			fix: func(ctx context.Context) error {
				return cl.kube.CS.StorageV1().StorageClasses().Delete(ctx, name, metav1.DeleteOptions{})
			}})
	}
	return diffs, nil
}

// OwnershipField is the Difference.Field of an object the profile adopted (made by hand, found
// by talforge import) that lacks only talforge's label: taking it over changes nothing else.
const OwnershipField = "ownership"

// Ownership reports whether the difference is only talforge's ownership label.
func (d Difference) Ownership() bool { return d.Field == OwnershipField }

// adoptedClass reports whether the profile declares the StorageClass as adopted.
func (cl *Client) adoptedClass(name string) bool {
	for _, sc := range cl.cluster.Longhorn.StorageClasses {
		if sc.Name == name {
			return sc.Adopted
		}
	}
	return false
}

// storageClassDefaults are the values Longhorn's CSI driver takes for a parameter a
// StorageClass leaves out (longhorn-manager csi/controller_server.go and types: fsType ext4,
// dataLocality disabled, the backup target "default", no backup to restore from): absent and
// the default are the same class.
var storageClassDefaults = map[string]string{"fsType": "ext4", "dataLocality": "disabled", "backupTargetName": "default", "fromBackup": ""}

// storageClassFieldDiffs compares the immutable fields of a StorageClass.
func storageClassFieldDiffs(want *unstructured.Unstructured, live *storagev1.StorageClass) []Difference {
	var out []Difference
	str := func(f string) string { s, _, _ := unstructured.NestedString(want.Object, f); return s }
	liveReclaim, liveBinding := "", ""
	if live.ReclaimPolicy != nil {
		liveReclaim = string(*live.ReclaimPolicy)
	}
	if live.VolumeBindingMode != nil {
		liveBinding = string(*live.VolumeBindingMode)
	}
	for _, c := range []struct{ field, want, got string }{
		{"provisioner", str("provisioner"), live.Provisioner},
		{"reclaimPolicy", str("reclaimPolicy"), liveReclaim},
		{"volumeBindingMode", str("volumeBindingMode"), liveBinding},
	} {
		if c.want != c.got {
			out = append(out, Difference{Field: c.field, Want: quote(c.want), Got: quote(c.got)})
		}
	}
	params, _, _ := unstructured.NestedStringMap(want.Object, "parameters")
	keys := sortedKeys(params)
	for k := range live.Parameters {
		if _, ok := params[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range slices.Compact(keys) {
		w, wok := params[k]
		g, gok := live.Parameters[k]
		if w == g && wok == gok {
			continue
		}
		if def, ok := storageClassDefaults[k]; ok && orDefault(w, wok, def) == orDefault(g, gok, def) {
			continue
		}
		if !wok {
			w = "<absent>"
		}
		if !gok {
			g = missing
		}
		out = append(out, Difference{Field: "parameters." + k, Want: quote(w), Got: quote(g)})
	}
	return out
}

func storageClassDiffers(want *unstructured.Unstructured, live *storagev1.StorageClass) bool {
	return len(storageClassFieldDiffs(want, live)) > 0
}

// canonical renders a spec field for comparison: groups are a set, absent maps and lists
// are empty.
func canonical(field string, v any) string {
	switch field {
	case "groups":
		var gs []string
		if l, ok := v.([]any); ok {
			for _, g := range l {
				gs = append(gs, fmt.Sprint(g))
			}
		}
		slices.Sort(gs)
		return "[" + strings.Join(gs, ",") + "]"
	case "labels", "parameters":
		m := map[string]any{}
		if mm, ok := v.(map[string]any); ok {
			m = maps.Clone(mm)
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// settingEqual: Longhorn 1.10+ may store a per-data-engine setting as JSON
// ({"v1":"2","v2":"2"}) where talforge wrote "2".
func settingEqual(want, got string) bool {
	if want == got {
		return true
	}
	var m map[string]string
	if json.Unmarshal([]byte(got), &m) != nil || len(m) == 0 {
		return false
	}
	for _, v := range m {
		if v != want {
			return false
		}
	}
	return true
}

func quote(s string) string {
	if s == missing {
		return s
	}
	return fmt.Sprintf("%q", s)
}

// keepsValues reports whether the installed release keeps its own values: the profile adopted
// it (longhorn.keepReleaseValues) and it runs the profile's version, deployed.
func keepsValues(l *profile.Longhorn, rel *release.Release) bool {
	return l.KeepReleaseValues && rel != nil && rel.Info.Status == "deployed" && rel.Chart.Metadata.Version == l.Version
}

// StorageClassParameterDefault is the value Longhorn takes for a StorageClass parameter left
// out, for the parameters talforge always writes.
func StorageClassParameterDefault(key string) (string, bool) {
	def, ok := storageClassDefaults[key]
	return def, ok
}

func orDefault(v string, ok bool, def string) string {
	if !ok {
		return def
	}
	return v
}
