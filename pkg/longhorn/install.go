package longhorn

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/release"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// InstallResult says what Install did.
type InstallResult struct {
	// Action is "install", "upgrade" (values changed) or "unchanged".
	Action   string
	Version  string
	Revision int
}

// Install converges Longhorn on the profile at the profile's version: namespace and
// credentials Secret, the chart (first install, or an upgrade at the same version when
// the values changed; nothing when they did not), RecurringJobs, StorageClasses and
// volume labels, then waits for BackupTarget "default". It never changes the installed
// version: that is Upgrade's job, one minor at a time. Before any Helm action it runs
// Options.Preflight on the backup target, when set.
func (cl *Client) Install(ctx context.Context) (*InstallResult, error) {
	l := cl.cluster.Longhorn
	version := l.Version
	vals, err := Values(cl.cluster, version)
	if err != nil {
		return nil, err
	}
	objs, err := BuildObjects(cl.cluster, version)
	if err != nil {
		return nil, err
	}
	if err := cl.preflight(ctx); err != nil {
		return nil, err
	}
	rel, err := cl.helm.lastRelease()
	if err != nil {
		return nil, err
	}
	var chart <-chan chartResult
	if rel == nil {
		// A first install needs the chart: load it (from the cache, or download it) while the
		// backup target is checked and the namespace and credentials are made.
		chart = cl.helm.chartAsync(version)
	}
	if err := cl.backupPreflight(ctx); err != nil {
		return nil, err
	}
	if err := notPending(rel); err != nil {
		return nil, err
	}
	res := &InstallResult{Version: version}
	if rel != nil {
		installed := rel.Chart.Metadata.Version
		if installed != version {
			return nil, versionMismatch(installed, version)
		}
	}
	if err := cl.applyPreChart(ctx, objs); err != nil {
		return nil, err
	}
	switch {
	case rel == nil:
		loaded := <-chart
		ch, err := loaded.chart, loaded.err
		if err != nil {
			return nil, err
		}
		var r *release.Release
		err = cl.kube.Heartbeat(ctx, fmt.Sprintf("helm install %s %s (hooks included)", ChartName, version), func(ctx context.Context) (err error) {
			r, err = cl.helm.install(ctx, ch, vals, false)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("helm install longhorn %s: %w", version, err)
		}
		res.Action, res.Revision = "install", r.Version
	case keepsValues(l, rel):
		cl.logf("helm release longhorn %s (revision %d): adopted, its values kept (longhorn.keepReleaseValues)", version, rel.Version)
		res.Action, res.Revision = "unchanged", rel.Version
	case rel.Info.Status == "deployed" && sameValues(rel.Config, vals):
		cl.logf("helm release longhorn %s (revision %d): unchanged", version, rel.Version)
		res.Action, res.Revision = "unchanged", rel.Version
	default:
		r, err := cl.upgradeTo(ctx, version, vals)
		if err != nil {
			return nil, err
		}
		res.Action, res.Revision = "upgrade", r
	}
	if err := cl.applyPostChart(ctx, objs); err != nil {
		return nil, err
	}
	if res.Action != "unchanged" {
		if err := cl.waitSettings(ctx); err != nil {
			return nil, err
		}
	} else if err := cl.restoreSettings(ctx); err != nil {
		return nil, err
	}
	if err := cl.waitBackupTarget(ctx); err != nil {
		return nil, err
	}
	return res, nil
}

// waitSettings waits until longhorn-manager has applied the owned defaultSettings from the
// chart's ConfigMap to the Setting CRs (it does so asynchronously, at start and on every
// change of the ConfigMap).
func (cl *Client) waitSettings(ctx context.Context) error {
	return cl.kube.Wait(ctx, cl.opts.BackupTargetTimeout, "Longhorn settings applied", func(ctx context.Context) (bool, string, error) {
		var pending []string
		for _, s := range OwnedSettings(cl.cluster.Longhorn) {
			got, ok, err := cl.setting(ctx, s.Setting)
			if err != nil {
				return false, "", err
			}
			if !ok || !settingEqual(s.Value, got) {
				pending = append(pending, fmt.Sprintf("%s is %q, want %q", s.Setting, got, s.Value))
			}
		}
		return len(pending) == 0, strings.Join(pending, "; "), nil
	})
}

// restoreSettings brings the Settings and BackupTarget "default" of an unchanged release back to
// the profile. An unchanged release does not mean longhorn-manager is done with it (the
// install of an interrupted run may have finished a moment ago, in the background, and the
// manager has not made the Settings yet), nor that nobody changed a Setting since (the UI
// writes Settings directly, and the manager re-reads the chart's ConfigMaps only when they
// change). So: wait until the manager has made every owned Setting and the BackupTarget,
// then write back, as Reconcile does, those that differ.
func (cl *Client) restoreSettings(ctx context.Context) error {
	b := cl.cluster.Longhorn.Backup
	err := cl.kube.Wait(ctx, cl.opts.BackupTargetTimeout, "longhorn-manager made its Settings", func(ctx context.Context) (bool, string, error) {
		var absent []string
		for _, s := range OwnedSettings(cl.cluster.Longhorn) {
			if _, ok, err := cl.setting(ctx, s.Setting); err != nil {
				return false, "", err
			} else if !ok {
				absent = append(absent, "Setting "+s.Setting)
			}
		}
		if b != nil {
			st, err := cl.backupTarget(ctx)
			if err != nil {
				return false, "", err
			}
			if !st.Exists {
				absent = append(absent, "BackupTarget "+DefaultBackupTarget)
			}
		}
		return len(absent) == 0, strings.Join(absent, ", ") + " not made yet", nil
	})
	if err != nil {
		return err
	}
	diffs, err := cl.Drift(ctx)
	if err != nil {
		return err
	}
	return cl.fix(ctx, slices.DeleteFunc(diffs, func(d Difference) bool { return d.Kind != "Setting" && d.Kind != "BackupTarget" }))
}

// notPending refuses to start while the release is in a pending state (an interrupted
// run): Helm would refuse anyway, and the way out needs a person to look.
func notPending(rel *release.Release) error {
	if rel == nil || !rel.Info.Status.IsPending() {
		return nil
	}
	return fmt.Errorf("the Helm release %s/%s is %s at revision %d (chart %s), probably from an interrupted run; "+
		"check `helm history %s -n %s`, and once nothing is running, `helm rollback %s <revision> -n %s` to the last deployed revision "+
		"whose chart version equals Longhorn's current-longhorn-version (a rollback to an older version is a downgrade Longhorn refuses)",
		Namespace, ReleaseName, rel.Info.Status, rel.Version, rel.Chart.Metadata.Version, ReleaseName, Namespace, ReleaseName, Namespace)
}

func versionMismatch(installed, wanted string) error {
	iv, err1 := parseVersion(installed)
	wv, err2 := parseVersion(wanted)
	if err1 == nil && err2 == nil && wv.LessThan(iv) {
		return fmt.Errorf("installed Longhorn %s is newer than the profile's %s: Longhorn cannot be downgraded; set longhorn.version to %s", installed, wanted, installed)
	}
	return fmt.Errorf("installed Longhorn %s differs from the profile's %s: install never changes the version; run `talforge longhorn upgrade --to %s` (it goes one minor at a time, with health checks between steps)", installed, wanted, wanted)
}

// upgradeTo runs helm upgrade to version and, when Longhorn's pre-upgrade hook refused
// it, says why with Longhorn's own message.
func (cl *Client) upgradeTo(ctx context.Context, version string, vals map[string]any) (int, error) {
	ch, err := cl.helm.chart(version)
	if err != nil {
		return 0, err
	}
	started := cl.kube.Now()
	var r *release.Release
	err = cl.kube.Heartbeat(ctx, fmt.Sprintf("helm upgrade %s to %s (hooks included)", ChartName, version), func(ctx context.Context) (err error) {
		r, err = cl.helm.upgrade(ctx, ch, vals)
		return err
	})
	if err != nil {
		if msg := cl.preUpgradeRefusal(ctx, started); msg != "" {
			return 0, fmt.Errorf("the Longhorn pre-upgrade check refused the upgrade to %s: %s (helm: %w)", version, msg, err)
		}
		return 0, fmt.Errorf("helm upgrade longhorn to %s: %w", version, err)
	}
	return r.Version, nil
}

// preUpgradeRefusal finds the FailedUpgradePreCheck event Longhorn's pre-upgrade Job
// emitted since started (the Job itself is gone: its hook-delete-policy includes
// hook-failed).
func (cl *Client) preUpgradeRefusal(ctx context.Context, started time.Time) string {
	evs, err := cl.kube.CS.CoreV1().Events(Namespace).List(ctx, metav1.ListOptions{FieldSelector: "reason=" + reasonFailedUpgradePreCheck})
	if err != nil {
		return ""
	}
	var newest *corev1.Event
	for i := range evs.Items {
		e := &evs.Items[i]
		if eventTime(e).Before(started.Add(-2 * time.Second)) {
			continue
		}
		if newest == nil || eventTime(e).After(eventTime(newest)) {
			newest = e
		}
	}
	if newest == nil {
		return ""
	}
	return newest.Message
}

func eventTime(e *corev1.Event) time.Time {
	for _, t := range []time.Time{e.LastTimestamp.Time, e.EventTime.Time, e.FirstTimestamp.Time} {
		if !t.IsZero() {
			return t
		}
	}
	return e.CreationTimestamp.Time
}
