//go:build unix

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// envSignalChild carries the CLI arguments to TestSignalChild, one per line.
const envSignalChild = "TALFORGE_SIGNAL_CHILD"

// TestSignalChild is the CLI process of TestSignal: main's signal handling, then run.
func TestSignalChild(t *testing.T) {
	args, ok := os.LookupEnv(envSignalChild)
	if !ok {
		t.Skip("runs only as the child of TestSignal")
	}

	os.Exit(runWithSignals(strings.Split(args, "\n"), streams{in: os.Stdin, out: os.Stdout, errOut: os.Stderr}))
}

// heavyProfile is a valid cluster that takes seconds of CPU to render: thousands of nodes, each
// with its own install disk and so its own base config.
func heavyProfile(nodes int) string {
	var b strings.Builder

	b.WriteString("apiVersion: talforge.dev/v1alpha1\nkind: Cluster\nmetadata: {name: lab}\ntalos: {version: v1.14.1}\nnetwork: {cidr: 10.0.0.0/16, gateway: 10.0.0.1}\nnodes:\n")

	for i := range nodes {
		role := "worker"
		if i == 0 {
			role = "controlplane"
		}

		fmt.Fprintf(&b, "  - {name: n-%d, role: %s, ip: 10.0.%d.%d, installDisk: /dev/disk%d}\n", i, role, 1+i/200, 2+i%200, i)
	}

	return b.String()
}

// TestSignal runs the CLI as a process on a CPU-heavy profile, sends SIGTERM in the middle of
// its work and checks that it stops within a second, exits non-zero, says why, and leaves the
// project exactly as it was. The delays land in different stages: loading the profile,
// generating base configs, rendering nodes. TALFORGE_SIGNAL_BINARY runs a built talforge
// instead of this test binary (to check a release, or the code before a fix).
func TestSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("seconds of CPU per case")
	}

	tests := []struct {
		name  string
		args  []string
		delay time.Duration
		// setup runs before the heavy profile is written: generate needs a secrets bundle
		// already, so that the signal lands in rendering, not in key generation.
		setup func(t *testing.T)
	}{
		{name: "validate early", args: []string{"validate", "-p", "profiles/lab.yaml"}, delay: 500 * time.Millisecond},
		{name: "validate mid-way", args: []string{"validate", "-p", "profiles/lab.yaml"}, delay: 1500 * time.Millisecond},
		{name: "validate late", args: []string{"validate", "-p", "profiles/lab.yaml"}, delay: 3 * time.Second},
		{
			name: "generate", args: []string{"generate", "-p", "profiles/lab.yaml"}, delay: 1500 * time.Millisecond,
			setup: func(t *testing.T) {
				writeProjectFile(t, "profiles/lab.yaml", heavyProfile(1))

				if r := talforge(t, "generate", "-p", "profiles/lab.yaml"); r.code != exitOK {
					t.Fatalf("first generate: %v", r)
				}
			},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _ := cliProject(t)

			if tt.setup != nil {
				tt.setup(t)
			}

			writeProjectFile(t, "profiles/lab.yaml", heavyProfile(8000))
			backdate(t, dir)

			before := stamps(t, dir)

			cmd := exec.Command(os.Args[0], "-test.run=^TestSignalChild$")
			if bin := os.Getenv("TALFORGE_SIGNAL_BINARY"); bin != "" {
				cmd = exec.Command(bin, tt.args...)
			}

			cmd.Env = append(os.Environ(), envSignalChild+"="+strings.Join(tt.args, "\n"))
			cmd.Dir = dir

			var stdout, stderr bytes.Buffer

			cmd.Stdout, cmd.Stderr = &stdout, &stderr

			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}

			exited := make(chan error, 1)

			go func() { exited <- cmd.Wait() }()

			select {
			case err := <-exited:
				t.Fatalf("%v finished before the signal (%v): the profile is not heavy enough\n%s%s", tt.args, err, stdout.String(), stderr.String())
			case <-time.After(tt.delay):
			}

			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}

			signalled := time.Now()

			var err error

			select {
			case err = <-exited:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
				t.Fatalf("%v still running 30 s after SIGTERM: killed", tt.args)
			}

			took := time.Since(signalled)
			t.Logf("%v stopped %v after SIGTERM: %s", tt.args, took, strings.TrimSpace(stderr.String()))

			if took > time.Second {
				t.Errorf("%v took %v to stop after SIGTERM, want at most 1 s", tt.args, took)
			}

			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)

			switch {
			case ws.Signaled() && ws.Signal() == syscall.SIGTERM:
				// The signal came before main installed its handler: the default action ended
				// the process, which is as good, as nothing had started.
				t.Logf("%v ended by SIGTERM's default action, before its handler was installed", tt.args)
			case err == nil || cmd.ProcessState.ExitCode() <= 0:
				t.Errorf("%v exited with %v after SIGTERM, want a non-zero exit code", tt.args, err)
			case !strings.Contains(stderr.String(), "stopped: terminated signal received"):
				t.Errorf("%v does not say it stopped on the signal:\n%s", tt.args, stderr.String())
			}

			assertSameStamps(t, fmt.Sprintf("%v interrupted by SIGTERM", tt.args), before, stamps(t, dir))

			if _, err := os.Stat(filepath.Join(dir, "clusters", "lab", "nodes", "n-1.yaml.enc")); err == nil {
				t.Errorf("%v wrote a node of the heavy profile", tt.args)
			}
		})
	}
}
