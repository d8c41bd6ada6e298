// The data-path loop of RunBackups: one pass over the objects it handles, the workers it
// starts and the finalizer it keeps on them.

package lhmanager

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"

	"github.com/talforge/talforge/internal/testenv/lhdata"
)

// loop is the state of RunBackups, touched only by its goroutine unless noted.
type loop struct {
	m    *Manager
	data *lhdata.Store
	ctx  context.Context

	// backup target controller
	targetKey    string // URL, secret and its resourceVersion last checked
	held         *heldCheck
	requestedAt  string // spec.syncRequestedAt last honoured
	checkedAt    time.Time
	deleteFailed map[string]time.Time // backup -> last failed remote deletion

	wg       sync.WaitGroup
	mu       sync.Mutex
	inflight map[string]bool // work running in a goroutine, by key
}

// RunBackups plays longhorn-manager's data path until ctx ends, over the volume data in
// Options.Data and the real backup store behind BackupTarget "default" (see the package
// documentation for what it does). It runs beside Run (start both) and needs Options.Data.
// Backups, restores and backup deletions run in goroutines, so the other controllers keep
// going meanwhile; RunBackups returns once they have stopped.
func (m *Manager) RunBackups(ctx context.Context) error {
	if m.data == nil {
		return errors.New("lhmanager: RunBackups needs Options.Data")
	}
	l := &loop{m: m, data: m.data, ctx: ctx, inflight: map[string]bool{}, deleteFailed: map[string]time.Time{}}
	defer l.wg.Wait()
	// As upstream, the backup target controller runs on its own: a slow step of the others
	// (the apiserver takes a second to serve the first list of a new CRD) does not hold up
	// reporting the target available.
	l.wg.Go(func() { l.every(ctx, l.syncTargetStep, l.m.targetKick) })
	l.every(ctx, l.sync, nil)
	return ctx.Err()
}

// every runs fn at once, then every third of the resync period and whenever kick fires, until
// ctx ends.
func (l *loop) every(ctx context.Context, fn func(context.Context) error, kick <-chan struct{}) {
	tick := time.NewTicker(l.m.resync / 3)
	defer tick.Stop()
	for {
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			l.m.logf("backups: %v", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-kick:
		}
	}
}

func (l *loop) sync(ctx context.Context) error {
	var errs []error
	for _, step := range []struct {
		name string
		fn   func(context.Context) error
	}{
		{"provisioning", l.syncProvisioning},
		{"volumes", l.syncVolumes},
		{"kubernetes status", l.syncKubernetesStatus},
		{"snapshots", l.syncSnapshots},
		{"backups", l.syncBackups},
		{"verification jobs", l.syncVerifyJobs},
	} {
		err := step.fn(ctx)
		if err != nil && !apierrors.IsConflict(err) && !meta.IsNoMatchError(err) && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("%s: %w", step.name, err))
		}
	}
	return errors.Join(errs...)
}

// syncTargetStep is syncTarget as a step of the loop: the errors the next round resolves are
// not worth a line.
func (l *loop) syncTargetStep(ctx context.Context) error {
	err := l.syncTarget(ctx)
	if err == nil || apierrors.IsConflict(err) || meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
		return nil
	}
	return fmt.Errorf("backup target: %w", err)
}

func (l *loop) res(gvr schema.GroupVersionResource) dynamic.ResourceInterface {
	return l.m.dyn.Resource(gvr).Namespace(l.m.ns)
}

// goWork runs fn in a goroutine unless work under key is running.
func (l *loop) goWork(key string, fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inflight[key] {
		return
	}
	l.inflight[key] = true
	l.wg.Go(func() {
		defer func() {
			l.mu.Lock()
			delete(l.inflight, key)
			l.mu.Unlock()
		}()
		fn()
	})
}

func (l *loop) busy(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inflight[key]
}

// updateStatus re-reads the object and writes the status mutate leaves, retrying on
// conflicts; mutate returns false to write nothing.
func (l *loop) updateStatus(ctx context.Context, gvr schema.GroupVersionResource, name string, mutate func(status map[string]any) bool) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := l.res(gvr).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		status, _, _ := unstructured.NestedMap(u.Object, "status")
		if status == nil {
			status = map[string]any{}
		}
		if !mutate(status) {
			return nil
		}
		u.Object["status"] = status
		_, err = l.res(gvr).UpdateStatus(ctx, u, metav1.UpdateOptions{})
		return err
	})
}

// ensureFinalizer adds Longhorn's finalizer to an object not being deleted, so its deletion
// waits for the controller's clean-up as in Longhorn.
func (l *loop) ensureFinalizer(ctx context.Context, gvr schema.GroupVersionResource, u *unstructured.Unstructured) error {
	if u.GetDeletionTimestamp() != nil {
		return nil
	}
	for _, f := range u.GetFinalizers() {
		if f == finalizer {
			return nil
		}
	}
	patch := fmt.Sprintf(`{"metadata":{"finalizers":[%q],"resourceVersion":%q}}`, finalizer, u.GetResourceVersion())
	if len(u.GetFinalizers()) > 0 {
		patch = fmt.Sprintf(`[{"op":"test","path":"/metadata/resourceVersion","value":%q},{"op":"add","path":"/metadata/finalizers/-","value":%q}]`, u.GetResourceVersion(), finalizer)
		_, err := l.res(gvr).Patch(ctx, u.GetName(), types.JSONPatchType, []byte(patch), metav1.PatchOptions{})
		return err
	}
	_, err := l.res(gvr).Patch(ctx, u.GetName(), types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

// removeFinalizer lets the deletion of the object finish.
func (l *loop) removeFinalizer(ctx context.Context, gvr schema.GroupVersionResource, name string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := l.res(gvr).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		var keep []string
		for _, f := range u.GetFinalizers() {
			if f != finalizer {
				keep = append(keep, f)
			}
		}
		if len(keep) == len(u.GetFinalizers()) {
			return nil
		}
		u.SetFinalizers(keep)
		_, err = l.res(gvr).Update(ctx, u, metav1.UpdateOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
}

func now() string { return time.Now().UTC().Format(time.RFC3339) }
