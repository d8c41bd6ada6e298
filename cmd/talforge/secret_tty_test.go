//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair: what is written to master is typed on the terminal,
// and master reads what the terminal shows, echo included.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()

	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}

	t.Cleanup(func() { master.Close() })

	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}

	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}

	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}

	t.Cleanup(func() { tty.Close() })

	return master, tty
}

// screen collects what the terminal shows.
type screen struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *screen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()

	return s.buf.String()
}

// waitFor waits until the terminal shows text and, when hidden is set, until echo is off.
func waitFor(t *testing.T, s *screen, tty *os.File, text string, hidden bool) {
	t.Helper()

	deadline := time.Now().Add(10 * time.Second)

	for time.Now().Before(deadline) {
		if strings.Contains(s.String(), text) {
			tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
			if err != nil {
				t.Fatal(err)
			}

			if !hidden || tio.Lflag&unix.ECHO == 0 {
				return
			}
		}

		time.Sleep(5 * time.Millisecond)
	}

	t.Fatalf("the terminal never showed %q (with echo off: %v); it shows:\n%s", text, hidden, s.String())
}

// TestSecretSetPromptsWithoutEcho: on a terminal, secret set prompts, and what is typed for a
// secret is not shown.
func TestSecretSetPromptsWithoutEcho(t *testing.T) {
	dir, _ := cliProject(t)
	writeProjectFile(t, "profiles/lab.yaml", secretProfile)
	profilePath := filepath.Join("profiles", "lab.yaml")

	type answer struct {
		prompt, typed string
		hidden        bool
	}

	cases := []struct {
		kind    string
		answers []answer
		file    string
		plain   string
	}{
		{
			kind:    "proxmox",
			answers: []answer{{"PVE API token", "talforge@pve!provision=" + cliPVESecret, true}},
			file:    "secrets/proxmox.sops.yaml",
			plain:   "token: talforge@pve!provision=" + cliPVESecret + "\n",
		},
		{
			kind: "aws-backup",
			answers: []answer{
				{"AWS_ACCESS_KEY_ID: ", "AKIAEXAMPLE", false},
				{"AWS_SECRET_ACCESS_KEY (not echoed): ", cliAWSSecret, true},
				{"AWS_ENDPOINTS (Enter for AWS S3 itself): ", "https://s3.example.net", false},
			},
			file:  "secrets/aws-backup.sops.yaml",
			plain: "AWS_ACCESS_KEY_ID: AKIAEXAMPLE\nAWS_ENDPOINTS: https://s3.example.net\nAWS_SECRET_ACCESS_KEY: " + cliAWSSecret + "\n",
		},
	}

	for _, tc := range cases {
		t.Run(tc.kind, func(t *testing.T) {
			master, tty := openPTY(t)

			s := &screen{}

			go func() {
				b := make([]byte, 4096)

				for {
					n, err := master.Read(b)
					s.mu.Lock()
					s.buf.Write(b[:n])
					s.mu.Unlock()

					if err != nil {
						return
					}
				}
			}()

			var out bytes.Buffer

			done := make(chan int, 1)

			go func() {
				done <- run(t.Context(), []string{"secret", "set", tc.kind, "-p", profilePath}, streams{in: tty, out: &out, errOut: tty})
			}()

			for _, a := range tc.answers {
				waitFor(t, s, tty, a.prompt, a.hidden)

				if _, err := master.WriteString(a.typed + "\n"); err != nil {
					t.Fatal(err)
				}
			}

			select {
			case code := <-done:
				if code != exitOK {
					t.Fatalf("exit %d\nstdout:\n%s\nterminal:\n%s", code, out.String(), s.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("secret set did not finish; terminal:\n%s", s.String())
			}

			for _, a := range tc.answers {
				if shown := strings.Contains(s.String(), a.typed); shown == a.hidden {
					t.Errorf("%q shown on the terminal: %v, want %v; terminal:\n%s", a.typed, shown, !a.hidden, s.String())
				}
			}

			assertEncrypted(t, filepath.Join(dir, tc.file), tc.plain)
		})
	}
}
