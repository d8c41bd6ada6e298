package proxmox

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/talforge/talforge/internal/testenv/pvesim"
)

// TestFaultInjectedRunsConverge injects one kind of fault per case; re-running provision
// (as a user would) must converge with exactly one VM per node, no duplicates and no orphan
// volumes. Transient faults are absorbed within a single run.
func TestFaultInjectedRunsConverge(t *testing.T) {
	cases := []struct {
		name  string
		fault pvesim.Fault
		// runs is how many provision runs may be needed (1 = absorbed by retries).
		runs int
		// wantFirst checks the first run's error (nil = must succeed).
		wantFirst func(t *testing.T, err error)
	}{
		{name: "503 on create", runs: 1,
			fault: pvesim.Fault{Kind: pvesim.FaultHTTPError, Method: "POST", Path: `/nodes/[^/]+/qemu`, Nth: 2, Status: 503, Message: "Service Unavailable"}},
		{name: "create applied but answer lost", runs: 1,
			fault: pvesim.Fault{Kind: pvesim.FaultDropAfter, Method: "POST", Path: `/nodes/[^/]+/qemu`, Nth: 1}},
		{name: "connection dropped before create", runs: 1,
			fault: pvesim.Fault{Kind: pvesim.FaultDropBefore, Method: "POST", Path: `/nodes/[^/]+/qemu`, Nth: 2}},
		{name: "config lock timeout in create task", runs: 1,
			fault: pvesim.Fault{Kind: pvesim.FaultLockTimeout, Method: "POST", Path: `/nodes/[^/]+/qemu`, Nth: 1, Count: 2}},
		{name: "start answer lost", runs: 1,
			fault: pvesim.Fault{Kind: pvesim.FaultDropAfter, Method: "POST", Path: `/nodes/[^/]+/qemu/\d+/status/start`, Nth: 1}},
		{name: "lock timeout on start", runs: 1,
			fault: pvesim.Fault{Kind: pvesim.FaultLockTimeout, Method: "POST", Path: `/nodes/[^/]+/qemu/\d+/status/start`, Nth: 1}},
		{name: "502 proxy error on start", runs: 1,
			fault: pvesim.Fault{Kind: pvesim.FaultHTTPError, Method: "POST", Path: `/nodes/[^/]+/qemu/\d+/status/start`, Nth: 2, Status: 502, Message: "Bad Gateway"}},
		{name: "500 on resources listing", runs: 1,
			fault: pvesim.Fault{Kind: pvesim.FaultHTTPError, Method: "GET", Path: `/cluster/resources`, Nth: 3, Count: 2, Status: 500, Message: "Internal Server Error"}},
		{name: "dropped task status poll", runs: 1,
			fault: pvesim.Fault{Kind: pvesim.FaultDropBefore, Method: "GET", Path: `/nodes/[^/]+/tasks/[^/]+/status`, Nth: 2}},
		{name: "download task fails", runs: 2,
			fault: pvesim.Fault{Kind: pvesim.FaultTaskFailure, Path: `/nodes/[^/]+/storage/local/download-url`, Message: "download failed: 404 Not Found",
				TaskLog: []string{"--2026-11-25-- https://factory.talos.dev/image/...", "ERROR 404: Not Found."}},
			wantFirst: func(t *testing.T, err error) {
				var te *TaskError
				if !errors.As(err, &te) || te.ExitStatus != "download failed: 404 Not Found" {
					t.Fatalf("first run error %v, want the download TaskError", err)
				}
			}},
		{name: "create task fails with log tail", runs: 2,
			fault: pvesim.Fault{Kind: pvesim.FaultTaskFailure, Method: "POST", Path: `/nodes/[^/]+/qemu`, Nth: 1,
				Message: "lvcreate 'pve/vm-151-disk-0' error:   Volume group \"pve\" has insufficient free space",
				TaskLog: []string{"  Insufficient free space: 10240 extents needed, but only 512 available"}},
			wantFirst: func(t *testing.T, err error) {
				var te *TaskError
				if !errors.As(err, &te) {
					t.Fatalf("first run error %v, want a TaskError", err)
				}

				msg := err.Error()
				if !strings.Contains(msg, "insufficient free space") || !strings.Contains(msg, "Insufficient free space: 10240 extents needed") ||
					!strings.Contains(msg, "TASK ERROR:") {
					t.Errorf("error lacks the task log tail:\n%s", msg)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "tazlab")
			ctx := context.Background()
			h := e.srv.InjectFault(tc.fault)

			var err error
			for run := 1; run <= tc.runs; run++ {
				_, _, err = e.provision(ctx, Options{})
				if run == 1 && tc.wantFirst != nil {
					tc.wantFirst(t, err)
				}

				if err == nil {
					break
				}
			}

			if err != nil {
				t.Fatalf("not converged after %d run(s): %v\nevents:\n%s\nrequests:\n%s", tc.runs, err, e.events, summary(e.srv))
			}

			if h.Fired() == 0 {
				t.Fatalf("fault never fired")
			}

			e.assertConverged()

			if p := e.plan(ctx); p.HasChanges() {
				t.Errorf("plan after convergence has changes")
			}
		})
	}
}

// TestDestroyWithFaults: a lost answer or lock contention during destroy still ends with
// every owned VM gone and nothing else touched.
func TestDestroyWithFaults(t *testing.T) {
	faults := []pvesim.Fault{
		{Kind: pvesim.FaultDropAfter, Method: "POST", Path: `/nodes/[^/]+/qemu/\d+/status/stop`},
		{Kind: pvesim.FaultLockTimeout, Method: "POST", Path: `/nodes/[^/]+/qemu/\d+/move_disk`},
		{Kind: pvesim.FaultHTTPError, Method: "DELETE", Path: `/nodes/[^/]+/qemu/\d+`, Status: 503, Message: "Service Unavailable"},
	}
	e := newEnv(t, "tazlab")
	ctx := context.Background()

	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatal(err)
	}

	for _, f := range faults {
		e.srv.InjectFault(f)
	}

	dp, err := PlanDestroy(ctx, e.api, "tazlab", DestroyOptions{KeepDataDisks: true})
	if err != nil {
		t.Fatal(err)
	}

	if err := e.executor(Options{}).Destroy(ctx, dp); err != nil {
		t.Fatalf("destroy: %v\nevents:\n%s\n%s", err, e.events, summary(e.srv))
	}

	for name, vms := range e.owned() {
		if !strings.HasSuffix(name, "-parked") {
			t.Errorf("VM %s survived (%d)", name, len(vms))
		}
	}
}
