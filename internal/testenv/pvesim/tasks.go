package pvesim

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// task is a PVE worker task.
type task struct {
	upid      string
	node      string
	typ       string
	id        string
	user      string // token id user@realm!name
	pid       int
	pstart    int
	starttime int64
	running   bool
	exit      string
	log       []string
	done      chan struct{}
}

// TaskInfo is a snapshot of a task for tests.
type TaskInfo struct {
	UPID       string
	Type       string
	ID         string
	Running    bool
	ExitStatus string
	Log        []string
}

// Tasks returns all tasks in start order.
func (s *Server) Tasks() []TaskInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]TaskInfo, 0, len(s.tasks))
	for _, t := range s.tasks {
		out = append(out, TaskInfo{UPID: t.upid, Type: t.typ, ID: t.id, Running: t.running, ExitStatus: t.exit, Log: append([]string(nil), t.log...)})
	}
	sortTasks(out)
	return out
}

func sortTasks(ts []TaskInfo) {
	for i := 1; i < len(ts); i++ {
		for j := i; j > 0 && ts[j].UPID < ts[j-1].UPID; j-- {
			ts[j], ts[j-1] = ts[j-1], ts[j]
		}
	}
}

// WaitIdle blocks until no task is running or the timeout passes; it
// reports whether the server became idle.
func (s *Server) WaitIdle(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		busy := false
		for _, t := range s.tasks {
			if t.running {
				busy = true
				break
			}
		}
		s.mu.Unlock()
		if !busy {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// taskError fails a task with a message (the task's exit status).
type taskError struct {
	msg string
	log []string
}

func (e *taskError) Error() string { return e.msg }

func failTask(format string, a ...any) *taskError { return &taskError{msg: fmt.Sprintf(format, a...)} }

// taskSpec describes a worker to start.
type taskSpec struct {
	typ  string
	id   string // the UPID id field (usually the vmid)
	vmid int    // VM whose config lock the worker holds (0: none)
	// extraLocks are further VMs locked for the duration (move_disk).
	extraLocks []int
	// work runs with s.mu held after the latency elapsed; it returns log
	// lines and an error that fails the task.
	work func() ([]string, *taskError)
	// onFail runs with s.mu held when the task fails (rollback).
	onFail func()
}

func lockTimeoutMsg(vmid int) string {
	return fmt.Sprintf("can't lock file '/var/lock/qemu-server/lock-%d.conf' - got timeout", vmid)
}

// startTask registers a running task and its worker goroutine; it returns
// the UPID. Must be called without s.mu held.
func (s *Server) startTask(c *call, spec taskSpec) string {
	node := c.uri["node"]
	if node == "" {
		node = s.opts.Nodes[0]
	}
	s.mu.Lock()
	s.pidSeq += 7
	now := s.opts.Now()
	t := &task{node: node, typ: spec.typ, id: spec.id, user: c.token.ID, pid: s.pidSeq,
		pstart: 0x00a1b2c3 + s.pidSeq, starttime: now.Unix(), running: true, done: make(chan struct{})}
	t.upid = fmt.Sprintf("UPID:%s:%08X:%08X:%08X:%s:%s:%s:", t.node, t.pid, t.pstart, t.starttime, t.typ, t.id, t.user)
	s.tasks[t.upid] = t
	fault := c.fault
	latency, ok := s.opts.Latency[spec.typ]
	if !ok {
		latency = s.opts.DefaultLatency
	}
	s.mu.Unlock()
	c.upid = t.upid

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(t.done)
		ctx := context.Background()
		var held []int
		release := func() {
			for _, id := range held {
				<-s.flock(id)
			}
		}
		var terr *taskError
		locks := spec.extraLocks
		if spec.vmid > 0 {
			locks = append([]int{spec.vmid}, locks...)
		}
		for _, id := range locks {
			if fault != nil && fault.Kind == FaultLockTimeout {
				if !s.sleep(ctx, min(latency, s.opts.LockTimeout)) {
					terr = failTask("interrupted by server shutdown")
					break
				}
				terr = failTask("%s", lockTimeoutMsg(id))
				break
			}
			if !s.acquire(ctx, id) {
				terr = failTask("%s", lockTimeoutMsg(id))
				break
			}
			held = append(held, id)
		}
		if terr == nil && !s.sleep(ctx, latency) {
			terr = failTask("interrupted by server shutdown")
		}
		var lines []string
		s.mu.Lock()
		if terr == nil && fault != nil && fault.Kind == FaultTaskFailure {
			msg := fault.Message
			if msg == "" {
				msg = "command failed"
			}
			terr = &taskError{msg: msg, log: fault.TaskLog}
		}
		if terr == nil && spec.work != nil {
			lines, terr = spec.work()
		}
		t.log = append(t.log, lines...)
		switch {
		case terr != nil:
			t.log = append(t.log, terr.log...)
			t.log = append(t.log, "TASK ERROR: "+terr.msg)
			t.exit = terr.msg
			if spec.onFail != nil {
				spec.onFail()
			}
		case fault != nil && fault.Kind == FaultTaskWarnings:
			t.log = append(t.log, "WARN: "+orDefault(fault.Message, "emulated warning"))
			t.log = append(t.log, "TASK WARNINGS: 1")
			t.exit = "WARNINGS: 1"
		default:
			t.log = append(t.log, "TASK OK")
			t.exit = "OK"
		}
		t.running = false
		s.mu.Unlock()
		release()
	}()
	return t.upid
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// flock returns the lock channel of a VM (created on demand).
func (s *Server) flock(vmid int) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.flocks[vmid]
	if !ok {
		ch = make(chan struct{}, 1)
		s.flocks[vmid] = ch
	}
	return ch
}

// acquire takes a VM config lock, waiting up to LockTimeout.
func (s *Server) acquire(ctx context.Context, vmid int) bool {
	ch := s.flock(vmid)
	t := time.NewTimer(s.opts.LockTimeout)
	defer t.Stop()
	select {
	case ch <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-s.closed:
		return false
	case <-ctx.Done():
		return false
	}
}

// withVMLock runs fn holding a VM config lock (for synchronous endpoints).
func (s *Server) withVMLock(c *call, vmid int, fn func() *apiError) *apiError {
	if !s.acquire(c.r.Context(), vmid) {
		return err500("%s", lockTimeoutMsg(vmid))
	}
	defer func() { <-s.flock(vmid) }()
	return fn()
}

// GET /nodes/{node}/tasks/{upid}/status
func (s *Server) taskStatus(c *call) (any, *apiError) {
	t, aerr := s.lookupTask(c)
	if aerr != nil {
		return nil, aerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	user, tokenid, _ := strings.Cut(t.user, "!")
	out := map[string]any{
		"upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart, "starttime": t.starttime,
		"type": t.typ, "id": t.id, "user": user, "tokenid": tokenid, "status": "running",
	}
	if !t.running {
		out["status"] = "stopped"
		out["exitstatus"] = t.exit
	}
	return out, nil
}

// GET /nodes/{node}/tasks/{upid}/log
func (s *Server) taskLog(c *call) (any, *apiError) {
	t, aerr := s.lookupTask(c)
	if aerr != nil {
		return nil, aerr
	}
	start, limit := 0, 50
	if v := c.params.Get("start"); v != "" {
		start, _ = strconv.Atoi(v)
	}
	if v := c.params.Get("limit"); v != "" {
		limit, _ = strconv.Atoi(v)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	lines := t.log
	if t.running {
		lines = append([]string{}, t.log...)
	}
	if len(lines) == 0 {
		lines = []string{"no content"}
	}
	out := []map[string]any{}
	for i := start; i < len(lines) && (limit == 0 || len(out) < limit); i++ {
		out = append(out, map[string]any{"n": i + 1, "t": lines[i]})
	}
	return withTotal{data: out, total: len(lines)}, nil
}

func (s *Server) lookupTask(c *call) (*task, *apiError) {
	upid := c.uri["upid"]
	parts := strings.Split(upid, ":")
	if len(parts) != 9 || parts[0] != "UPID" || parts[8] != "" {
		return nil, paramError(map[string]string{"upid": "unable to parse worker upid '" + upid + "'"})
	}
	s.mu.Lock()
	t, ok := s.tasks[upid]
	s.mu.Unlock()
	if !ok {
		return nil, err500("no such task")
	}
	if t.user != c.token.ID {
		if aerr := c.require("/nodes/"+t.node, "Sys.Audit"); aerr != nil {
			return nil, aerr
		}
	}
	return t, nil
}

// GET /nodes/{node}/tasks (newest first; a token sees its own tasks, others need Sys.Audit).
func (s *Server) taskList(c *call) (any, *apiError) {
	node := c.uri["node"]
	audit := c.token.can("/nodes/"+node, "Sys.Audit")
	vmid, typ := c.params.Get("vmid"), c.params.Get("typefilter")
	errorsOnly := c.params.Bool("errors")
	start, limit := 0, 50
	if v := c.params.Get("start"); v != "" {
		start, _ = strconv.Atoi(v)
	}
	if v := c.params.Get("limit"); v != "" {
		limit, _ = strconv.Atoi(v)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []*task
	for _, t := range s.tasks {
		if t.node != node || (t.user != c.token.ID && !audit) {
			continue
		}
		if (vmid != "" && t.id != vmid) || (typ != "" && t.typ != typ) || (errorsOnly && (t.running || t.exit == "OK")) {
			continue
		}
		list = append(list, t)
	}
	sortTasksDesc(list)
	out := []map[string]any{}
	for i := start; i < len(list) && len(out) < limit; i++ {
		t := list[i]
		user, _, _ := strings.Cut(t.user, "!")
		e := map[string]any{"upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart, "starttime": t.starttime,
			"type": t.typ, "id": t.id, "user": user}
		if !t.running {
			e["status"] = t.exit
			e["endtime"] = t.starttime
		}
		out = append(out, e)
	}
	return withTotal{data: out, total: len(list)}, nil
}

func sortTasksDesc(ts []*task) {
	for i := 1; i < len(ts); i++ {
		for j := i; j > 0 && (ts[j].starttime > ts[j-1].starttime || ts[j].starttime == ts[j-1].starttime && ts[j].pid > ts[j-1].pid); j-- {
			ts[j], ts[j-1] = ts[j-1], ts[j]
		}
	}
}
