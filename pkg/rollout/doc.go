// Package rollout upgrades Talos OS across a running cluster, one node at a time, so that a
// cluster with Longhorn never loses a replica it still needs.
//
// For each node whose Talos version differs from the target (control planes first, then
// workers, in profile order) it waits for the storage gate (every attached Longhorn volume
// healthy with a healthy replica on another node, nothing rebuilding, engine images deployed),
// cordons and drains the node through the Eviction API (a drain held by Longhorn's
// instance-manager PodDisruptionBudget is named with the volume behind it), upgrades it with
// the installer image (LifecycleService.Upgrade and a reboot on Talos > 1.13.0-alpha.2, the
// deprecated MachineService.Upgrade before, chosen by the version the node reports), waits for
// it to come back on the new version, Ready in Kubernetes and, for a control plane, back in
// etcd; then applies its newly rendered machine config without a reboot, uncordons it and
// waits for its Longhorn node to be Ready and schedulable before the next node.
//
// Every step observes first, so an interrupted run continues where it stopped: a node
// cordoned for the upgrade carries an annotation that the next run finishes.
package rollout
