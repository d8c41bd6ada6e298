// Package bootstrap takes a cluster's nodes from "booted on their static IPs" to "Kubernetes answers" through
// the Talos API (machinery's client), and is safe to interrupt and run again at any point.
//
// Every step observes before it acts:
//
//   - Apply waits (with progress and a timeout) for each node's Talos API on its static IP. A node in
//     maintenance mode (insecure TLS, read-only) gets its config with mode AUTO; the run then waits until the
//     node answers in configured mode with the cluster's CA and accepts the talosconfig's client certificate.
//     A configured node is compared with its desired config (a redacted diff: no secret is ever printed) and
//     gets the config only when it differs, in the chosen mode (auto, no-reboot, staged) or not at all with
//     DryRun. A config whose role differs from the node's current role is refused.
//   - Bootstrap bootstraps etcd exactly once, on the first control plane, addressed by its own IP (never the
//     VIP). It never calls Bootstrap when any control plane reports etcd members or a running etcd, and it
//     treats AlreadyExists as done.
//   - Health checks in phases: apid on every node → etcd healthy with one member per control plane →
//     kube-apiserver reachable (through the kubeconfig's endpoint: the VIP when the profile has one) →
//     every node registered (Ready is not required: there may be no CNI yet).
//   - Kubeconfig fetches the admin kubeconfig from a control plane; Store keeps it and the talosconfig
//     SOPS-encrypted in clusters/<name>/.
//
// Errors are *Error values naming the node, the phase, what was last seen and what to check next.
package bootstrap
