package longhorn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/clock"

	"github.com/talforge/talforge/pkg/poll"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// Options configure a Client.
type Options struct {
	// Kubeconfig is the cluster's kubeconfig, decrypted in memory (required).
	Kubeconfig []byte
	// ChartCacheDir holds downloaded charts (default <user cache dir>/talforge/charts).
	ChartCacheDir string
	// Decrypt decrypts a sops file in memory (default sopsfile.DecryptFile).
	Decrypt func(path string) ([]byte, error)
	// HelmTimeout bounds each Helm action, hooks included (default 15m: Longhorn's hook
	// Jobs have a 900 s deadline).
	HelmTimeout time.Duration
	// BackupTargetTimeout bounds the wait for BackupTarget "default" (default 3m).
	BackupTargetTimeout time.Duration
	// HealthTimeout bounds each health gate of an upgrade (default 30m).
	HealthTimeout time.Duration
	// Poll is the interval of status polls (default 2s).
	Poll time.Duration
	// Clock measures waits and stamps sync requests (default the real clock).
	Clock clock.Clock
	// Log receives progress lines, among them a line when a wait starts and at least every
	// 15 s while it goes on (default: discarded). Never secrets.
	Log io.Writer
	// Progress, when set, receives the reports of waits and Helm actions instead of Log
	// (lifecycle shows them on its progress stream).
	Progress func(poll.Progress)
	// Preflight, when set, checks the profile's backup target with the decrypted
	// credentials (the credential Secret's data) before Install and Upgrade run Helm; its
	// error stops them. cmd/talforge sets it to backuptarget.Preflight; nil skips the check.
	Preflight func(ctx context.Context, target string, creds map[string]string) error
}

// Client manages Longhorn on one cluster.
type Client struct {
	cluster *profile.Cluster
	opts    Options
	kube    *Conn
	ext     apiextclient.Interface
	helm    *helmOps
}

// New checks the profile's Longhorn section and connects to the cluster (lazily: no
// request is made yet).
func New(c *profile.Cluster, opts Options) (*Client, error) {
	if c.Longhorn == nil {
		return nil, errors.New("the profile has no longhorn section: add one to manage Longhorn")
	}
	if len(opts.Kubeconfig) == 0 {
		return nil, errors.New("no kubeconfig")
	}
	if opts.ChartCacheDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("chart cache: %w (set a cache directory)", err)
		}
		opts.ChartCacheDir = filepath.Join(dir, "talforge", "charts")
	}
	if opts.Decrypt == nil {
		opts.Decrypt = sopsfile.DecryptFile
	}
	if opts.HelmTimeout == 0 {
		opts.HelmTimeout = 15 * time.Minute
	}
	if opts.BackupTargetTimeout == 0 {
		opts.BackupTargetTimeout = 3 * time.Minute
	}
	if opts.HealthTimeout == 0 {
		opts.HealthTimeout = 30 * time.Minute
	}
	if opts.Poll == 0 {
		opts.Poll = 2 * time.Second
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	g, err := newKubeGetter(opts.Kubeconfig, Namespace)
	if err != nil {
		return nil, err
	}
	cfg, _ := g.ToRESTConfig()
	cl := &Client{cluster: c, opts: opts}
	if cl.kube, err = NewConn(cfg, ConnOptions{Poll: opts.Poll, Clock: opts.Clock, Log: opts.Log, Progress: opts.Progress}); err != nil {
		return nil, err
	}
	if cl.ext, err = apiextclient.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	if cl.helm, err = newHelmOps(g, c.Longhorn.RepoURL, opts.ChartCacheDir, opts.HelmTimeout, func(string, ...any) {}); err != nil {
		return nil, err
	}
	return cl, nil
}

func (cl *Client) logf(format string, args ...any) {
	fmt.Fprintf(cl.opts.Log, format+"\n", args...)
}

// ErrDeletionConfirmed is returned by every operation while Longhorn's
// deleting-confirmation-flag is "true".
var ErrDeletionConfirmed = errors.New(`the Longhorn setting deleting-confirmation-flag is "true"`)

// preflight refuses to touch anything while deleting-confirmation-flag is "true": with
// it, a Helm operation that ends in an uninstall (a failed --atomic install, a mistaken
// `helm uninstall`) deletes every volume and its replica data.
func (cl *Client) preflight(ctx context.Context) error {
	v, ok, err := cl.setting(ctx, settingDeletingConfirmationFlag)
	if err != nil {
		return fmt.Errorf("read setting %s: %w", settingDeletingConfirmationFlag, err)
	}
	if ok && v == "true" {
		return fmt.Errorf("refusing to run: %w, so an uninstall would delete every Longhorn volume and its data. "+
			"If that is not what you want, set it back first: kubectl -n %s patch settings.longhorn.io %s --type merge -p '{\"value\":\"false\"}'",
			ErrDeletionConfirmed, Namespace, settingDeletingConfirmationFlag)
	}
	return nil
}

// setting reads a Setting's value; ok is false when it or its CRD does not exist.
func (cl *Client) setting(ctx context.Context, name string) (string, bool, error) {
	u, err := cl.kube.Resource(SettingGVR).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	v, _, _ := unstructured.NestedString(u.Object, "value")
	return v, true, nil
}
