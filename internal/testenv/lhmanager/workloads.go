// StorageClass "longhorn" and the chart's workloads: the manager DaemonSet and the
// Deployments marked rolled out.

package lhmanager

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	sigsyaml "sigs.k8s.io/yaml"
)

// SetRolloutPaused holds (true) or releases the manager DaemonSet/Deployment rollouts,
// for health-gate tests.
func (m *Manager) SetRolloutPaused(paused bool) {
	m.mu.Lock()
	m.rolloutPaused = paused
	m.mu.Unlock()
	m.poke()
}

// ---------------------------------------------------------------- StorageClass

// syncStorageClass creates StorageClass "longhorn" from longhorn-storageclass and
// re-creates it (StorageClass parameters are immutable) whenever the YAML changes.
func (m *Manager) syncStorageClass(ctx context.Context) error {
	cm, err := m.cms.ConfigMaps(m.ns).Get(StorageClassConfigMap)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	raw := cm.Data["storageclass.yaml"]
	existing, err := m.scs.Get(DefaultStorageClass)
	if err == nil && existing.Annotations[annotationLastAppliedConfigMap] == raw {
		return nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	var sc storagev1.StorageClass
	if err := sigsyaml.UnmarshalStrict([]byte(raw), &sc); err != nil {
		return fmt.Errorf("%s: %w", StorageClassConfigMap, err)
	}
	if sc.Annotations == nil {
		sc.Annotations = map[string]string{}
	}
	sc.Annotations[annotationLastAppliedConfigMap] = raw
	if existing != nil {
		if err := m.cs.StorageV1().StorageClasses().Delete(ctx, DefaultStorageClass, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	_, err = m.cs.StorageV1().StorageClasses().Create(ctx, &sc, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil // the informer had not seen it yet; next round
	}
	return err
}

// ---------------------------------------------------------------- workloads

func (m *Manager) syncWorkloads(ctx context.Context) error {
	m.mu.Lock()
	paused := m.rolloutPaused
	m.mu.Unlock()
	if paused || !m.rolledOut() {
		return nil
	}
	var errs []error
	deps, err := m.deploys.Deployments(m.ns).List(labels.Everything())
	if err != nil {
		return err
	}
	for _, d := range deps {
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		s := d.Status
		if s.ObservedGeneration == d.Generation && s.UpdatedReplicas == want && s.ReadyReplicas == want && s.AvailableReplicas == want && s.Replicas == want {
			continue
		}
		d = d.DeepCopy()
		now := metav1.Now()
		d.Status = appsv1.DeploymentStatus{
			ObservedGeneration: d.Generation, Replicas: want, UpdatedReplicas: want, ReadyReplicas: want, AvailableReplicas: want,
			Conditions: []appsv1.DeploymentCondition{
				{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable", LastUpdateTime: now, LastTransitionTime: now},
				{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable", LastUpdateTime: now, LastTransitionTime: now},
			},
		}
		if _, err := m.cs.AppsV1().Deployments(m.ns).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("deployment %s: %w", d.Name, err))
		}
	}
	if err := m.syncManagerDaemonSet(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// syncManagerDaemonSet "starts" longhorn-manager at the DaemonSet's version: like the
// real manager it re-checks the upgrade path first (a refused path leaves it not ready),
// then records current-longhorn-version.
func (m *Manager) syncManagerDaemonSet(ctx context.Context) error {
	ds, err := m.dss.DaemonSets(m.ns).Get(ManagerDaemonSet)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	next := imageTag(ds.Spec.Template.Spec.Containers)
	current, _, err := m.getSetting(ctx, SettingCurrentLonghornVersion)
	if err != nil {
		return err
	}
	s := ds.Status
	rolledOut := s.ObservedGeneration == ds.Generation && s.NumberReady == 1 && s.UpdatedNumberScheduled == 1 && s.NumberAvailable == 1
	if rolledOut && current == next {
		return nil
	}
	check := checkUpgradePath(current, next)
	ds = ds.DeepCopy()
	ready := int32(1)
	if check != nil {
		ready = 0
	}
	if !rolledOut || check != nil {
		ds.Status = appsv1.DaemonSetStatus{
			ObservedGeneration: ds.Generation, DesiredNumberScheduled: 1, CurrentNumberScheduled: 1,
			UpdatedNumberScheduled: 1, NumberReady: ready, NumberAvailable: ready, NumberUnavailable: 1 - ready,
		}
		if s.ObservedGeneration != ds.Generation || s.NumberReady != ready {
			if _, err := m.cs.AppsV1().DaemonSets(m.ns).UpdateStatus(ctx, ds, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("daemonset %s: %w", ds.Name, err)
			}
			if check != nil {
				m.event(ctx, &corev1.ObjectReference{Kind: "DaemonSet", APIVersion: "apps/v1", Name: ds.Name, Namespace: ds.Namespace, UID: ds.UID},
					corev1.EventTypeWarning, ReasonFailedUpgradePreCheck, check.Error())
			}
		}
	}
	if check != nil {
		return nil
	}
	if ok, err := m.crdServed(ctx, SettingGVR); !ok {
		return err
	}
	return m.setSetting(ctx, SettingCurrentLonghornVersion, next, "")
}

// ---------------------------------------------------------------- rollout time

// rolledOut reports whether the manager pods of the newest Helm release are ready
// (Options.RolloutTime after the manager first saw the release's Secret); while they are not,
// it has the loop woken when they will be.
func (m *Manager) rolledOut() bool {
	if m.rolloutTime <= 0 {
		return true
	}
	secrets, err := m.secrets.Secrets(m.ns).List(labels.SelectorFromSet(labels.Set{"owner": "helm", "name": "longhorn"}))
	if err != nil {
		return true // the lister reads a cache: it does not fail
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var newest time.Time
	for _, s := range secrets {
		seen, ok := m.releaseSeen[s.Name]
		if !ok {
			seen = time.Now()
			m.releaseSeen[s.Name] = seen
		}
		if seen.After(newest) {
			newest = seen
		}
	}
	due := newest.Add(m.rolloutTime)
	if newest.IsZero() || !time.Now().Before(due) {
		return true
	}
	if !m.wakeAt.Equal(due) {
		m.wakeAt = due
		time.AfterFunc(time.Until(due), m.rolloutDone)
	}
	return false
}

// rolloutDone wakes the controllers that wait for the rollout.
func (m *Manager) rolloutDone() {
	m.poke()
	select {
	case m.targetKick <- struct{}{}:
	default:
	}
}
