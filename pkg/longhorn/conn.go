package longhorn

import (
	"context"
	"fmt"
	"io"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"

	"github.com/talforge/talforge/pkg/poll"
)

// Conn is one cluster's Kubernetes API as Longhorn work needs it: the dynamic client for
// Longhorn's custom resources, the typed clientset for everything else, and the way to wait
// on them (one interval, one clock, progress lines on one writer). Client and pkg/restore's
// client both work through one.
type Conn struct {
	Dyn dynamic.Interface
	CS  kubernetes.Interface

	opts ConnOptions
}

// ConnOptions tune a Conn's waits.
type ConnOptions struct {
	// Poll is the pause between observations (default 2s).
	Poll time.Duration
	// Clock measures waits and is what Now reads (default the real clock).
	Clock clock.Clock
	// Log receives a line when a wait starts, at least every 15 s while it goes on, and when
	// it ends (nil: none).
	Log io.Writer
	// Progress, when set, receives the waits' reports instead of Log.
	Progress func(poll.Progress)
}

// RESTConfig reads a kubeconfig held in memory (the decrypted one is never written to disk).
func RESTConfig(kubeconfig []byte) (*rest.Config, error) {
	g, err := newKubeGetter(kubeconfig, Namespace)
	if err != nil {
		return nil, err
	}
	return g.ToRESTConfig()
}

// NewConn connects with a REST config; no request is made yet.
func NewConn(cfg *rest.Config, opts ConnOptions) (*Conn, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	if opts.Poll <= 0 {
		opts.Poll = 2 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &Conn{Dyn: dyn, CS: cs, opts: opts}, nil
}

// Resource is a Longhorn resource in Namespace.
func (c *Conn) Resource(gvr schema.GroupVersionResource) dynamic.ResourceInterface {
	return c.Dyn.Resource(gvr).Namespace(Namespace)
}

// Now is the Conn's clock's time.
func (c *Conn) Now() time.Time { return c.opts.Clock.Now() }

// Wait calls check every Poll until it is done, fails, timeout passes (an error wrapping
// poll.ErrTimeout with check's last status) or ctx ends, with progress lines on Log.
func (c *Conn) Wait(ctx context.Context, timeout time.Duration, what string, check poll.Check) error {
	return poll.Until(ctx, poll.Options{
		What: what, Interval: c.opts.Poll, Timeout: timeout, Clock: c.opts.Clock, Progress: c.progress(),
	}, check)
}

// WaitWatching is Wait that also looks again as soon as the object name of gvr changes (a
// watch event), rather than up to Poll later: the end of a wait on a status another
// controller sets is seen at once. Without a watch (the resource is not served yet, or the
// watch is refused) it polls like Wait.
func (c *Conn) WaitWatching(ctx context.Context, timeout time.Duration, what string, gvr schema.GroupVersionResource, name string, check poll.Check) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wake := make(chan struct{}, 1)
	if w, err := c.Resource(gvr).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name}); err == nil {
		defer w.Stop()
		go func() {
			for range w.ResultChan() {
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		}()
	}
	return poll.Until(ctx, poll.Options{
		What: what, Interval: c.opts.Poll, Timeout: timeout, Clock: c.opts.Clock, Progress: c.progress(), Wake: wake,
	}, check)
}

// Heartbeat runs fn, a blocking call (a Helm action with its hooks), reporting it like a wait:
// at once, at least every 15 s, and when it ends.
func (c *Conn) Heartbeat(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	return poll.Heartbeat(ctx, poll.Options{What: what, Clock: c.opts.Clock, Progress: c.progress()}, fn)
}

func (c *Conn) progress() func(poll.Progress) {
	if c.opts.Progress != nil {
		return c.opts.Progress
	}
	return poll.Lines(c.opts.Log)
}
