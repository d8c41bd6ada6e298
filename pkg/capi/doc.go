// Package capi turns a talforge cluster into the Cluster API objects that run the same cluster
// from a management cluster: CAPI core (Cluster, MachineDeployment, cluster.x-k8s.io v1beta2),
// the Proxmox infrastructure provider CAPMOX (ProxmoxCluster, ProxmoxMachineTemplate,
// infrastructure.cluster.x-k8s.io v1alpha2) and Sidero's Talos providers (TalosControlPlane,
// TalosConfigTemplate, controlplane/bootstrap.cluster.x-k8s.io v1alpha3), plus the Secret
// "<cluster>-talos" that holds the cluster's Talos secrets bundle in the format the Talos
// bootstrap provider reads (controllers/secrets.go: key "bundle", the YAML of machinery's
// secrets.Bundle), so that the Cluster API cluster shares talforge's PKI.
//
// Those are the storage versions of the pinned CRDs (CAPI v1.13.5, CAPMOX v0.9.0, CACPPT
// v0.5.12, CABPT v0.6.12): the CRDs carry no conversion webhook, so nothing else would be
// stored as written.
//
// What a profile says that those objects cannot (a fixed MAC or VMID per node, a node pinned to
// a PVE host, per-node patches, ...) is reported field by field as a Loss; Export never drops
// it silently.
package capi
