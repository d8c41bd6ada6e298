package longhorn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"helm.sh/helm/v3/pkg/release"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// UpgradePlan is the ladder from the installed version to the target.
type UpgradePlan struct {
	From, To string
	// Steps are the chart versions upgraded to, in order; empty when To is installed.
	Steps []string
	// Values are the Helm values that differ between the installed release and the values
	// the last step passes: an adopted release's values included, nothing is reset unseen.
	Values []ValueChange
}

func (p *UpgradePlan) String() string {
	if len(p.Steps) == 0 {
		return fmt.Sprintf("Longhorn %s is installed: nothing to upgrade", p.From)
	}
	return fmt.Sprintf("Longhorn %s -> %s, one minor at a time, health-checked between steps", p.From, strings.Join(p.Steps, " -> "))
}

// ErrNotInstalled means there is no Helm release of Longhorn.
var ErrNotInstalled = errors.New("no Longhorn installation found (no Helm release longhorn in longhorn-system); run `talforge longhorn install`")

// Plan computes the upgrade ladder to target without changing anything.
func (cl *Client) Plan(ctx context.Context, target string) (*UpgradePlan, error) {
	rel, err := cl.helm.lastRelease()
	if err != nil {
		return nil, err
	}
	if rel == nil {
		return nil, ErrNotInstalled
	}
	if err := notPending(rel); err != nil {
		return nil, err
	}
	installed := rel.Chart.Metadata.Version
	steps, err := UpgradePath(installed, target)
	if err != nil {
		return nil, err
	}
	plan := &UpgradePlan{From: installed, To: target, Steps: steps}
	if len(steps) > 0 {
		vals, err := Values(cl.cluster, steps[len(steps)-1])
		if err != nil {
			return nil, fmt.Errorf("values for %s: %w", steps[len(steps)-1], err)
		}
		plan.Values = ValuesDiff(rel.Config, vals)
	}
	return plan, nil
}

// Upgrade upgrades Longhorn to target one minor at a time (through the latest patch of
// every minor in between). Before the first step and after every step it waits for the
// health gates: manager and deployments rolled out at the expected version, every attached
// volume healthy, no replica rebuild running. Before entering 1.10 it checks that no
// Longhorn CRD still stores v1beta1. Before the first step it runs Options.Preflight on the
// backup target, when set. Reinstall does not: it repairs, and must work while S3 does not.
func (cl *Client) Upgrade(ctx context.Context, target string) (*UpgradePlan, error) {
	plan, err := cl.Plan(ctx, target)
	if err != nil {
		return nil, err
	}
	if len(plan.Steps) == 0 {
		return plan, nil
	}
	// Validate every step's values and objects before touching the cluster.
	stepVals := make([]map[string]any, len(plan.Steps))
	for i, step := range plan.Steps {
		if stepVals[i], err = Values(cl.cluster, step); err != nil {
			return nil, fmt.Errorf("values for %s: %w", step, err)
		}
		if _, err := BuildObjects(cl.cluster, step); err != nil {
			return nil, err
		}
	}
	if err := cl.preflight(ctx); err != nil {
		return nil, err
	}
	if err := cl.backupPreflight(ctx); err != nil {
		return nil, err
	}
	cl.logf("%s", plan)
	for _, c := range plan.Values {
		cl.logf("  Helm value %s", c)
	}
	prev := plan.From
	if err := cl.waitHealthy(ctx, prev); err != nil {
		return nil, fmt.Errorf("before upgrading from %s: %w", prev, err)
	}
	objs, err := BuildObjects(cl.cluster, prev)
	if err != nil {
		return nil, err
	}
	if err := cl.applyPreChart(ctx, objs); err != nil {
		return nil, err
	}
	for i, step := range plan.Steps {
		if minorOf(prev) < 10 && minorOf(step) >= 10 {
			if err := cl.checkStoredVersions(ctx); err != nil {
				return nil, err
			}
		}
		if err := cl.preflight(ctx); err != nil {
			return nil, err
		}
		if _, err := cl.upgradeTo(ctx, step, stepVals[i]); err != nil {
			return nil, fmt.Errorf("step %d of %d (%s -> %s): %w", i+1, len(plan.Steps), prev, step, err)
		}
		if err := cl.waitHealthy(ctx, step); err != nil {
			return nil, fmt.Errorf("after upgrading to %s: %w", step, err)
		}
		prev = step
	}
	objs, err = BuildObjects(cl.cluster, prev)
	if err != nil {
		return nil, err
	}
	if err := cl.applyPostChart(ctx, objs); err != nil {
		return nil, err
	}
	if err := cl.waitSettings(ctx); err != nil {
		return nil, err
	}
	if err := cl.waitBackupTarget(ctx); err != nil {
		return nil, err
	}
	if prev != cl.cluster.Longhorn.Version {
		cl.logf("Longhorn %s is installed: set longhorn.version: %s in the profile", prev, prev)
	}
	return plan, nil
}

// checkStoredVersions: Longhorn 1.10 removed v1beta1; a CRD that still lists it in
// status.storedVersions makes the upgrade fail half-way.
func (cl *Client) checkStoredVersions(ctx context.Context) error {
	crds, err := cl.ext.ApiextensionsV1().CustomResourceDefinitions().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list CRDs: %w", err)
	}
	var bad []string
	for _, crd := range crds.Items {
		if crd.Spec.Group != "longhorn.io" {
			continue
		}
		for _, v := range crd.Status.StoredVersions {
			if v != "v1beta2" {
				bad = append(bad, fmt.Sprintf("%s stores %s", crd.Name, v))
			}
		}
	}
	if len(bad) == 0 {
		return nil
	}
	slices.Sort(bad)
	return fmt.Errorf("refusing to upgrade to Longhorn 1.10: %s in status.storedVersions, and 1.10 removed v1beta1, so Helm would fail with "+
		"`status.storedVersions[0]: Invalid value: \"v1beta1\": missing from spec.versions`; migrate the stored objects to v1beta2 first "+
		"(Longhorn docs: \"Migration Requirement Before Longhorn v1.10 Upgrade\")", strings.Join(bad, ", "))
}

// Health is the state the upgrade gates look at.
type Health struct {
	ManagerVersion string   // current-longhorn-version
	NotReady       []string // workloads not rolled out
	Unhealthy      []string // attached volumes not healthy, faulted volumes
	Rebuilding     []string // volumes with a replica rebuild running
}

// OK reports whether the gates pass for version.
func (h *Health) OK(version string) bool {
	return h.ManagerVersion == "v"+strings.TrimPrefix(version, "v") && len(h.NotReady) == 0 && len(h.Unhealthy) == 0 && len(h.Rebuilding) == 0
}

func (h *Health) explain(version string) string {
	var why []string
	if want := "v" + strings.TrimPrefix(version, "v"); h.ManagerVersion != want {
		got := h.ManagerVersion
		if got == "" {
			got = "unknown"
		}
		why = append(why, fmt.Sprintf("longhorn-manager runs %s, not %s yet", got, want))
	}
	if len(h.NotReady) > 0 {
		why = append(why, "not rolled out: "+strings.Join(h.NotReady, ", "))
	}
	if len(h.Unhealthy) > 0 {
		why = append(why, "unhealthy volumes: "+strings.Join(h.Unhealthy, ", "))
	}
	if len(h.Rebuilding) > 0 {
		why = append(why, "replica rebuild running: "+strings.Join(h.Rebuilding, ", "))
	}
	return strings.Join(why, "; ")
}

// health reads the gate inputs.
func (cl *Client) health(ctx context.Context) (*Health, error) {
	h := &Health{}
	var err error
	if h.ManagerVersion, _, err = cl.setting(ctx, settingCurrentLonghornVersion); err != nil {
		return nil, err
	}
	dss, err := cl.kube.CS.AppsV1().DaemonSets(Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	foundManager := false
	for _, ds := range dss.Items {
		if ds.Name == "longhorn-manager" {
			foundManager = true
		}
		if !daemonSetRolledOut(&ds) {
			h.NotReady = append(h.NotReady, "daemonset/"+ds.Name)
		}
	}
	if !foundManager {
		h.NotReady = append(h.NotReady, "daemonset/longhorn-manager (missing)")
	}
	deps, err := cl.kube.CS.AppsV1().Deployments(Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, d := range deps.Items {
		if !deploymentRolledOut(&d) {
			h.NotReady = append(h.NotReady, "deployment/"+d.Name)
		}
	}
	vols, err := cl.kube.Resource(VolumeGVR).List(ctx, metav1.ListOptions{})
	if err != nil && !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
		return nil, err
	}
	if vols != nil {
		for _, v := range vols.Items {
			state, _, _ := unstructured.NestedString(v.Object, "status", "state")
			rob, _, _ := unstructured.NestedString(v.Object, "status", "robustness")
			// A detached volume's robustness is "unknown"; only faulted matters there.
			if rob == VolumeRobustnessFaulted || (state == "attached" && rob != "healthy") {
				h.Unhealthy = append(h.Unhealthy, fmt.Sprintf("%s (%s, %s)", v.GetName(), state, rob))
			}
		}
	}
	engines, err := cl.kube.Resource(EngineGVR).List(ctx, metav1.ListOptions{})
	if err != nil && !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
		return nil, err
	}
	if engines != nil {
		for _, e := range engines.Items {
			rs, _, _ := unstructured.NestedMap(e.Object, "status", "rebuildStatus")
			for _, s := range rs {
				if m, ok := s.(map[string]any); ok && m["isRebuilding"] == true {
					vol, _, _ := unstructured.NestedString(e.Object, "spec", "volumeName")
					h.Rebuilding = append(h.Rebuilding, vol)
					break
				}
			}
		}
	}
	slices.Sort(h.NotReady)
	slices.Sort(h.Unhealthy)
	slices.Sort(h.Rebuilding)
	return h, nil
}

func daemonSetRolledOut(ds *appsv1.DaemonSet) bool {
	s := ds.Status
	return s.ObservedGeneration >= ds.Generation && s.DesiredNumberScheduled > 0 &&
		s.UpdatedNumberScheduled == s.DesiredNumberScheduled && s.NumberReady == s.DesiredNumberScheduled && s.NumberAvailable == s.DesiredNumberScheduled
}

func deploymentRolledOut(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.AvailableReplicas == want && s.Replicas == want
}

// waitHealthy waits for the health gates at version.
func (cl *Client) waitHealthy(ctx context.Context, version string) error {
	return cl.kube.Wait(ctx, cl.opts.HealthTimeout, "Longhorn healthy at "+version, func(ctx context.Context) (bool, string, error) {
		h, err := cl.health(ctx)
		if err != nil {
			return false, "", err
		}
		return h.OK(version), h.explain(version), nil
	})
}

// Reinstall repairs Longhorn's control plane without touching data: `helm upgrade
// --install` at the *installed* version (which Longhorn's pre-upgrade check accepts),
// re-creating deleted chart objects (manager, driver, CRDs, ConfigMaps) and keeping every
// custom resource. If the Helm release record itself was lost, it installs at the version
// Longhorn reports running and adopts the existing objects.
func (cl *Client) Reinstall(ctx context.Context) (*InstallResult, error) {
	if err := cl.preflight(ctx); err != nil {
		return nil, err
	}
	rel, err := cl.helm.lastRelease()
	if err != nil {
		return nil, err
	}
	if err := notPending(rel); err != nil {
		return nil, err
	}
	var installed string
	if rel != nil {
		installed = rel.Chart.Metadata.Version
	} else {
		v, ok, err := cl.setting(ctx, settingCurrentLonghornVersion)
		if err != nil {
			return nil, err
		}
		if !ok || v == "" {
			return nil, ErrNotInstalled
		}
		installed = strings.TrimPrefix(v, "v")
	}
	if installed != cl.cluster.Longhorn.Version {
		cl.logf("note: the profile says Longhorn %s; reinstalling the installed %s", cl.cluster.Longhorn.Version, installed)
	}
	vals, err := Values(cl.cluster, installed)
	if err != nil {
		return nil, err
	}
	objs, err := BuildObjects(cl.cluster, installed)
	if err != nil {
		return nil, err
	}
	if err := cl.applyPreChart(ctx, objs); err != nil {
		return nil, err
	}
	res := &InstallResult{Version: installed}
	if rel == nil {
		ch, err := cl.helm.chart(installed)
		if err != nil {
			return nil, err
		}
		cl.logf("no Helm release record: installing %s and adopting the existing Longhorn objects", installed)
		var r *release.Release
		err = cl.kube.Heartbeat(ctx, fmt.Sprintf("helm install %s %s, adopting its objects", ChartName, installed), func(ctx context.Context) (err error) {
			r, err = cl.helm.install(ctx, ch, vals, true)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("helm install longhorn %s: %w", installed, err)
		}
		res.Action, res.Revision = "install", r.Version
	} else {
		if res.Revision, err = cl.upgradeTo(ctx, installed, vals); err != nil {
			return nil, err
		}
		res.Action = "upgrade"
	}
	if err := cl.applyPostChart(ctx, objs); err != nil {
		return nil, err
	}
	if err := cl.waitSettings(ctx); err != nil {
		return nil, err
	}
	if err := cl.waitBackupTarget(ctx); err != nil {
		return nil, err
	}
	return res, nil
}
