// Package kubeenv starts a real, throw-away Kubernetes control plane (etcd +
// kube-apiserver, no kubelet, no controller-manager) on 127.0.0.1 for tests.
//
// The binaries are built and cached by scripts/kube-testenv.sh; this package only finds
// them (TALFORGE_KUBE_ASSETS, or the script's default cache directory), generates a
// fresh PKI in Go, starts both processes on free loopback ports and waits for /readyz.
// Every control plane is isolated: its own etcd data directory on /dev/shm, its own
// certificates, so cluster-scoped objects (CRDs, StorageClasses) never leak between
// test packages.
//
// Tests use it through [Start] (one control plane per test) or [Shared] (one per test
// package, started lazily and stopped by TestMain). Both skip the test with a clear
// message when the binaries are absent, unless TALFORGE_REQUIRE_KUBE=1, which CI sets
// so a missing build fails instead of silently skipping.
package kubeenv
