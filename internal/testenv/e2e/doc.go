// Package e2e wires the project's emulators and the real test control plane into one
// emulated homelab for end-to-end tests of `talforge up`, `rebuild` and friends:
//
//   - a Proxmox VE emulator (pvesim, schema-checked when the fixture is present) that
//     talforge provisions through the real Telmate client;
//   - Talos nodes (talosnode): when a VM runs with a cloud-init ipconfig0, a node boots in
//     maintenance mode on that static IP (and the Env's Talos port), as the nocloud ISO does;
//     when the VM stops or is deleted, the node goes away. All nodes of one VM generation
//     share one etcd; when every VM is gone, so is etcd: the next VMs start a new cluster.
//     The VMs of a hand-made cluster (HandMade: built as a person does, without talforge,
//     for `talforge import`) have no ipconfig0: their nodes boot on the address and Talos
//     version HandMade recorded for their VMID;
//   - the real kube-apiserver (kubeenv) as every control plane's Kubernetes API: the nodes'
//     Kubeconfig RPC serves its kubeconfig, and a configured node registers its Kubernetes
//     Node, as a kubelet does. When etcd is lost (every VM deleted) the apiserver is wiped of
//     everything a new etcd would not hold — what Helm, Longhorn, talforge and workloads
//     created — so a rebuilt cluster really starts empty;
//   - the test Longhorn chart in a real Helm repository and the fake longhorn-manager
//     (lhmanager) with its data path: volume data in files (lhdata), backed up to and
//     restored from a real S3 server (s3server, SeaweedFS) with Longhorn's own backupstore
//     library. The S3 server and its buckets outlive every cluster; Project creates the
//     buckets the profile names and an S3 user holding exactly the IAM policy `talforge
//     iam-policy` writes for the profile (SeaweedFS evaluates it per request), and writes
//     that user's keys and the endpoint as the backup credentials. The volume data lives on the nodes' Longhorn data disks: it survives a
//     cluster loss when one of those disks was kept (destroy --keep-data-disks) and is gone
//     when every VM was deleted with its disks;
//   - the parts of kube-controller-manager restores rely on: a PersistentVolume pre-bound to a
//     claim that names it becomes Bound, and so does the claim.
//
// Start gives each Env its own S3 server; Shared keeps one control plane and one S3 server
// per test package (each Env starts from an empty control plane and empty buckets).
// Latencies are small so that a full up → rebuild cycle takes seconds; each backup, restore
// and backup deletion takes at least 2 s, the backupstore library's lock wait.
package e2e
