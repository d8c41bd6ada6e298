package kubeenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/talforge/talforge/internal/testenv/testproc"
)

// Versions built by scripts/kube-testenv.sh. The assets directory name is derived from
// both, exactly as the script derives it.
const (
	KubeVersion = "1.37.2"
	EtcdVersion = "3.7.3"
)

// Environment variables understood by this package.
const (
	// EnvAssets names a directory holding the kube-apiserver and etcd executables.
	EnvAssets = "TALFORGE_KUBE_ASSETS"
	// EnvCache overrides the cache root of scripts/kube-testenv.sh (~/.cache/talforge/testenv).
	EnvCache = "TALFORGE_TESTENV_CACHE"
	// EnvRequire=1 turns "binaries missing" from a skip into a test failure (CI sets it).
	EnvRequire = "TALFORGE_REQUIRE_KUBE"
)

// ErrAssetsMissing is returned (wrapped) when kube-apiserver or etcd cannot be found.
var ErrAssetsMissing = errors.New("kube-apiserver/etcd test binaries not found")

// DefaultAssetsDir is where scripts/kube-testenv.sh puts the binaries of the pinned versions.
func DefaultAssetsDir() (string, error) {
	root := os.Getenv(EnvCache)
	if root == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find home directory for the testenv cache: %w", err)
		}
		root = filepath.Join(home, ".cache", "talforge", "testenv")
	}
	return filepath.Join(root, KubeVersion+"-etcd"+EtcdVersion), nil
}

// FindAssets returns the directory holding executable kube-apiserver and etcd files:
// $TALFORGE_KUBE_ASSETS when set, else [DefaultAssetsDir], else the same directory under
// the account's home from the user database (tests that point HOME at a temporary
// directory still find the cache). The error wraps ErrAssetsMissing and says how to
// build them.
func FindAssets() (string, error) {
	if dir := os.Getenv(EnvAssets); dir != "" {
		if err := checkAssets(dir); err != nil {
			return "", fmt.Errorf("%w (%s)", err, EnvAssets)
		}
		return dir, nil
	}
	dir, err := DefaultAssetsDir()
	if err != nil {
		return "", err
	}
	firstErr := checkAssets(dir)
	if firstErr == nil {
		return dir, nil
	}
	if os.Getenv(EnvCache) == "" {
		if u, err := user.Current(); err == nil && u.HomeDir != "" {
			alt := filepath.Join(u.HomeDir, ".cache", "talforge", "testenv", KubeVersion+"-etcd"+EtcdVersion)
			if alt != dir && checkAssets(alt) == nil {
				return alt, nil
			}
		}
	}
	return "", fmt.Errorf("%w (default cache)", firstErr)
}

func checkAssets(dir string) error {
	for _, b := range []string{"kube-apiserver", "etcd"} {
		st, err := os.Stat(filepath.Join(dir, b))
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return fmt.Errorf("%w: no executable %s in %s; build them with `bash scripts/kube-testenv.sh build` (~7 min cold, cached afterwards) or point %s at a directory holding kube-apiserver and etcd",
				ErrAssetsMissing, b, dir, EnvAssets)
		}
	}
	return nil
}

// Options configure [Launch]. The zero value is usable.
type Options struct {
	// AssetsDir holds kube-apiserver and etcd; empty means FindAssets.
	AssetsDir string
	// ReadyTimeout bounds the wait for /readyz (default 90 s; a cold start takes ~3 s).
	ReadyTimeout time.Duration
}

// ControlPlane is a running etcd + kube-apiserver pair.
type ControlPlane struct {
	// Kubeconfig is a self-contained kubeconfig (embedded certificates) for a
	// system:masters admin.
	Kubeconfig []byte
	// Config is the same admin as a client-go config.
	Config *rest.Config
	// Host is the apiserver URL, https://127.0.0.1:<port>.
	Host string

	runDir   string
	etcdData string
	etcd     *testproc.Process
	api      *testproc.Process
}

// Launch starts a fresh control plane. A port taken between choosing and binding is
// retried with new ports.
func Launch(ctx context.Context, opts Options) (*ControlPlane, error) {
	if opts.AssetsDir == "" {
		dir, err := FindAssets()
		if err != nil {
			return nil, err
		}
		opts.AssetsDir = dir
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 90 * time.Second
	}
	removeStaleEtcdDirs()
	return testproc.RetryPortRace(ctx, func(ctx context.Context) (*ControlPlane, error) { return launchOnce(ctx, opts) })
}

func launchOnce(ctx context.Context, opts Options) (_ *ControlPlane, err error) {
	runDir, err := os.MkdirTemp("", "talforge-kubeenv-")
	if err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	cp := &ControlPlane{runDir: runDir}
	defer func() {
		if err != nil {
			_ = cp.Stop()
		}
	}()

	certs, err := newPKI(time.Now())
	if err != nil {
		return nil, err
	}
	pkiDir := filepath.Join(runDir, "pki")
	if err := certs.write(pkiDir); err != nil {
		return nil, err
	}
	ports, err := testproc.FreePorts(3)
	if err != nil {
		return nil, err
	}
	etcdPort, peerPort, apiPort := ports[0], ports[1], ports[2]

	// etcd data on tmpfs: etcd fsyncs a lot and the data is throw-away anyway.
	cp.etcdData, err = etcdDataDir(runDir)
	if err != nil {
		return nil, err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	cp.etcd, err = testproc.Start(ctx, testproc.Spec{
		Name: "etcd", Path: filepath.Join(opts.AssetsDir, "etcd"), Env: childEnv(),
		LogPath: filepath.Join(runDir, "etcd.log"),
		Args: []string{
			"--name=talforge-testenv",
			"--data-dir=" + cp.etcdData,
			"--listen-client-urls=" + etcdURL, "--advertise-client-urls=" + etcdURL,
			"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=talforge-testenv=" + peerURL,
			"--unsafe-no-fsync",
			"--log-level=warn",
		},
	})
	if err != nil {
		return nil, err
	}

	p := func(f string) string { return filepath.Join(pkiDir, f) }
	cp.api, err = testproc.Start(ctx, testproc.Spec{
		Name: "kube-apiserver", Path: filepath.Join(opts.AssetsDir, "kube-apiserver"), Env: childEnv(),
		LogPath: filepath.Join(runDir, "apiserver.log"),
		Args: []string{
			// Loopback only. --advertise-address=127.0.0.1 needs the endpoint reconciler off:
			// it refuses loopback addresses, and without an explicit address the apiserver
			// would advertise the host's eth0 address.
			"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(apiPort),
			"--endpoint-reconciler-type=none",
			"--etcd-servers=" + etcdURL,
			"--cert-dir=" + filepath.Join(runDir, "apiserver-certs"),
			"--tls-cert-file=" + p(serverCertFile), "--tls-private-key-file=" + p(serverKeyFile),
			"--client-ca-file=" + p(caFile),
			"--authorization-mode=RBAC", "--anonymous-auth=false",
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + p(saPubFile), "--service-account-signing-key-file=" + p(saKeyFile),
			"--service-cluster-ip-range=10.96.0.0/16",
			// No controller-manager creates the "default" ServiceAccount, so with this plugin
			// every Pod/Job would be rejected (envtest does the same).
			"--disable-admission-plugins=ServiceAccount",
			"--allow-privileged=true", "--profiling=false",
		},
	})
	if err != nil {
		return nil, err
	}

	cp.Host = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	cp.Kubeconfig, err = kubeconfig(cp.Host, certs)
	if err != nil {
		return nil, err
	}
	cp.Config, err = clientcmd.RESTConfigFromKubeConfig(cp.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("parse generated kubeconfig: %w", err)
	}
	// Tests create many objects quickly; client-go's default 5 QPS would dominate their runtime.
	cp.Config.QPS, cp.Config.Burst = 500, 1000

	if err := cp.waitReady(ctx, certs, opts.ReadyTimeout); err != nil {
		return nil, err
	}
	return cp, nil
}

// childEnv is the test's environment without ETCD_* variables: etcd reads every one of
// them as a flag and refuses to start on one it does not know.
func childEnv() []string {
	return testproc.Environ(func(name string) bool { return strings.HasPrefix(name, "ETCD_") })
}

// bindRace matches the complaint of etcd or kube-apiserver about a port taken since
// FreePorts chose it.
var bindRace = regexp.MustCompile(`address already in use`)

func (cp *ControlPlane) waitReady(ctx context.Context, certs *pki, timeout time.Duration) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certs.caPEM)
	admin, err := tls.X509KeyPair(certs.adminCertPEM, certs.adminKeyPEM)
	if err != nil {
		return fmt.Errorf("admin key pair: %w", err)
	}
	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, Certificates: []tls.Certificate{admin}, MinVersion: tls.VersionTLS12,
		}},
	}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	lastStatus := "no answer"
	for {
		for _, pr := range []*testproc.Process{cp.etcd, cp.api} {
			if err := pr.StartupErr(25, bindRace); err != nil {
				return err
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cp.Host+"/readyz", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			lastStatus = resp.Status
		} else {
			lastStatus = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready after %s (last /readyz: %s); last log lines:\n%s", timeout, lastStatus, cp.api.LogTail(25))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops kube-apiserver, then etcd, and removes every file of this control plane.
// It is safe to call more than once.
func (cp *ControlPlane) Stop() error {
	if cp == nil {
		return nil
	}
	var errs []error
	// The apiserver first: with etcd gone it ignores SIGTERM for a long time. Its state
	// is throw-away, so the grace period is short.
	if err := cp.api.Stop(3 * time.Second); err != nil {
		errs = append(errs, err)
	}
	if err := cp.etcd.Stop(3 * time.Second); err != nil {
		errs = append(errs, err)
	}
	cp.api, cp.etcd = nil, nil
	if cp.etcdData != "" {
		if err := os.RemoveAll(cp.etcdData); err != nil {
			errs = append(errs, err)
		}
		cp.etcdData = ""
	}
	if cp.runDir != "" {
		if err := os.RemoveAll(cp.runDir); err != nil {
			errs = append(errs, err)
		}
		cp.runDir = ""
	}
	return errors.Join(errs...)
}

func kubeconfig(host string, certs *pki) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["talforge-testenv"] = &clientcmdapi.Cluster{Server: host, CertificateAuthorityData: certs.caPEM}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: certs.adminCertPEM, ClientKeyData: certs.adminKeyPEM}
	cfg.Contexts["talforge-testenv"] = &clientcmdapi.Context{Cluster: "talforge-testenv", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "talforge-testenv"
	return clientcmd.Write(*cfg)
}

const etcdDirPrefix = "talforge-etcd-"

// etcdDataDir is a fresh directory on /dev/shm when there is one (else under runDir).
// Its name carries our pid so that a later run can remove it if this process is killed
// before Stop.
func etcdDataDir(runDir string) (string, error) {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", fmt.Sprintf("%s%d-", etcdDirPrefix, os.Getpid())); err == nil {
			return dir, nil
		}
	}
	dir := filepath.Join(runDir, "etcd-data")
	return dir, os.MkdirAll(dir, 0o700)
}

// removeStaleEtcdDirs deletes /dev/shm/talforge-etcd-<pid>-* directories whose pid no
// longer exists (a test binary killed before it could clean up; tmpfs is RAM).
func removeStaleEtcdDirs() {
	matches, _ := filepath.Glob("/dev/shm/" + etcdDirPrefix + "*")
	for _, m := range matches {
		rest := strings.TrimPrefix(filepath.Base(m), etcdDirPrefix)
		pidStr, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(m)
		}
	}
}
