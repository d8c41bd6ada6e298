package restore

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"

	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/poll"
)

// Namespace is where Longhorn keeps its custom resources (longhorn.Namespace).
const Namespace = longhorn.Namespace

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
	// Log receives progress lines, among them a line when a wait starts and at least every
	// 15 s while it goes on (default: discarded).
	Log io.Writer
	// Progress, when set, receives the reports of waits instead of Log.
	Progress func(poll.Progress)
	// Now stamps results (Took) and sync requests (default Clock.Now, else time.Now).
	Now func() time.Time
	// Clock measures waits (default the real clock).
	Clock clock.Clock
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
	switch {
	case o.Now != nil:
	case o.Clock != nil:
		o.Now = o.Clock.Now
	default:
		o.Now = time.Now
	}
	return o
}

// Client talks to one cluster's Longhorn through its Kubernetes API.
type Client struct {
	opts Options
	kube *longhorn.Conn
}

// New connects with a kubeconfig (decrypted in memory; no request is made yet).
func New(kubeconfig []byte, opts Options) (*Client, error) {
	if len(kubeconfig) == 0 {
		return nil, errors.New("no kubeconfig")
	}
	cfg, err := longhorn.RESTConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	return NewForConfig(cfg, opts)
}

// NewForConfig connects with a REST config.
func NewForConfig(cfg *rest.Config, opts Options) (*Client, error) {
	opts = opts.withDefaults()
	kube, err := longhorn.NewConn(cfg, longhorn.ConnOptions{Poll: opts.Poll, Clock: opts.Clock, Log: opts.Log, Progress: opts.Progress})
	if err != nil {
		return nil, err
	}
	return &Client{opts: opts, kube: kube}, nil
}

func (c *Client) logf(format string, args ...any) {
	fmt.Fprintf(c.opts.Log, format+"\n", args...)
}

// randomSuffix returns n random hex characters for object names Longhorn-style
// (backup-1a2b3c4d5e6f7a8b).
func randomSuffix(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b) // crypto/rand never fails on Linux
	return hex.EncodeToString(b)[:n]
}
