// Package profile defines the talforge cluster profile: the one YAML file that describes a
// Talos-on-Proxmox cluster (nodes, static network, versions, extensions, patches, Longhorn and
// its S3 backups).
//
// Loading is strict: an unknown key, a wrong type or a semantic mistake is reported with the
// file, the field path, the line and column where YAML gives one, what was expected and how to
// fix it. Validation collects every problem before it returns, so a user fixes a profile in one
// pass. Defaults (Talos, Kubernetes and Longhorn versions, Proxmox VM hardware) are pinned in
// defaults.go and nowhere else.
//
// Values that other stages need to agree on — the MAC address of a node's NIC, the serial of
// its Longhorn data disk, the control-plane endpoint — are derived here, deterministically, so
// that Proxmox provisioning and machine-config generation can never disagree.
package profile
