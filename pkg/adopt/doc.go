// Package adopt reads a cluster that was built by hand (Talos on Proxmox, Longhorn installed
// with Helm) and describes it as talforge describes its own: a profile, the cluster's secrets
// bundle and patch files, such that `talforge generate` renders every node's live config again
// (as data), and `plan` on the adopted cluster shows nothing to change but talforge's ownership
// tags. It only reads: nothing on any server changes (`talforge import`).
//
//   - Talos (talos*.go): every node's live machine config through the Talos API (the
//     MachineConfig resource, os:admin), the secrets bundle from a control plane's config
//     (machinery secrets.NewBundleFromConfig, as `talosctl gen secrets
//     --from-controlplane-config`), the nodes, network and versions, and patches for what the
//     profile does not model.
//   - Proxmox (proxmox.go): the VMs of the nodes, matched by MAC (then by IP through the guest
//     agent), their VMID, PVE node and sizes.
//   - Longhorn (longhorn.go): the Helm release, its values, settings, backup target,
//     recurring jobs, storage classes and the claims whose volumes have backups.
package adopt
