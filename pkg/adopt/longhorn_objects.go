package adopt

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/talforge/talforge/pkg/backuptarget"
	"github.com/talforge/talforge/pkg/claim"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
)

// longhornDefaultRecurringJobConcurrency is what Longhorn runs a job with concurrency 0 at
// (longhorn-manager types/types.go DefaultRecurringJobConcurrency).
const longhornDefaultRecurringJobConcurrency = 10

var secretGVR = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// backup reads BackupTarget "default", the live truth longhorn-manager made from the
// chart's defaultBackupStore (docs/longhorn.md#backup-target), and compares it with the
// values.
func (r *lhReader) backup(ctx context.Context) error {
	s := r.split
	var url, secret, poll string
	u, err := r.res(longhorn.BackupTargetGVR).Get(ctx, longhorn.DefaultBackupTarget, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		// longhorn-manager has not made it yet: the values are all there is.
		if s.backupTarget != nil {
			url = *s.backupTarget
		}
		if s.credentialSecret != nil {
			secret = *s.credentialSecret
		}
		if s.pollSeconds != nil {
			if n, err := strconv.Atoi(*s.pollSeconds); err == nil {
				poll = formatDuration(time.Duration(n) * time.Second)
			}
		}
		r.note("BackupTarget %q does not exist (longhorn-manager makes it from the chart's longhorn-default-resource ConfigMap): the backup block comes from the Helm values alone", longhorn.DefaultBackupTarget)
	case err != nil:
		return fmt.Errorf("read BackupTarget %s/%s: %w", r.ns, longhorn.DefaultBackupTarget, err)
	default:
		url, _, _ = unstructured.NestedString(u.Object, "spec", "backupTargetURL")
		secret, _, _ = unstructured.NestedString(u.Object, "spec", "credentialSecret")
		p, _, _ := unstructured.NestedString(u.Object, "spec", "pollInterval")
		if d, err := time.ParseDuration(p); err == nil {
			poll = formatDuration(d)
		}
		r.compareBackupValues(url, secret, poll)
	}
	if url == "" {
		r.note("Longhorn has no backup target: longhorn.backup is left out, and with it every claim's way back after a rebuild; set longhorn.backup.target to an S3 bucket")
		return nil
	}
	b := &profile.LonghornBackup{Target: url, CredentialSecret: secret, PollInterval: poll, CredentialsFile: credentialsFile}
	r.out.Longhorn.Backup = b
	if !strings.HasPrefix(url, "s3://") {
		r.note("the backup target %s is not S3: talforge manages S3 targets only (s3://bucket@region/path/)", url)
	}
	if secret == "" {
		r.note("the backup target names no credential Secret; talforge always gives it one (%s)", profile.DefaultBackupCredentialSecret)
		return nil
	}
	// The metadata API returns the object's metadata only: the Secret's data never reaches
	// this process.
	_, err = r.meta.Resource(secretGVR).Namespace(r.ns).Get(ctx, secret, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		r.note("the backup credential Secret %s/%s does not exist: Longhorn cannot reach %s", r.ns, secret, url)
	case err != nil:
		return fmt.Errorf("look up Secret %s/%s: %w", r.ns, secret, err)
	}
	// The keys themselves are the caller's to take (talforge import stores them encrypted in
	// credentialsFile): this package never reads a Secret's data.
	return nil
}

// compareBackupValues notes where the values' defaultBackupStore and the live BackupTarget
// disagree (an edit in the UI since the last Helm upgrade or manager restart).
func (r *lhReader) compareBackupValues(url, secret, poll string) {
	s := r.split
	if s.backupTarget != nil && *s.backupTarget != url {
		r.note("the values' defaultBackupStore.backupTarget is %q but BackupTarget %q points at %q (changed outside Helm): the profile keeps the live one", *s.backupTarget, longhorn.DefaultBackupTarget, url)
	}
	if s.credentialSecret != nil && *s.credentialSecret != secret {
		r.note("the values' defaultBackupStore.backupTargetCredentialSecret is %q but BackupTarget %q uses %q: the profile keeps the live one", *s.credentialSecret, longhorn.DefaultBackupTarget, secret)
	}
	if s.pollSeconds != nil {
		if n, err := strconv.Atoi(*s.pollSeconds); err == nil && formatDuration(time.Duration(n)*time.Second) != poll {
			r.note("the values' defaultBackupStore.pollInterval is %ss but BackupTarget %q polls every %s: the profile keeps the live one", *s.pollSeconds, longhorn.DefaultBackupTarget, poll)
		}
	}
}

// formatDuration writes a whole-second duration the way a person writes it in a profile
// (5m, 1h, 90s) rather than time.Duration's 5m0s.
func formatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}

// recurringJobs reads every RecurringJob (v1beta2 recurringjob.go RecurringJobSpec).
func (r *lhReader) recurringJobs(ctx context.Context) error {
	list, err := r.res(longhorn.RecurringJobGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list Longhorn RecurringJobs in %s: %w", r.ns, err)
	}
	var jobs []profile.RecurringJob
	for _, u := range list.Items {
		spec, _, _ := unstructured.NestedMap(u.Object, "spec")
		j := profile.RecurringJob{Name: u.GetName()}
		j.Task, _ = spec["task"].(string)
		j.Cron, _ = spec["cron"].(string)
		j.Retain, _ = intOf(spec["retain"])
		j.Concurrency, _ = intOf(spec["concurrency"])
		j.Groups, _, _ = unstructured.NestedStringSlice(spec, "groups")
		j.Labels, _, _ = unstructured.NestedStringMap(spec, "labels")
		j.Parameters, _, _ = unstructured.NestedStringMap(spec, "parameters")
		if len(j.Labels) == 0 {
			j.Labels = nil
		}
		if len(j.Parameters) == 0 {
			j.Parameters = nil
		}
		if j.Concurrency <= 0 {
			// Longhorn runs concurrency 0 as 10; the profile writes it out (it needs ≥ 1).
			j.Concurrency = longhornDefaultRecurringJobConcurrency
			r.note("RecurringJob %s has concurrency 0, which Longhorn runs as %d: the profile says %d (talforge will write it into the job)", j.Name, longhornDefaultRecurringJobConcurrency, longhornDefaultRecurringJobConcurrency)
		}
		if j.Task == "system-backup" && r.minor < 9 {
			r.note("RecurringJob %s is a system-backup job, which Longhorn 1.%d does not run", j.Name, r.minor)
		}
		jobs = append(jobs, j)
	}
	slices.SortFunc(jobs, func(a, b profile.RecurringJob) int { return strings.Compare(a.Name, b.Name) })
	if len(jobs) == 0 {
		return nil
	}
	if r.out.Longhorn.Backup == nil {
		// longhorn.backup holds the jobs; without a target it does not validate, which is
		// what the note above asks the user to fix.
		r.out.Longhorn.Backup = &profile.LonghornBackup{CredentialsFile: credentialsFile}
	}
	r.out.Longhorn.Backup.RecurringJobs = jobs
	r.note("RecurringJobs %s carry no %s=%s label: talforge takes them over (server-side apply) on the first `talforge up`", jobNames(jobs), longhorn.ManagedByLabel, longhorn.ManagedBy)
	return nil
}

func jobNames(jobs []profile.RecurringJob) string {
	var names []string
	for _, j := range jobs {
		names = append(names, j.Name)
	}
	return strings.Join(names, ", ")
}

// storageClasses reads the classes Longhorn provisions, except the chart's own (made by
// longhorn-manager from the longhorn-storageclass ConfigMap) and longhorn-manager's static
// class, and says which of their fields talforge would render otherwise
// (longhorn.BuildObjects, the same objects `talforge up` applies).
func (r *lhReader) storageClasses(ctx context.Context) error {
	list, err := r.conn.CS.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list StorageClasses: %w", err)
	}
	static := r.live[staticStorageClassSetting]
	if static == "" {
		static = builtinDefault(staticStorageClassSetting, r.minor)
	}
	var owned []string
	for _, sc := range list.Items {
		if sc.Provisioner != longhorn.CSIDriver || sc.Name == profile.DefaultVolumeStorageClass || sc.Name == static {
			continue
		}
		if _, ok := sc.Annotations[lastAppliedConfigMapAnnotation]; ok {
			continue
		}
		p := sc.Parameters
		c := profile.StorageClass{Name: sc.Name, ReclaimPolicy: profile.DefaultReclaimPolicy, FSType: p["fsType"], DataLocality: p["dataLocality"]}
		if sc.ReclaimPolicy != nil {
			c.ReclaimPolicy = string(*sc.ReclaimPolicy)
		}
		c.Replicas, _ = intOf(p["numberOfReplicas"])
		if c.FSType == "" {
			c.FSType = profile.DefaultStorageClassFSType // the CSI driver's default (csi/util.go)
		}
		if c.DataLocality == "" {
			c.DataLocality = "disabled"
		}
		if sel := p["recurringJobSelector"]; sel != "" {
			var entries []struct {
				Name    string `json:"name"`
				IsGroup bool   `json:"isGroup"`
			}
			if err := json.Unmarshal([]byte(sel), &entries); err != nil {
				r.note("StorageClass %s: recurringJobSelector %q is not JSON, so Longhorn refuses every volume of it (csi/util.go): left out", sc.Name, sel)
			}
			for _, e := range entries {
				if e.IsGroup {
					c.RecurringJobGroups = append(c.RecurringJobGroups, e.Name)
				} else {
					c.RecurringJobs = append(c.RecurringJobs, e.Name)
				}
			}
		}
		r.out.Longhorn.StorageClasses = append(r.out.Longhorn.StorageClasses, c)
		owned = append(owned, sc.Name)

		objs, err := longhorn.BuildObjects(&profile.Cluster{Longhorn: &profile.Longhorn{StorageClasses: []profile.StorageClass{c}}}, r.version)
		if err != nil {
			r.note("StorageClass %s: talforge cannot render it: %v", sc.Name, err)
			continue
		}
		want := objs.StorageClasses[0]
		var diffs []string
		wp, _, _ := unstructured.NestedStringMap(want.Object, "parameters")
		for _, k := range lhKeys(union(wp, p)) {
			w, wok := wp[k]
			g, gok := p[k]
			if def, ok := longhorn.StorageClassParameterDefault(k); ok && (!wok || !gok) && cmp.Or(w, def) == cmp.Or(g, def) {
				continue // left out here, Longhorn's default there: the same class
			}
			if w != g && (k != "recurringJobSelector" || !sameSelector(w, g)) {
				diffs = append(diffs, fmt.Sprintf("parameters.%s %s (talforge: %s)", k, orAbsent(g), orAbsent(w)))
			}
		}
		binding := ""
		if sc.VolumeBindingMode != nil {
			binding = string(*sc.VolumeBindingMode)
		}
		if w, _, _ := unstructured.NestedString(want.Object, "volumeBindingMode"); w != binding {
			diffs = append(diffs, fmt.Sprintf("volumeBindingMode %s (talforge: %s)", orAbsent(binding), w))
		}
		expand := sc.AllowVolumeExpansion != nil && *sc.AllowVolumeExpansion
		if w, _, _ := unstructured.NestedBool(want.Object, "allowVolumeExpansion"); w != expand {
			diffs = append(diffs, fmt.Sprintf("allowVolumeExpansion %t (talforge: %t)", expand, w))
		}
		if len(diffs) > 0 {
			r.note("StorageClass %s has what the profile cannot say: %s. talforge never re-creates a class it adopted: until the profile says the same, up stops at it",
				sc.Name, strings.Join(diffs, ", "))
		}
	}
	slices.SortFunc(r.out.Longhorn.StorageClasses, func(a, b profile.StorageClass) int { return strings.Compare(a.Name, b.Name) })
	if len(owned) > 0 {
		slices.Sort(owned)
		r.note("StorageClasses %s carry no %s=%s label: import adopts them (longhorn.storageClasses[].adopted), and the first up labels them talforge's, changing nothing else",
			strings.Join(owned, ", "), longhorn.ManagedByLabel, longhorn.ManagedBy)
	}
	return nil
}

// sameSelector compares recurringJobSelector JSON as a set: the CSI driver reads it into a
// list of {name,isGroup} and labels the volume with each (csi/util.go), so order is moot.
func sameSelector(a, b string) bool {
	parse := func(s string) []string {
		var entries []struct {
			Name    string `json:"name"`
			IsGroup bool   `json:"isGroup"`
		}
		if json.Unmarshal([]byte(s), &entries) != nil {
			return []string{"invalid:" + s}
		}
		var out []string
		for _, e := range entries {
			out = append(out, fmt.Sprintf("%s/%t", e.Name, e.IsGroup))
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(parse(a), parse(b))
}

func union(a, b map[string]string) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

func orAbsent(s string) string {
	if s == "" {
		return "<absent>"
	}
	return strconv.Quote(s)
}

// volumes lists the claims whose volumes have a completed backup: the claim from the
// backup's KubernetesStatus label (longhorn-manager api/snapshot.go), else from the
// volume's status.kubernetesStatus; then the claim's size and class, and the volume's
// recurring-job labels.
func (r *lhReader) volumes(ctx context.Context) error {
	list, err := r.res(longhorn.BackupGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list Longhorn Backups in %s: %w", r.ns, err)
	}
	type backed struct {
		ns, claim string
		size      int64 // bytes, from the newest backup seen
	}
	claims := map[string]*backed{}
	var claimless []string
	volumeStatus := map[string]*backuptarget.KubernetesStatus{}
	for _, b := range list.Items {
		if st, _, _ := unstructured.NestedString(b.Object, "status", "state"); st != longhorn.BackupStateCompleted {
			continue
		}
		vol, _, _ := unstructured.NestedString(b.Object, "status", "volumeName")
		if vol == "" {
			vol = b.GetLabels()[longhorn.BackupVolumeLabel]
		}
		labels, _, _ := unstructured.NestedStringMap(b.Object, "status", "labels")
		if len(labels) == 0 {
			labels, _, _ = unstructured.NestedStringMap(b.Object, "spec", "labels")
		}
		ks, ok := backuptarget.ParseKubernetesStatus(labels)
		if !ok {
			if ks, ok = volumeStatus[vol]; !ok {
				ks, err = r.volumeClaim(ctx, vol)
				if err != nil {
					return err
				}
				volumeStatus[vol] = ks
			}
		}
		if ks == nil {
			claimless = append(claimless, vol)
			continue
		}
		key := ks.Namespace + "/" + ks.PVCName
		size, _, _ := unstructured.NestedString(b.Object, "status", "volumeSize")
		n, _ := strconv.ParseInt(size, 10, 64)
		if c, ok := claims[key]; !ok || n > c.size {
			claims[key] = &backed{ns: ks.Namespace, claim: ks.PVCName, size: n}
		}
	}
	if len(claimless) > 0 {
		slices.Sort(claimless)
		r.note("backups of volume(s) %s name no claim (neither the backup's KubernetesStatus label nor the volume's status): they are not in longhorn.volumes; restore them by backup name",
			strings.Join(slices.Compact(claimless), ", "))
	}
	scs := map[string]bool{profile.DefaultVolumeStorageClass: true}
	for _, sc := range r.out.Longhorn.StorageClasses {
		scs[sc.Name] = true
	}
	for _, key := range lhKeys(claims) {
		c := claims[key]
		v := profile.Volume{Namespace: c.ns, Claim: c.claim}
		pvc, err := r.conn.CS.CoreV1().PersistentVolumeClaims(c.ns).Get(ctx, c.claim, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if c.size > 0 {
				v.Size = resource.NewQuantity(c.size, resource.BinarySI).String()
			}
			r.note("claim %s has backups but no longer exists: longhorn.volumes keeps it (size from its backup, StorageClass %s assumed) so that `talforge rebuild` restores it",
				key, profile.DefaultVolumeStorageClass)
		case err != nil:
			return fmt.Errorf("read claim %s: %w", key, err)
		default:
			if q, ok := pvc.Spec.Resources.Requests["storage"]; ok {
				v.Size = q.String()
			}
			if pvc.Spec.StorageClassName != nil {
				v.StorageClass = *pvc.Spec.StorageClassName
			}
			res, err := claim.Resolve(ctx, r.conn.CS, c.ns, c.claim, "")
			if errors.Is(err, claim.ErrNotLonghorn) {
				r.note("%v: its backups stay in the bucket, but it is not in longhorn.volumes", err)
				continue
			}
			if err != nil {
				return fmt.Errorf("claim %s: %w", key, err)
			}
			if res.Volume != "" {
				if res.Volume != "pvc-"+string(pvc.UID) {
					v.Name = res.Volume // statically provisioned: its name was chosen
				}
				if err := r.volumeLabels(ctx, res.Volume, &v); err != nil {
					return err
				}
			}
		}
		if v.StorageClass != "" && !scs[v.StorageClass] {
			r.note("claim %s uses StorageClass %s, which is not a class talforge describes (longhorn or longhorn.storageClasses)", key, v.StorageClass)
		}
		r.out.Longhorn.Volumes = append(r.out.Longhorn.Volumes, v)
	}
	return nil
}

// volumeClaim reads a Longhorn volume's status.kubernetesStatus (nil: no claim, or the
// volume is gone).
func (r *lhReader) volumeClaim(ctx context.Context, vol string) (*backuptarget.KubernetesStatus, error) {
	if vol == "" {
		return nil, nil
	}
	u, err := r.res(longhorn.VolumeGVR).Get(ctx, vol, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read Longhorn volume %s: %w", vol, err)
	}
	ks, _, _ := unstructured.NestedMap(u.Object, "status", "kubernetesStatus")
	raw, err := json.Marshal(ks)
	if err != nil {
		return nil, fmt.Errorf("volume %s: kubernetesStatus: %w", vol, err)
	}
	st, ok := backuptarget.ParseKubernetesStatus(map[string]string{backuptarget.KubernetesStatusLabel: string(raw)})
	if !ok {
		return nil, nil
	}
	return st, nil
}

// volumeLabels copies the volume's recurring-job labels (types/types.go; value "enabled").
func (r *lhReader) volumeLabels(ctx context.Context, vol string, v *profile.Volume) error {
	u, err := r.res(longhorn.VolumeGVR).Get(ctx, vol, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read Longhorn volume %s: %w", vol, err)
	}
	for _, k := range lhKeys(u.GetLabels()) {
		if u.GetLabels()[k] != "enabled" {
			continue
		}
		if j, ok := strings.CutPrefix(k, longhorn.RecurringJobLabelPrefix); ok {
			v.RecurringJobs = append(v.RecurringJobs, j)
		} else if g, ok := strings.CutPrefix(k, longhorn.RecurringJobGroupLabelPrefix); ok {
			v.RecurringJobGroups = append(v.RecurringJobGroups, g)
		}
	}
	return nil
}
