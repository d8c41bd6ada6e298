package kubeenv

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/talforge/talforge/internal/testenv/testproc"
)

func TestPKIChainsAndNames(t *testing.T) {
	p, err := newPKI(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.caPEM) {
		t.Fatal("CA PEM not parseable")
	}
	parse := func(b []byte) *x509.Certificate {
		blk, _ := pem.Decode(b)
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	server := parse(p.serverCertPEM)
	if _, err := server.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("serving cert does not verify for 127.0.0.1: %v", err)
	}
	admin := parse(p.adminCertPEM)
	if _, err := admin.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin cert does not verify as a client cert: %v", err)
	}
	if got := admin.Subject.Organization; len(got) != 1 || got[0] != "system:masters" {
		t.Errorf("admin organisation = %v, want [system:masters]", got)
	}
}

func TestFindAssets(t *testing.T) {
	empty := t.TempDir()
	full := t.TempDir()
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if err := os.WriteFile(filepath.Join(full, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	noExec := t.TempDir()
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if err := os.WriteFile(filepath.Join(noExec, b), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, dir string
		missing   bool
	}{
		{"empty dir", empty, true},
		{"not executable", noExec, true},
		{"both present", full, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvAssets, tc.dir)
			dir, err := FindAssets()
			if tc.missing {
				if !errors.Is(err, ErrAssetsMissing) {
					t.Fatalf("err = %v, want ErrAssetsMissing", err)
				}
				if !strings.Contains(err.Error(), "scripts/kube-testenv.sh build") {
					t.Errorf("error does not say how to build the binaries: %v", err)
				}
				return
			}
			if err != nil || dir != tc.dir {
				t.Fatalf("FindAssets() = %q, %v; want %q", dir, err, tc.dir)
			}
		})
	}
}

func TestDefaultAssetsDirMatchesScript(t *testing.T) {
	t.Setenv(EnvCache, "/x/cache")
	got, err := DefaultAssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	if want := "/x/cache/1.37.2-etcd3.7.3"; got != want {
		t.Errorf("DefaultAssetsDir() = %q, want %q", got, want)
	}
	script, err := os.ReadFile("../../../scripts/kube-testenv.sh")
	if err != nil {
		t.Skipf("script not found: %v", err)
	}
	for _, want := range []string{"KUBE_VERSION=${KUBE_VERSION:-" + KubeVersion + "}", "ETCD_VERSION=${KUBE_TESTENV_ETCD_VERSION:-" + EtcdVersion + "}", `BIN=$ROOT/$KUBE_VERSION-etcd$ETCD_VERSION`} {
		if !strings.Contains(string(script), want) {
			t.Errorf("scripts/kube-testenv.sh lacks %q: the Go launcher and the script disagree on the assets directory", want)
		}
	}
}

func TestRealControlPlane(t *testing.T) {
	cp := Start(t)
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	// Helm refuses charts with a kubeVersion constraint on an unstamped v0.0.0-master build.
	if v.GitVersion != "v"+KubeVersion {
		t.Errorf("server version %q, want v%s (version stamping)", v.GitVersion, KubeVersion)
	}
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubeenv-test"}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Pods are admitted without a default ServiceAccount (the admission plugin is off).
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "kubeenv-test"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := cs.CoreV1().Pods("kubeenv-test").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Errorf("create pod: %v", err)
	}
	// The kubeconfig bytes are self-contained and RBAC is enforced for other users.
	cfg, err := clientcmd.RESTConfigFromKubeConfig(cp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Impersonate.UserName = "nobody"
	nobody := kubernetes.NewForConfigOrDie(cfg)
	_, err = nobody.CoreV1().Secrets("kubeenv-test").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("list secrets as nobody: err = %v, want Forbidden", err)
	}
}

// TestStopLeavesNothing: after Stop no process, no run directory, no etcd data remain.
func TestStopLeavesNothing(t *testing.T) {
	if _, err := FindAssets(); err != nil {
		skipOrFail(t, err)
	}
	cp, err := Launch(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	pids := []int{cp.etcd.Pid(), cp.api.Pid()}
	paths := []string{cp.runDir, cp.etcdData}
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := cp.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	for _, pid := range pids {
		if testproc.Alive(pid) {
			t.Errorf("pid %d still alive after Stop", pid)
		}
	}
	for _, p := range paths {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still exists after Stop (err %v)", p, err)
		}
	}
}

const crashHelperEnv = "KUBEENV_CRASH_HELPER"

// TestCrashedTestBinaryLeaksNoProcess runs a child test binary that starts a control
// plane, prints the pids and then dies without calling Stop (exit or panic). The kernel's
// parent-death signal must take etcd and kube-apiserver down with it.
func TestCrashedTestBinaryLeaksNoProcess(t *testing.T) {
	if os.Getenv(crashHelperEnv) != "" {
		crashHelper()
		return
	}
	if _, err := FindAssets(); err != nil {
		skipOrFail(t, err)
	}
	for _, mode := range []string{"exit", "panic"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashedTestBinaryLeaksNoProcess$", "-test.v")
			cmd.Env = append(os.Environ(), crashHelperEnv+"="+mode)
			out, _ := cmd.CombinedOutput()
			var pids []int
			sc := bufio.NewScanner(strings.NewReader(string(out)))
			for sc.Scan() {
				if rest, ok := strings.CutPrefix(sc.Text(), "PIDS "); ok {
					for _, f := range strings.Fields(rest) {
						n, _ := strconv.Atoi(f)
						pids = append(pids, n)
					}
				}
			}
			if len(pids) != 2 {
				t.Fatalf("helper did not report two pids; output:\n%s", out)
			}
			deadline := time.Now().Add(10 * time.Second)
			for _, pid := range pids {
				for testproc.Alive(pid) && time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond)
				}
				if testproc.Alive(pid) {
					t.Errorf("pid %d outlived the crashed test binary", pid)
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			// The crashed binary's etcd data on /dev/shm is removed by the next launch.
			stale, _ := filepath.Glob(fmt.Sprintf("/dev/shm/%s%d-*", etcdDirPrefix, cmd.Process.Pid))
			removeStaleEtcdDirs()
			for _, d := range stale {
				if _, err := os.Stat(d); !os.IsNotExist(err) {
					t.Errorf("stale etcd data %s not removed", d)
				}
			}
		})
	}
}

func crashHelper() {
	cp, err := Launch(context.Background(), Options{})
	if err != nil {
		fmt.Println("launch:", err)
		os.Exit(3)
	}
	fmt.Printf("PIDS %d %d\n", cp.etcd.Pid(), cp.api.Pid())
	if os.Getenv(crashHelperEnv) == "panic" {
		panic("simulated test panic")
	}
	os.Exit(1)
}

// Tests elsewhere point HOME at a temporary directory; the cache is still found through
// the user database.
func TestFindAssetsWithTemporaryHome(t *testing.T) {
	t.Setenv(EnvAssets, "")
	t.Setenv(EnvCache, "")
	real, err := FindAssets()
	if err != nil {
		skipOrFail(t, err)
	}
	home := os.Getenv("HOME")
	if u, uerr := user.Current(); uerr != nil || u.HomeDir != home {
		// The fallback is the account's home: a cache under another HOME (a CI runner's or a
		// container's) cannot be found once HOME changes again, and need not be.
		t.Skipf("HOME=%s is not the account's home directory (%v): the fallback it tests does not apply", home, uerr)
	}
	t.Setenv("HOME", t.TempDir())
	got, err := FindAssets()
	if err != nil {
		t.Fatalf("with HOME=%s: %v", os.Getenv("HOME"), err)
	}
	if got != real {
		t.Errorf("with HOME=%s: FindAssets() = %q; want %q", os.Getenv("HOME"), got, real)
	}
	if err := checkAssets(got); err != nil {
		t.Error(err)
	}
}

// BenchmarkLaunch measures a cold control plane: PKI, etcd and kube-apiserver until
// /readyz, then Stop (~3-4 s on the 2-core CI machine).
func BenchmarkLaunch(b *testing.B) {
	if _, err := FindAssets(); err != nil {
		skipOrFail(b, err)
	}
	for i := 0; i < b.N; i++ {
		cp, err := Launch(context.Background(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := cp.Stop(); err != nil {
			b.Fatal(err)
		}
	}
}
