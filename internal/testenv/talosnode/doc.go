// Package talosnode is a test-only emulator of a Talos Linux node's API (apid on port 50000).
//
// A Node is a real gRPC server that implements machinery's generated machine.MachineServiceServer and the COSI
// state service (cosi.resource.State) over TLS, so talforge's code under test talks to it through the REAL
// machinery client (github.com/siderolabs/talos/pkg/machinery/client) exactly as it would talk to a node:
//
//   - Maintenance mode: a self-signed serving certificate, insecure clients get the os:reader role; only
//     ApplyConfiguration mutates anything. The config is parsed with configloader and validated with
//     machinery for the metal runtime mode; an invalid one is rejected with codes.InvalidArgument.
//   - After a successful apply the node "installs and reboots": its listener is closed (connection refused)
//     for Options.BootDelay, then it comes back in configured mode.
//   - Configured mode: the serving certificate is signed by the applied config's OS CA (machine.ca), client
//     certificates are required and verified against that CA, and the role is read from the client
//     certificate's Organization (os:admin, os:operator, os:reader) like Talos' authorizer does.
//   - Bootstrap succeeds once per Cluster (etcd member appears) and returns codes.AlreadyExists afterwards;
//     the other control planes join etcd after Options.JoinDelay. Several nodes share one Cluster, so
//     EtcdMemberList and Bootstrap see one etcd.
//   - Kubeconfig streams one common.Data holding a tar.gz with a single file "kubeconfig", whose content is
//     Cluster.SetKubeconfig's (so tests can point it at a real test kube-apiserver) or a generated admin
//     kubeconfig for the cluster endpoint.
//   - The COSI state holds MachineStatus (stage), MachineType and MachineConfig (ids "v1alpha1" and
//     "persistent"); MachineConfig is Sensitive and needs os:admin, like on a real node.
//   - Versions and upgrades: a node runs Options.TalosVersion until it installs another installer image
//     (the tag of the config's install image when it leaves maintenance mode, or of an upgrade's image).
//     Nodes newer than 1.13.0-alpha.2 serve LifecycleService.Upgrade, which streams the installer's
//     progress and exit code and leaves the reboot to the client (MachineService.Reboot); every node
//     serves the deprecated MachineService.Upgrade, which checks etcd health on control planes and
//     reboots into the new version on its own.
//   - Options.OnEvent sees every time the node's API goes down or comes up, so tests can check rolling
//     operations across nodes.
//
// Fault injection: Options.StartDelay (slow boot, connection refused until it elapses), Node.RefuseFor
// (listener closed then reopened on the same address), Node.InterruptNext (the node reboots in the middle
// of the next call of a method, dropping the connection), Node.SetStuckInMaintenance (an applied config
// never takes: the node comes back in maintenance mode) and Node.FailNextUpgradeBoot (the node never comes
// back from its next upgrade).
//
// Emulated Talos version: the API shape of machinery v1.14 (maintenance and regular APIs unified since
// v1.13: Version answers in maintenance, admin-only calls are refused with PermissionDenied "not
// authorized"). Behaviour that could not be verified against Talos source is marked "emulator choice" in
// comments.
package talosnode
