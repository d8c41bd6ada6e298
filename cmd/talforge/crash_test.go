package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"gopkg.in/yaml.v3"

	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/gitops"
	"github.com/talforge/talforge/pkg/runlock"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// TestCLIHelperProcess is not a test: started by subprocess() with TALFORGE_CLI_HELPER=1, the
// test binary runs the CLI as talforge's main does (arguments after "--") and exits, so tests
// can kill a real talforge process at any point without building the binary.
func TestCLIHelperProcess(t *testing.T) {
	if os.Getenv("TALFORGE_CLI_HELPER") != "1" {
		t.Skip("only a helper for tests that run talforge as a subprocess")
	}

	args := os.Args
	for len(args) > 0 && args[0] != "--" {
		args = args[1:]
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, args[1:], streams{in: os.Stdin, out: os.Stdout, errOut: os.Stderr})

	stop()
	os.Exit(code)
}

// subprocess returns talforge with args as a process of its own, in dir, with the test's
// environment. prefix, when given, runs it under a shell command line ("$0" "$@" is talforge).
func subprocess(dir string, prefix string, args ...string) *exec.Cmd {
	argv := append([]string{os.Args[0], "-test.run=^TestCLIHelperProcess$", "--"}, args...)

	var cmd *exec.Cmd
	if prefix == "" {
		cmd = exec.Command(argv[0], argv[1:]...)
	} else {
		cmd = exec.Command("sh", append([]string{"-c", prefix + ` && exec "$0" "$@"`}, argv...)...)
	}

	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TALFORGE_CLI_HELPER=1")

	return cmd
}

// crashProfile is a cluster of eight nodes: enough files that a kill lands amid the writes.
func crashProfile(name, nameserver string, workers int) string {
	var b strings.Builder

	fmt.Fprintf(&b, `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: %s}
talos: {version: v1.14.1}
network: {cidr: 192.168.1.0/24, gateway: 192.168.1.1, nameservers: [%s]}
nodes:
  - {name: cp-1, role: controlplane, ip: 192.168.1.51}
`, name, nameserver)

	for i := 1; i <= workers; i++ {
		fmt.Fprintf(&b, "  - {name: w-%d, role: worker, ip: 192.168.1.%d}\n", i, 60+i)
	}

	return b.String()
}

// gitRepo makes dir a Git repository with an identity for commits.
func gitRepo(t *testing.T, dir string) {
	t.Helper()

	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}

	for _, kv := range [][2]string{{"GIT_AUTHOR_NAME", "t"}, {"GIT_AUTHOR_EMAIL", "t@e.x"}, {"GIT_COMMITTER_NAME", "t"}, {"GIT_COMMITTER_EMAIL", "t@e.x"}} {
		t.Setenv(kv[0], kv[1])
	}

	if out, err := exec.Command("git", "-C", dir, "init", "-q").CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
}

func gitOut(t *testing.T, dir string, args ...string) []string {
	t.Helper()

	out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).Output()
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}

	return strings.FieldsFunc(string(out), func(r rune) bool { return r == '\n' })
}

func sha(data []byte) string {
	sum := sha256.Sum256(data)

	return "sha256:" + hex.EncodeToString(sum[:])
}

// readLockfile parses out's lockfile.
func readLockfile(t *testing.T, out string) *generate.Lock {
	t.Helper()

	data, err := os.ReadFile(filepath.Join(out, generate.LockFile))
	if err != nil {
		t.Fatal(err)
	}

	var l generate.Lock
	if err := yaml.Unmarshal(data, &l); err != nil {
		t.Fatal(err)
	}

	return &l
}

// pendingCommit reports whether a staging directory holds a complete journal: the run had
// committed its next generation and the next run completes it.
func pendingCommit(out string) bool {
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), gitops.StagingPrefix) {
			continue
		}

		data, err := os.ReadFile(filepath.Join(out, e.Name(), ".talforge-commit.json"))

		var j struct{ Complete bool }
		if err == nil && json.Unmarshal(data, &j) == nil && j.Complete {
			return true
		}
	}

	return false
}

// wholeSet checks that every file out's lockfile lists holds the bytes it records.
func wholeSet(t *testing.T, out string) *generate.Lock {
	t.Helper()

	l := readLockfile(t, out)
	for p, want := range l.Files {
		data, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(p)))
		if err != nil || sha(data) != want {
			t.Errorf("%s does not hold what %s records (%v)", p, generate.LockFile, err)
		}
	}

	return l
}

// checkGeneration checks that out holds exactly one whole generation of profile (rendered
// with out's secrets bundle): the lockfile's files, each as recorded; node configs that are
// the profile's; nothing else but the given user files; no staging, no temporary files.
func checkGeneration(t *testing.T, root, out, profile string, user ...string) *generate.Lock {
	t.Helper()

	l := wholeSet(t, out)

	want := slices.Collect(func(yield func(string) bool) {
		for p := range l.Files {
			yield(p)
		}
	})
	want = append(want, generate.LockFile, "secrets.sops.yaml")
	want = append(want, user...)
	slices.Sort(want)

	var got []string

	filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(out, p)
			got = append(got, filepath.ToSlash(rel))
		}

		return err
	})
	slices.Sort(got)

	if !slices.Equal(got, want) {
		t.Errorf("%s holds\n %v\nwant\n %v", out, got, want)
	}

	// A fresh render of the same profile with the same bundle, elsewhere.
	ref := filepath.Join(t.TempDir(), "ref")
	if err := os.MkdirAll(ref, 0o755); err != nil {
		t.Fatal(err)
	}

	bundle, _ := os.ReadFile(filepath.Join(out, "secrets.sops.yaml"))
	if err := os.WriteFile(filepath.Join(ref, "secrets.sops.yaml"), bundle, 0o644); err != nil {
		t.Fatal(err)
	}

	if r := talforge(t, "generate", "-p", profile, "--out", ref); r.code != exitOK {
		t.Fatalf("reference generate: %v", r)
	}

	refLock := readLockfile(t, ref)
	if !slices.Equal(l.Nodes, refLock.Nodes) || l.ProfileDigest != refLock.ProfileDigest {
		t.Errorf("the lockfile's nodes or profile are not %s's:\n%+v\n%+v", profile, l.Nodes, refLock.Nodes)
	}

	for _, plain := range []string{"nodes.redacted.yaml", "schematic.yaml", ".gitignore"} {
		a, _ := os.ReadFile(filepath.Join(out, plain))
		b, _ := os.ReadFile(filepath.Join(ref, plain))

		if !bytes.Equal(a, b) {
			t.Errorf("%s is not what %s renders", plain, profile)
		}
	}

	for _, n := range refLock.Nodes {
		a, err := sopsfile.DecryptFile(filepath.Join(out, generate.NodeConfigFile(n.Name)))
		if err != nil {
			t.Fatal(err)
		}

		if sha(a) != n.ConfigDigest {
			t.Errorf("node %s's config is not what %s renders", n.Name, profile)
		}
	}

	return l
}

// TestGenerateKilledAtRandomPoints kills `talforge generate` (a real process, SIGKILL) at
// random points while it writes the next generation, ~20 times, then runs it normally with
// --commit: every kill leaves either a whole generation or a committed one the next run
// completes; the last run leaves exactly the profile's generation, no staging leftovers, the
// user's own files; and the commit holds the generation's files and nothing stray.
//
// Before the fix a kill left .<name>.tmp-* files beside the targets (and `generate --commit`
// committed them), a kill amid the renames left new node files under the old lockfile, and
// prune deleted nodes/notes.yaml.
func TestGenerateKilledAtRandomPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("kills real processes for up to a minute")
	}

	dir, _ := cliProject(t)
	gitRepo(t, dir)

	out := filepath.Join(dir, "clusters", "lab")
	prof := filepath.Join("profiles", "lab.yaml")
	writeProjectFile(t, prof, crashProfile("lab", "192.168.1.1", 7))

	if r := talforge(t, "generate", "-p", prof, "--commit"); r.code != exitOK {
		t.Fatalf("first generate: %v", r)
	}

	writeProjectFile(t, filepath.Join(out, "nodes", "notes.yaml"), "# the user's notes, not talforge's\n")
	writeProjectFile(t, filepath.Join(out, "nodes", "README.md"), "mine\n")

	// How long an uninterrupted run takes: the kills are spread over it.
	writeProjectFile(t, prof, crashProfile("lab", "10.0.0.1", 7))

	began := time.Now()
	if b, err := subprocess(dir, "", "generate", "-p", prof).CombinedOutput(); err != nil {
		t.Fatalf("generate: %v\n%s", err, b)
	}

	took := time.Since(began)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))

	t.Logf("an uninterrupted generate takes %v; seed %d", took, seed)

	budget := time.Now().Add(60 * time.Second)
	kills, pending, staged := 0, 0, 0

	for i := 0; i < 20 && time.Now().Before(budget); i++ {
		// Every round changes every node; some rounds also drop or add a worker.
		writeProjectFile(t, prof, crashProfile("lab", fmt.Sprintf("10.0.%d.%d", i%2, i+2), 5+i%3))

		cmd := subprocess(dir, "", "generate", "-p", prof)

		var stderr bytes.Buffer
		cmd.Stderr = &stderr

		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}

		// Half the kills anywhere in the run, half late in it, where the files are written.
		delay := time.Duration(rng.Float64() * 1.1 * float64(took))
		if i%2 == 1 {
			delay = time.Duration((0.6 + 0.5*rng.Float64()) * float64(took))
		}

		time.Sleep(delay)

		if cmd.Process.Signal(syscall.SIGKILL) == nil {
			kills++
		}

		err := cmd.Wait()

		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}

		if exit != nil && exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: generate failed by itself: %v\n%s", i, err, stderr.String())
		}

		// Whatever the moment: the set in place is whole, or committed and to be completed.
		if pendingCommit(out) {
			pending++
		} else {
			wholeSet(t, out)
		}

		if entries, _ := filepath.Glob(filepath.Join(out, gitops.StagingPrefix+"*")); len(entries) > 0 {
			staged++
		}

		if t.Failed() {
			t.Fatalf("round %d (killed after %v) left a torn set", i, delay)
		}
	}

	t.Logf("%d kills: %d left a staging directory, %d of them a committed one to complete", kills, staged, pending)

	r := talforge(t, "generate", "-p", prof, "--commit")
	if r.code != exitOK {
		t.Fatalf("generate after the kills: %v", r)
	}

	l := checkGeneration(t, dir, out, prof, "nodes/README.md", "nodes/notes.yaml")

	// The commit: the generation's files, nothing else; nothing stray ever committed.
	tracked := gitOut(t, dir, "ls-files", "clusters/lab")

	want := []string{"clusters/lab/" + generate.LockFile, "clusters/lab/secrets.sops.yaml"}
	for p := range l.Files {
		want = append(want, "clusters/lab/"+p)
	}

	slices.Sort(want)

	if !slices.Equal(tracked, want) {
		t.Errorf("Git holds\n %v\nwant\n %v", tracked, want)
	}

	for _, p := range gitOut(t, dir, "log", "--all", "--name-only", "--format=") {
		if strings.Contains(p, ".tmp-") || strings.Contains(p, gitops.StagingPrefix) || strings.Contains(p, runlock.FileName) || strings.HasSuffix(p, "notes.yaml") {
			t.Errorf("committed %s", p)
		}
	}

	if st := gitOut(t, dir, "status", "--porcelain", "--", "clusters/lab"); len(st) != 0 {
		// The user's files are untracked and the rest committed; .gitignore hides nothing of ours.
		for _, line := range st {
			if !strings.HasPrefix(line, "?? clusters/lab/nodes/") {
				t.Errorf("after generate --commit git status shows %q", line)
			}
		}
	}
}

// TestGenerateConcurrentRunsLock runs two `talforge generate` processes on one cluster
// directory at once (two profiles of the same cluster), a few times: each either succeeds or
// fails with the lock message, and the directory always holds exactly the generation of one
// that succeeded — never a mix, never one run's files while another reports success. Before
// the fix both ran and the directory could hold run A's output while run B reported success.
func TestGenerateConcurrentRunsLock(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}

	dir, _ := cliProject(t)
	out := filepath.Join(dir, "clusters", "lab")

	profiles := []string{filepath.Join("profiles", "a.yaml"), filepath.Join("profiles", "b.yaml")}

	if r := talforge(t, "init", "lab"); r.code != exitOK {
		t.Fatalf("init: %v", r)
	}

	locked := 0

	for round := range 4 {
		for i, p := range profiles {
			writeProjectFile(t, p, crashProfile("lab", fmt.Sprintf("10.%d.%d.1", round, i), 3+i))
		}

		var (
			wg      sync.WaitGroup
			outputs [2]string
			codes   [2]int
		)

		for i, p := range profiles {
			wg.Add(1)

			go func() {
				defer wg.Done()

				b, err := subprocess(dir, "", "generate", "-p", p).CombinedOutput()
				outputs[i] = string(b)

				var exit *exec.ExitError
				if errors.As(err, &exit) {
					codes[i] = exit.ExitCode()
				} else if err != nil {
					codes[i] = -1
				}
			}()
		}

		wg.Wait()

		var won []string

		for i := range profiles {
			switch {
			case codes[i] == exitOK:
				won = append(won, profiles[i])
			case codes[i] == exitFailure && strings.Contains(outputs[i], "another talforge run holds the lock on "+filepath.Join("clusters", "lab")+" (pid "):
				locked++
			default:
				t.Fatalf("round %d: %s: exit %d\n%s", round, profiles[i], codes[i], outputs[i])
			}
		}

		if len(won) == 0 {
			t.Fatalf("round %d: no run succeeded\n%s\n%s", round, outputs[0], outputs[1])
		}

		l := readLockfile(t, out)

		if !slices.Contains(won, filepath.ToSlash(l.Profile)) {
			t.Fatalf("round %d: the directory holds %s's output, but %v reported success", round, l.Profile, won)
		}

		checkGeneration(t, dir, out, l.Profile)

		if t.Failed() {
			t.Fatalf("round %d: %v succeeded, the directory is not one whole generation", round, won)
		}
	}

	t.Logf("%d of 8 runs met the other's lock", locked)
}

// TestGenerateLockMessage: while another run holds the cluster's lock, generate (and every
// command that changes the cluster) fails at once, exit 1, naming the directory, the holder's
// pid and since when, and writes nothing.
func TestGenerateLockMessage(t *testing.T) {
	dir, _ := cliProject(t)
	writeProjectFile(t, "profiles/lab.yaml", cliProfile)

	if r := talforge(t, "generate", "-p", "profiles/lab.yaml"); r.code != exitOK {
		t.Fatalf("generate: %v", r)
	}

	_, lk, err := runlock.Acquire(context.Background(), filepath.Join(dir, "clusters", "lab"))
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Release()

	backdate(t, filepath.Join(dir, "clusters"))
	before := stamps(t, filepath.Join(dir, "clusters"))

	writeProjectFile(t, "profiles/lab.yaml", strings.Replace(cliProfile, "nameservers: [192.168.1.1]", "nameservers: [9.9.9.9]", 1))

	for _, args := range [][]string{
		{"generate", "-p", "profiles/lab.yaml"},
		{"destroy", "-p", "profiles/lab.yaml", "--yes"},
		{"provision", "-p", "profiles/lab.yaml"},
	} {
		r := talforge(t, args...)

		want := fmt.Sprintf("another talforge run holds the lock on %s (pid %d, since ", filepath.Join("clusters", "lab"), os.Getpid())
		if r.code != exitFailure || !strings.Contains(r.errOut, want) {
			t.Errorf("%s under another run's lock:\n%v\nwant exit 1 and %q", args[0], r, want)
		}
	}

	after := stamps(t, filepath.Join(dir, "clusters"))
	delete(before, "lab/"+runlock.FileName)
	delete(after, "lab/"+runlock.FileName)
	assertSameStamps(t, "a run refused by the lock", before, after)
}

// TestInitIdentityCompleteOrAbsent: an age identity whose write is cut short (here: the
// process may write no byte, RLIMIT_FSIZE=0, so the write fails exactly where a crash would
// cut it) leaves no identity file at all, not an empty one that every later run trips over;
// the next init creates a complete one. Before the fix keys.txt was created first and written
// after, without fsync: the cut-short run left it empty.
func TestInitIdentityCompleteOrAbsent(t *testing.T) {
	dir, keyFile := cliProject(t)

	b, err := subprocess(dir, "ulimit -f 0", "init", "lab").CombinedOutput()
	if err == nil {
		t.Fatalf("init with no byte to write succeeded:\n%s", b)
	}

	if data, err := os.ReadFile(keyFile); err == nil {
		if _, perr := age.ParseIdentities(bytes.NewReader(data)); perr != nil {
			t.Fatalf("a cut-short init left an incomplete identity file (%d bytes): %v", len(data), perr)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}

	if r := talforge(t, "init", "lab"); r.code != exitOK {
		t.Fatalf("init after the cut-short one: %v", r)
	}

	data, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}

	if ids, err := age.ParseIdentities(bytes.NewReader(data)); err != nil || len(ids) != 1 {
		t.Fatalf("identity file after init: %v", err)
	}

	if st, _ := os.Stat(keyFile); st.Mode().Perm() != 0o600 {
		t.Errorf("identity mode %v", st.Mode().Perm())
	}

	// An existing identity is never replaced.
	if r := talforge(t, "init", "lab"); r.code != exitOK {
		t.Fatalf("second init: %v", r)
	}

	if again, _ := os.ReadFile(keyFile); !bytes.Equal(again, data) {
		t.Error("a second init replaced the identity")
	}
}
