package proxmox

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Backoff is an exponential retry/poll schedule.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
	Factor  float64
}

func (b Backoff) next(d time.Duration) time.Duration {
	if d == 0 {
		return b.Initial
	}

	n := time.Duration(float64(d) * b.Factor)
	if n > b.Max {
		n = b.Max
	}

	return n
}

// Options tune an Executor; zero values take the defaults.
type Options struct {
	// Parallelism bounds how many VMs are worked on at once (default 4).
	Parallelism int
	// Attempts is how often a step is tried on transient errors (default 6).
	Attempts int
	// Retry is the backoff between attempts (default 250 ms doubling to 8 s, with jitter).
	Retry Backoff
	// Poll is the task polling schedule (default 50 ms growing ×1.5 to 2 s).
	Poll Backoff
	// Events receives progress events (may be nil). It is called from several goroutines.
	Events func(Event)
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
		opts.Parallelism = 4
	}

	if opts.Attempts <= 0 {
		opts.Attempts = 6
	}

	if opts.Retry.Initial == 0 {
		opts.Retry = Backoff{Initial: 250 * time.Millisecond, Max: 8 * time.Second, Factor: 2}
	}

	if opts.Poll.Initial == 0 {
		opts.Poll = Backoff{Initial: 50 * time.Millisecond, Max: 2 * time.Second, Factor: 1.5}
	}

	return &Executor{api: api, opts: opts, reserved: map[int]bool{}}
}

func (e *Executor) emit(vm, step, format string, a ...any) {
	if e.opts.Events != nil {
		e.opts.Events(Event{VM: vm, Step: step, Detail: fmt.Sprintf(format, a...)})
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()

	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retry runs fn until it succeeds, fails permanently, or attempts run out. attempt is
// 0-based so that fn can re-observe state before trying again.
func (e *Executor) retry(ctx context.Context, vm, step string, fn func(attempt int) error) error {
	var (
		err   error
		delay time.Duration
	)

	for attempt := 0; attempt < e.opts.Attempts; attempt++ {
		if err = fn(attempt); err == nil || !Retryable(err) || ctx.Err() != nil {
			return err
		}

		delay = e.opts.Retry.next(delay)
		jittered := delay/2 + time.Duration(rand.Int64N(int64(delay/2)+1)) // jitter only

		e.emit(vm, step, "transient error, retrying in %s: %v", jittered.Round(time.Millisecond), err)

		if serr := sleepCtx(ctx, jittered); serr != nil {
			return fmt.Errorf("%w (last error: %v)", serr, err)
		}
	}

	return fmt.Errorf("giving up after %d attempts: %w", e.opts.Attempts, err)
}

// Wait polls a task until it stops. A task that fails returns a *TaskError carrying the tail of
// its log. Transient polling errors are tolerated.
func (e *Executor) Wait(ctx context.Context, upid string) error {
	if upid == "" {
		return nil // a synchronous answer
	}

	var (
		delay   time.Duration
		failure int
	)

	for {
		st, err := e.api.TaskStatus(ctx, upid)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("waiting for task %s: %w", upid, ctx.Err())
			}

			if !Retryable(err) || failure >= e.opts.Attempts {
				return fmt.Errorf("polling task %s: %w", upid, err)
			}

			failure++
		} else if !st.Running {
			if st.Succeeded() {
				return nil
			}

			te := &TaskError{UPID: upid, ExitStatus: st.ExitStatus}
			if lines, lerr := e.api.TaskLog(ctx, upid, 10); lerr == nil {
				te.LogTail = lines
			}

			return te
		} else {
			failure = 0
		}

		delay = e.opts.Poll.next(delay)
		if err := sleepCtx(ctx, delay); err != nil {
			return fmt.Errorf("waiting for task %s: %w", upid, err)
		}
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
// then start) with bounded parallelism. A failing VM does not stop the others; the returned
// error joins every failure. Cancelling ctx stops new work and returns promptly; tasks PVE has
// already started keep running there, and a re-run converges.
func (e *Executor) Apply(ctx context.Context, plan *Plan) (*Result, error) {
	if err := plan.Err(); err != nil {
		return nil, err
	}

	for _, iso := range plan.ISOs {
		if iso.Present {
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

	return res, errors.Join(errs...)
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

	for i := range plan.VMs {
		v := &plan.VMs[i]
		if v.Action != ActionCreate || v.VMID != 0 {
			continue
		}

		id, err := e.freeID(ctx)
		if err != nil {
			return fmt.Errorf("VM %s: allocating a VMID: %w", v.Spec.Name, err)
		}

		v.VMID = id
		e.reserved[id] = true
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
		if err := e.update(ctx, cluster, vp, false); err != nil {
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
		if err := e.start(ctx, cluster, s, vp.VMID); err != nil {
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

// create makes the VM (or clones the template), re-attaches a parked data disk, and converges
// a clone's config. Each attempt first re-observes, so a create whose answer was lost (dropped
// connection) is recognised instead of duplicated.
func (e *Executor) create(ctx context.Context, cluster string, vp *VMPlan) error {
	s := vp.Spec
	cfg := Params{}

	for k, v := range s.Config {
		cfg[k] = v
	}

	if vp.Parked != nil {
		delete(cfg, SlotData) // re-attached below, not allocated
	}

	if s.Pool != "" {
		cfg["pool"] = s.Pool
	}

	err := e.retry(ctx, s.Name, "create", func(attempt int) error {
		if attempt > 0 {
			vm, err := e.findVM(ctx, vp.VMID)
			if err != nil {
				return err
			}

			if vm != nil {
				if vm.IsNodeOf(cluster) && vm.Name == s.Name || vm.Locked && vm.Name == "" {
					return e.waitUnlocked(ctx, s.Name, vp.VMID)
				}

				if s.VMID != 0 {
					return fmt.Errorf("VMID %d was taken by VM %q meanwhile; it is not ours, so it is not touched", vp.VMID, vm.Name)
				}

				e.allocMu.Lock()
				id, err := e.freeID(ctx)
				if err == nil {
					e.reserved[id] = true
				}
				e.allocMu.Unlock()

				if err != nil {
					return err
				}

				e.emit(s.Name, "create", "VMID %d was taken meanwhile; using %d", vp.VMID, id)
				vp.VMID = id
			}
		}

		e.emit(s.Name, "create", "VMID %d on %s", vp.VMID, s.PVENode)

		var (
			upid string
			err  error
		)

		if s.Template != 0 {
			p := Params{"name": s.Name, "storage": s.Storage}
			if s.Pool != "" {
				p["pool"] = s.Pool
			}

			upid, err = e.api.CloneVM(ctx, s.PVENode, s.Template, vp.VMID, p)
		} else {
			upid, err = e.api.CreateVM(ctx, s.PVENode, vp.VMID, cfg)
		}

		if err != nil {
			return err
		}

		return e.Wait(ctx, upid)
	})
	if err != nil {
		return fmt.Errorf("creating VM %d: %w", vp.VMID, err)
	}

	if s.Template != 0 {
		// a clone has the template's config: converge it like an update
		cur, err := e.api.VMConfig(ctx, s.PVENode, vp.VMID)
		if err != nil {
			return fmt.Errorf("reading cloned config: %w", err)
		}

		spec := s
		if vp.Parked != nil {
			spec.Config = cfg
		}

		d := diffConfig(spec, cur)
		if len(d.errs) > 0 {
			return fmt.Errorf("converging the clone of template %d: %s", s.Template, strings.Join(d.errs, "; "))
		}

		up := VMPlan{Spec: s, VMID: vp.VMID, Set: d.set, Delete: d.del, Resize: d.resize}
		if err := e.update(ctx, cluster, up, true); err != nil {
			return err
		}
	}

	if vp.Parked != nil {
		if err := e.reattach(ctx, cluster, *vp); err != nil {
			return err
		}
	}

	return nil
}

// waitUnlocked waits until a VM's config lock (e.g. "create") is released.
func (e *Executor) waitUnlocked(ctx context.Context, name string, vmid int) error {
	var delay time.Duration

	for {
		vm, err := e.findVM(ctx, vmid)
		if err != nil {
			return err
		}

		if vm == nil {
			return fmt.Errorf("%w: VM %d disappeared while being created (its create task failed); retrying", ErrConnection, vmid)
		}

		if !vm.Locked {
			e.emit(name, "create", "VMID %d exists (an earlier attempt created it)", vmid)
			return nil
		}

		delay = e.opts.Poll.next(delay)
		if err := sleepCtx(ctx, delay); err != nil {
			return err
		}
	}
}

// reattach moves a kept data disk from its holder onto scsi1 of the node's VM, checks that
// scsi1 now holds that very volume (renamed by move_disk to the new VM), and only then deletes
// the holder, which by then must hold no disk at all. Both VMs are re-checked (ownership tag and
// name) on every attempt, and the move carries both config digests, so PVE itself refuses it if
// either VM changed after the check.
func (e *Executor) reattach(ctx context.Context, cluster string, vp VMPlan) error {
	s, pk := vp.Spec, vp.Parked
	nx := expect{cluster: cluster, kind: KindNode, name: s.Name, node: s.PVENode, vmid: vp.VMID}
	hx := expect{cluster: cluster, kind: KindHolder, name: pk.HolderName, node: pk.HolderNode, vmid: pk.HolderVMID}

	if hx.name == "" {
		hx.name = s.ParkedName()
	}

	wrap := func(err error) error {
		return fmt.Errorf("re-attaching kept data disk %s from VM %d: %w", pk.VolID, pk.HolderVMID, err)
	}

	// The volumes the VM references before the move: the kept disk, renamed to this VM, must
	// be none of them.
	var before map[string]bool

	if err := e.retry(ctx, s.Name, "reattach", func(int) error {
		cfg, err := e.verify(ctx, nx)
		if err != nil {
			return err
		}

		if d, busy := cfg[SlotData]; busy {
			return fmt.Errorf("VM %d already has %s on %s, which is not the kept disk; the kept disk stays in holder VM %d (detach that disk, then re-run)",
				vp.VMID, d, SlotData, pk.HolderVMID)
		}

		before = map[string]bool{}
		for _, v := range heldVolumes(cfg) {
			before[v] = true
		}

		return nil
	}); err != nil {
		return wrap(err)
	}

	e.emit(s.Name, "reattach", "%s from VM %d", pk.VolID, pk.HolderVMID)

	err := e.retry(ctx, s.Name, "reattach", func(int) error {
		// the source first: move_disk writes the source's config before the target's
		hcfg, err := e.verifyIfExists(ctx, hx)
		if err != nil {
			return err
		}

		ncfg, err := e.verify(ctx, nx)
		if err != nil {
			return err
		}

		held := parseProp(hcfg[SlotData], "file")["file"]

		switch {
		case held == pk.VolID && ncfg[SlotData] != "":
			// a move that finished between the two reads is no stranger's disk: look again
			if again, err := e.verifyIfExists(ctx, hx); err != nil {
				return err
			} else if parseProp(again[SlotData], "file")["file"] != pk.VolID {
				return fmt.Errorf("%w: the kept disk left holder VM %d while it was read", errMoveInFlight, pk.HolderVMID)
			}

			return fmt.Errorf("VM %d got %s on %s from someone else meanwhile; the kept disk stays in holder VM %d and nothing is deleted",
				vp.VMID, ncfg[SlotData], SlotData, pk.HolderVMID)
		case held == pk.VolID:
			upid, err := e.api.MoveDisk(ctx, pk.HolderNode, pk.HolderVMID, MoveDiskRequest{Disk: pk.Slot, TargetVMID: vp.VMID, TargetDisk: SlotData,
				Digest: hcfg["digest"], TargetDigest: ncfg["digest"]})
			if err != nil {
				return err
			}

			if err := e.Wait(ctx, upid); err != nil {
				return err
			}

			if ncfg, err = e.verify(ctx, nx); err != nil {
				return err
			}
		case held != "":
			return fmt.Errorf("holder VM %d now holds %s on %s, not the kept disk %s of the plan; nothing is moved or deleted",
				pk.HolderVMID, held, SlotData, pk.VolID)
		case ncfg[SlotData] == "":
			// neither holds it: a move between the source's and the target's config write
			// (or gone elsewhere, which the last attempt reports)
			return fmt.Errorf("%w: %s", errMoveInFlight, keptDiskAttached(ncfg, pk, vp.VMID, before))
		}
		// The kept disk left the holder: this attempt or an earlier one whose answer was lost
		// moved it, or someone else did. Only the kept volume on scsi1 counts as success.
		return keptDiskAttached(ncfg, pk, vp.VMID, before)
	})
	if err != nil {
		return wrap(err)
	}

	if s.DataDiskGiB > pk.SizeGiB {
		if err := e.resize(ctx, nx, SlotData, s.DataDiskGiB); err != nil {
			return err
		}
	}

	return e.retry(ctx, s.Name, "remove holder", func(int) error {
		hcfg, err := e.verifyIfExists(ctx, hx)
		if err != nil || hcfg == nil {
			return err
		}

		if vols := heldVolumes(hcfg); len(vols) > 0 {
			return fmt.Errorf("holder VM %d still holds %s; it is not deleted", pk.HolderVMID, strings.Join(vols, ", "))
		}

		e.emit(s.Name, "remove holder", "VMID %d", pk.HolderVMID)

		// no destroy-unreferenced-disks: the holder's name may be matched by volumes that are
		// not in its config; only what it references (nothing) goes
		return e.api.DeleteVM(ctx, pk.HolderNode, pk.HolderVMID, true, false)
	})
}

// errMoveInFlight marks a disk found in neither VM of a move_disk: PVE writes the source's
// config, then the target's, so a move in progress looks like that for a moment. Retryable:
// the next attempt looks again.
var errMoveInFlight = errors.New("the disk is between two VMs (a move in progress?)")

// keptDiskAttached checks that scsi1 of a VM is the kept volume after move_disk renamed it to
// the VM (docs/proxmox.md#move-disk): a volume the VM did not reference before,
// named for this VM, on the kept disk's storage, of its size, with its serial.
func keptDiskAttached(cfg map[string]string, pk *ParkedDisk, vmid int, before map[string]bool) error {
	d := parseProp(cfg[SlotData], "file")
	f := d["file"]

	var why string

	switch {
	case f == "":
		return fmt.Errorf("the kept disk %s is no longer in holder VM %d, and VM %d has nothing on %s: it was moved elsewhere; nothing is deleted",
			pk.VolID, pk.HolderVMID, vmid, SlotData)
	case before[f]:
		why = "the VM referenced it before the move"
	case volumeOwner(f) != vmid:
		why = fmt.Sprintf("it is not named for VM %d", vmid)
	case volumeStorage(f) != volumeStorage(pk.VolID):
		why = "it is on storage " + volumeStorage(f)
	case pk.SizeGiB > 0 && diskGiB(d) != pk.SizeGiB:
		why = fmt.Sprintf("it has %d GiB, the kept disk %d GiB", diskGiB(d), pk.SizeGiB)
	case pk.Serial != "" && d["serial"] != pk.Serial:
		why = fmt.Sprintf("its serial is %q, the kept disk's %q", d["serial"], pk.Serial)
	default:
		return nil
	}

	return fmt.Errorf("VM %d has %s on %s, which is not the kept disk %s (%s); holder VM %d is not deleted",
		vmid, f, SlotData, pk.VolID, why, pk.HolderVMID)
}

// verifyIfExists is verify for a VM that may be gone (nil config, no error).
func (e *Executor) verifyIfExists(ctx context.Context, x expect) (map[string]string, error) {
	vm, err := e.findVM(ctx, x.vmid)
	if err != nil || vm == nil {
		return nil, err
	}

	return e.verify(ctx, x)
}

// update sends the config change and grows disks, each after re-checking that the VM is still
// the cluster's node VM and with its config digest (PVE refuses the change if the config
// changed after the check). fresh: the VM was just cloned and carries the template's tags.
func (e *Executor) update(ctx context.Context, cluster string, vp VMPlan, fresh bool) error {
	s := vp.Spec
	x := expect{cluster: cluster, kind: KindNode, name: s.Name, node: s.PVENode, vmid: vp.VMID, fresh: fresh}

	if len(vp.Set) > 0 || len(vp.Delete) > 0 {
		p := Params{}
		for k, v := range vp.Set {
			p[k] = v
		}

		if len(vp.Delete) > 0 {
			p["delete"] = strings.Join(vp.Delete, ",")
		}

		e.emit(s.Name, "update", "%s", strings.Join(p.Keys(), ", "))

		if err := e.retry(ctx, s.Name, "update", func(int) error {
			cfg, err := e.verify(ctx, x)
			if err != nil {
				return err
			}

			p["digest"] = cfg["digest"]

			upid, err := e.api.UpdateVM(ctx, s.PVENode, vp.VMID, p)
			if err != nil {
				return err
			}

			return e.Wait(ctx, upid)
		}); err != nil {
			return fmt.Errorf("updating config: %w", err)
		}
	}

	disks := make([]string, 0, len(vp.Resize))
	for d := range vp.Resize {
		disks = append(disks, d)
	}

	sort.Strings(disks)

	for _, d := range disks {
		if err := e.resize(ctx, x, d, vp.Resize[d]); err != nil {
			return err
		}
	}

	return nil
}

// resize grows a disk after re-checking ownership, with the config digest.
func (e *Executor) resize(ctx context.Context, x expect, disk string, gib int) error {
	size := strconv.Itoa(gib) + "G"
	e.emit(x.name, "resize", "%s to %s", disk, size)

	if err := e.retry(ctx, x.name, "resize", func(int) error {
		cfg, err := e.verify(ctx, x)
		if err != nil {
			return err
		}

		upid, err := e.api.ResizeDisk(ctx, x.node, x.vmid, disk, size, cfg["digest"])
		if err != nil {
			return err
		}

		return e.Wait(ctx, upid)
	}); err != nil {
		return fmt.Errorf("growing %s to %s: %w", disk, size, err)
	}

	return nil
}

// start starts the VM and waits until PVE reports it running.
func (e *Executor) start(ctx context.Context, cluster string, s VMSpec, vmid int) error {
	e.emit(s.Name, "start", "VMID %d", vmid)
	x := expect{cluster: cluster, kind: KindNode, name: s.Name, node: s.PVENode, vmid: vmid}

	err := e.retry(ctx, s.Name, "start", func(attempt int) error {
		if attempt > 0 {
			vm, err := e.findVM(ctx, vmid)
			if err != nil {
				return err
			}

			if vm != nil && vm.Running {
				return nil
			}
		}

		if _, err := e.verify(ctx, x); err != nil {
			return err
		}

		upid, err := e.api.StartVM(ctx, s.PVENode, vmid)
		if err != nil {
			return err
		}

		err = e.Wait(ctx, upid)

		var te *TaskError
		if errors.As(err, &te) && strings.Contains(te.ExitStatus, "already running") {
			return nil
		}

		return err
	})
	if err != nil {
		return fmt.Errorf("starting VM %d: %w", vmid, err)
	}

	var vm *VMResource
	if err := e.retry(ctx, s.Name, "check running", func(int) (err error) {
		vm, err = e.findVM(ctx, vmid)
		return err
	}); err != nil {
		return fmt.Errorf("checking VM %d is running: %w", vmid, err)
	}

	if vm == nil || !vm.Running {
		return fmt.Errorf("VM %d is not running after a successful start task", vmid)
	}

	e.emit(s.Name, "running", "VMID %d", vmid)

	return nil
}
