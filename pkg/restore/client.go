package restore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Namespace is where Longhorn keeps its custom resources.
const Namespace = "longhorn-system"

// Longhorn resources (longhorn.io/v1beta2) and labels (longhorn-manager types/types.go).
var (
	volumeGVR       = schema.GroupVersionResource{Group: "longhorn.io", Version: "v1beta2", Resource: "volumes"}
	snapshotGVR     = schema.GroupVersionResource{Group: "longhorn.io", Version: "v1beta2", Resource: "snapshots"}
	backupGVR       = schema.GroupVersionResource{Group: "longhorn.io", Version: "v1beta2", Resource: "backups"}
	backupTargetGVR = schema.GroupVersionResource{Group: "longhorn.io", Version: "v1beta2", Resource: "backuptargets"}
)

const (
	labelBackupVolume       = "backup-volume"
	labelBackupTarget       = "backup-target"
	defaultBackupTarget     = "default"
	csiDriver               = "driver.longhorn.io"
	managedByLabel          = "app.kubernetes.io/managed-by"
	managedBy               = "talforge"
	backupStateCompleted    = "Completed"
	backupStateError        = "Error"
	restoreConditionType    = "Restore"
	restoreFailureReason    = "RestoreFailure"
	volumeRobustnessFaulted = "faulted"
)

// Options tune a Client. The zero value gives production defaults.
type Options struct {
	// Poll is the pause between observations (default 2s).
	Poll time.Duration
	// BackupTimeout bounds one backup (default 1h: the first backup of a big volume uploads
	// all of it).
	BackupTimeout time.Duration
	// RestoreTimeout bounds one restore (default 1h).
	RestoreTimeout time.Duration
	// SyncTimeout bounds the wait for Longhorn to list a volume's backups from the backup
	// target (default 5m).
	SyncTimeout time.Duration
	// Log receives progress lines (default: discarded).
	Log io.Writer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Poll, 2*time.Second)
	def(&o.BackupTimeout, time.Hour)
	def(&o.RestoreTimeout, time.Hour)
	def(&o.SyncTimeout, 5*time.Minute)
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Client talks to one cluster's Longhorn through its Kubernetes API.
type Client struct {
	opts Options
	dyn  dynamic.Interface
	cs   kubernetes.Interface
}

// New connects with a kubeconfig (decrypted in memory; no request is made yet).
func New(kubeconfig []byte, opts Options) (*Client, error) {
	if len(kubeconfig) == 0 {
		return nil, errors.New("no kubeconfig")
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return NewForConfig(cfg, opts)
}

// NewForConfig connects with a REST config.
func NewForConfig(cfg *rest.Config, opts Options) (*Client, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Client{opts: opts.withDefaults(), dyn: dyn, cs: cs}, nil
}

func (c *Client) logf(format string, args ...any) {
	fmt.Fprintf(c.opts.Log, format+"\n", args...)
}

func (c *Client) lh(gvr schema.GroupVersionResource) dynamic.ResourceInterface {
	return c.dyn.Resource(gvr).Namespace(Namespace)
}

// poll calls check every Poll until it is done, fails, or timeout passes; the error carries
// check's last explanation.
func (c *Client) poll(ctx context.Context, timeout time.Duration, what string, check func() (bool, string, error)) error {
	deadline := c.opts.Now().Add(timeout)
	for {
		done, why, err := check()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if done {
			return nil
		}
		if c.opts.Now().After(deadline) {
			return fmt.Errorf("%s: not done after %s: %s", what, timeout, why)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last seen: %s)", what, ctx.Err(), why)
		case <-time.After(c.opts.Poll):
		}
	}
}

// randomSuffix returns n random hex characters for object names Longhorn-style
// (backup-1a2b3c4d5e6f7a8b).
func randomSuffix(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b) // crypto/rand never fails on Linux
	return hex.EncodeToString(b)[:n]
}
