// Package testproc runs the real server processes behind internal/testenv (etcd and
// kube-apiserver for kubeenv, SeaweedFS's weed for s3server) and shares one per test
// package.
//
// [Start] runs a child in its own process group with its output in a log file; on Linux
// the kernel kills it when the test binary dies in any way (PR_SET_PDEATHSIG), and
// [Process.Stop] ends the whole group. [Process.StartupErr] and [RetryPortRace] cover the
// start-up race every such launcher has: a port chosen free by [FreePorts] may be taken
// before the child binds it.
//
// [Requirement] says how a test reacts when the binaries are absent: a skip with the
// command that builds them, or a failure when the package's TALFORGE_REQUIRE_* variable
// is 1 (CI sets it). [PerTest] and [Shared] launch a server for one test or once per test
// package on top of it.
package testproc
