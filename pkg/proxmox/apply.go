// The Executor and Apply: boot images, VMID allocation and the per-VM dispatch.

package proxmox

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/talforge/talforge/pkg/poll"
)

// DefaultParallelism is how many VMs are worked on at once unless Options say otherwise: every
// VM of a homelab-sized cluster. PVE runs each create and start as a task of its own, and a
// bound of 4 made a 12-node `up` wait for three rounds of creates before the last node could
// boot (issue 16); a cluster larger than this still goes in rounds.
const DefaultParallelism = 16

// DefaultPoll is how often a PVE task's status is read: after 50 ms, growing ×1.5 to every
// 500 ms. A status read is one small GET, and the time between a task's end and the next read
// is lost on the critical path of `up`: a VM create of 3 s was seen 0.74 s late with the
// earlier 2 s cap, and is seen at most 0.5 s late with this one (issue 16).
func DefaultPoll() Backoff {
	return Backoff{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond, Factor: 1.5}
}

// Options tune an Executor; zero values take the defaults.
type Options struct {
	// Parallelism bounds how many VMs are worked on at once (default DefaultParallelism).
	Parallelism int
	// Attempts is how often a step is tried on transient errors (default 6).
	Attempts int
	// Retry is the backoff between attempts (default 250 ms doubling to 8 s, with jitter).
	Retry Backoff
	// Poll is the task polling schedule (default DefaultPoll()).
	Poll Backoff
	// Events receives progress events (may be nil). It is called from several goroutines.
	Events func(Event)
	// Progress, when set, receives the reports of waits for PVE tasks instead of Events. It is
	// called from several goroutines.
	Progress func(poll.Progress)
}

// Event is a progress report.
type Event struct {
	VM     string
	Step   string
	Detail string
}

func (e Event) String() string {
	if e.Detail == "" {
		return e.VM + ": " + e.Step
	}

	return e.VM + ": " + e.Step + ": " + e.Detail
}

// Executor applies plans through an API.
type Executor struct {
	api  API
	opts Options
	// allocMu serialises VMID allocation with the POST that claims the id.
	allocMu  sync.Mutex
	reserved map[int]bool
}

// NewExecutor returns an executor with defaults filled in.
func NewExecutor(api API, opts Options) *Executor {
	if opts.Parallelism <= 0 {
		opts.Parallelism = DefaultParallelism
	}

	if opts.Attempts <= 0 {
		opts.Attempts = 6
	}

	if opts.Retry.Initial == 0 {
		opts.Retry = Backoff{Initial: 250 * time.Millisecond, Max: 8 * time.Second, Factor: 2}
	}

	if opts.Poll.Initial == 0 {
		opts.Poll = DefaultPoll()
	}

	return &Executor{api: api, opts: opts, reserved: map[int]bool{}}
}

func (e *Executor) emit(vm, step, format string, a ...any) {
	if e.opts.Events != nil {
		e.opts.Events(Event{VM: vm, Step: step, Detail: fmt.Sprintf(format, a...)})
	}
}

// VMResult is the outcome for one VM.
type VMResult struct {
	Name    string
	VMID    int
	Action  Action
	Started bool
	// Pending lists config keys that wait for a restart.
	Pending []string
	Err     error
}

// Result is the outcome of Apply.
type Result struct {
	VMs []VMResult
}

// Apply converges Proxmox to the plan: boot images first, then every VM (create or update,
// then start) with bounded parallelism. A node in conflict (Plan.Blocked) is left alone and a
// failing VM does not stop the others; the returned error joins every conflict and failure.
// Cancelling ctx stops new work and returns promptly; tasks PVE has already started keep
// running there, and a re-run converges.
func (e *Executor) Apply(ctx context.Context, plan *Plan) (*Result, error) {
	for _, iso := range plan.ISOs {
		if !plan.Downloads(iso) {
			continue
		}

		if err := e.ensureISO(ctx, iso); err != nil {
			return nil, err
		}
	}

	if err := e.allocate(ctx, plan); err != nil {
		return nil, err
	}

	res := &Result{VMs: make([]VMResult, len(plan.VMs))}
	sem := make(chan struct{}, e.opts.Parallelism)

	var wg sync.WaitGroup

	for i := range plan.VMs {
		vp := plan.VMs[i]
		res.VMs[i] = VMResult{Name: vp.Spec.Name, VMID: vp.VMID, Action: vp.Action}

		if err := plan.Blocked(vp.Spec.Name); err != nil {
			res.VMs[i].Err = err
			continue
		}

		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			res.VMs[i].Err = ctx.Err()
			continue
		}

		wg.Add(1)

		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()

			r := &res.VMs[i]
			r.Err = e.applyVM(ctx, plan.Cluster, plan.VMs[i], r)
		}(i)
	}

	wg.Wait()

	var errs []error

	for _, r := range res.VMs {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("VM %s: %w", r.Name, r.Err))
		}
	}

	return res, errors.Join(append(errs, plan.unattributed()...)...)
}

// ensureISO makes PVE download the boot image into the node's ISO storage.
func (e *Executor) ensureISO(ctx context.Context, iso ISOPlan) error {
	label := "boot image on " + iso.Node

	return e.retry(ctx, label, "download", func(int) error {
		present, err := isoPresent(ctx, e.api, iso.Node, iso.Image)
		if err != nil || present {
			return err // present: a shared storage or an earlier attempt
		}

		e.emit(label, "download", "%s -> %s", iso.Image.URL, iso.Image.VolID())

		upid, err := e.api.DownloadURL(ctx, iso.Node, iso.Image.Storage, DownloadRequest{URL: iso.Image.URL, Filename: iso.Image.Filename, Content: "iso"})
		if err != nil {
			return fmt.Errorf("download-url %s: %w", iso.Image.URL, err)
		}

		err = e.Wait(ctx, upid)

		var te *TaskError
		if errors.As(err, &te) && strings.Contains(te.ExitStatus, "refusing to override existing file") {
			return nil // appeared meanwhile (shared storage)
		}

		if err != nil {
			return fmt.Errorf("downloading %s to %s: %w", iso.Image.URL, iso.Image.VolID(), err)
		}

		return nil
	})
}

// allocate assigns VMIDs to new VMs, one at a time, skipping ids the profile reserves for
// nodes not created yet.
func (e *Executor) allocate(ctx context.Context, plan *Plan) error {
	e.allocMu.Lock()
	defer e.allocMu.Unlock()

	for _, v := range plan.VMs {
		if v.VMID != 0 {
			e.reserved[v.VMID] = true
		}
	}

	// PVE's nextid is asked once: until the creates run it would answer the same id for every
	// VM, so the next ones are searched for upwards from the last one handed out (one request
	// per VM instead of two, before any VM of a large cluster can be created).
	last := 0

	for i := range plan.VMs {
		v := &plan.VMs[i]
		if v.Action != ActionCreate || v.VMID != 0 || plan.Blocked(v.Spec.Name) != nil {
			continue
		}

		var (
			id  int
			err error
		)

		if last == 0 {
			id, err = e.freeID(ctx)
		} else {
			id, err = e.freeFrom(ctx, last)
		}

		if err != nil {
			return fmt.Errorf("VM %s: allocating a VMID: %w", v.Spec.Name, err)
		}

		v.VMID = id
		e.reserved[id] = true
		last = id
	}

	return nil
}

// freeID returns a VMID that PVE reports free and this run has not handed out (allocMu held).
func (e *Executor) freeID(ctx context.Context) (int, error) {
	var id int

	err := e.retry(ctx, "vmid", "nextid", func(int) error {
		var err error
		id, err = e.api.NextID(ctx)

		return err
	})
	if err != nil {
		return 0, err
	}

	return e.freeFrom(ctx, id)
}

// freeFrom returns id, or the first id above it, that this run has not handed out and PVE
// reports free (allocMu held).
func (e *Executor) freeFrom(ctx context.Context, id int) (int, error) {
	for tries := 0; e.reserved[id]; tries++ {
		id++

		if tries > 1000 {
			return 0, errors.New("no free VMID found")
		}

		if e.reserved[id] {
			continue
		}

		free, err := e.api.IsFreeID(ctx, id)
		if err != nil {
			return 0, err
		}

		if !free {
			e.reserved[id] = true // taken by someone else
		}
	}

	return id, nil
}

// findVM re-observes one VM by id.
func (e *Executor) findVM(ctx context.Context, vmid int) (*VMResource, error) {
	vms, err := e.api.ListVMs(ctx)
	if err != nil {
		return nil, err
	}

	for i := range vms {
		if vms[i].VMID == vmid {
			return &vms[i], nil
		}
	}

	return nil, nil
}

func (e *Executor) applyVM(ctx context.Context, cluster string, vp VMPlan, r *VMResult) error {
	s := vp.Spec
	r.VMID = vp.VMID

	switch vp.Action {
	case ActionCreate:
		if err := e.create(ctx, cluster, &vp); err != nil {
			return err
		}

		r.VMID = vp.VMID
	case ActionUpdate:
		if err := e.update(ctx, cluster, vp, vp.Unfinished); err != nil {
			return err
		}

		if vp.Parked != nil {
			// an earlier run created the VM but did not get the kept disk across
			if err := e.reattach(ctx, cluster, vp); err != nil {
				return err
			}
		}
	}

	if vp.NeedsStart() {
		if err := e.start(ctx, cluster, vp); err != nil {
			return err
		}

		r.Started = true
	}

	if vp.Action == ActionUpdate || len(vp.Pending) > 0 {
		var pending []string
		if err := e.retry(ctx, s.Name, "read pending", func(int) (err error) {
			pending, err = e.api.PendingKeys(ctx, s.PVENode, vp.VMID)
			return err
		}); err != nil {
			return fmt.Errorf("reading pending changes: %w", err)
		}

		sort.Strings(pending)
		r.Pending = pending
	}

	return nil
}

// verifyIfExists is verify for a VM that may be gone (nil config, no error).
func (e *Executor) verifyIfExists(ctx context.Context, x expect) (map[string]string, error) {
	vm, err := e.findVM(ctx, x.vmid)
	if err != nil || vm == nil {
		return nil, err
	}

	return e.verify(ctx, x)
}
