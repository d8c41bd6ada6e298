package rollout

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/Masterminds/semver/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kubeletVersion is the version the node's kubelet reports ("" before it registered).
func (r *Rollout) kubeletVersion(ctx context.Context, name string) (string, error) {
	node, err := r.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return node.Status.NodeInfo.KubeletVersion, nil
}

// upgradeKubernetes applies the node's config, which names the target Kubernetes images (on a
// control plane: kube-apiserver, kube-controller-manager, kube-scheduler; on every node the
// kubelet): Talos restarts them without a reboot, as talosctl upgrade-k8s has it do. The node
// is back once its kubelet reports the target version and it is Ready.
func (r *Rollout) upgradeKubernetes(ctx context.Context, n Node) error {
	if err := r.applyConfig(ctx, n); err != nil {
		return err
	}
	return r.wait(ctx, n.Name, r.opts.NodeTimeout, "kubelet "+r.c.Kubernetes, func(ctx context.Context) (bool, string, error) {
		v, err := r.kubeletVersion(ctx, n.Name)
		if err != nil {
			return false, "", err
		}
		if v != r.c.Kubernetes {
			return false, "kubelet still reports " + v, nil
		}
		return r.nodeReady(ctx, n.Name, false)
	})
}

// deprecatedAPI is one line of kube-apiserver's apiserver_requested_deprecated_apis gauge:
// a deprecated API a client requested since the apiserver started, and the release that
// removes it.
// Compiled on first use, not at package initialisation, to keep start-up cheap (issue 16).
var deprecatedAPI = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^apiserver_requested_deprecated_apis\{([^}]*)\} 1$`)
})

// removedAPIsInUse refuses the upgrade when clients still use an API the target Kubernetes
// version removes, as kube-apiserver counts them in its metrics (what talosctl upgrade-k8s
// checks too, with the resources of each removed API).
func (r *Rollout) removedAPIsInUse(ctx context.Context) error {
	target, err := semver.NewVersion(r.c.Kubernetes)
	if err != nil {
		return err
	}
	raw, err := r.cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		// No metrics access (RBAC) is no proof of anything: say so rather than guess.
		r.logf("cluster", "cannot read kube-apiserver metrics to check for removed APIs in use: %v", err)
		return nil
	}
	used := RemovedAPIs(raw, target.Major(), target.Minor())
	if len(used) == 0 {
		return nil
	}
	return fmt.Errorf("clients still use APIs that Kubernetes %s removes: %s; move them to the current versions before the upgrade (kube-apiserver's apiserver_requested_deprecated_apis metric lists them)",
		r.c.Kubernetes, strings.Join(used, ", "))
}

// RemovedAPIs lists the deprecated APIs in a kube-apiserver metrics exposition that were
// requested and are removed in major.minor or before ("group/version resource (removed in X)").
func RemovedAPIs(metrics []byte, major, minor uint64) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(metrics))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		m := deprecatedAPI().FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		labels := map[string]string{}
		for _, kv := range strings.Split(m[1], ",") {
			k, v, ok := strings.Cut(kv, "=")
			if ok {
				labels[k] = strings.Trim(v, `"`)
			}
		}
		removed, err := semver.NewVersion(labels["removed_release"])
		if err != nil || removed.Major() > major || removed.Major() == major && removed.Minor() > minor {
			continue
		}
		gv := labels["version"]
		if labels["group"] != "" {
			gv = labels["group"] + "/" + gv
		}
		api := fmt.Sprintf("%s %s (removed in %s)", gv, labels["resource"], labels["removed_release"])
		if !slices.Contains(out, api) {
			out = append(out, api)
		}
	}
	slices.Sort(out)
	return out
}
