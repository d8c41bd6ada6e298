// Package machineconfig renders each node's Talos machine config from a cluster profile with
// Talos' own machinery, for the version contract of the profile's Talos version.
//
// For every node it starts from machinery's generated config for the node's role and applies,
// in order: talforge's built-in patches (hostname; static address, gateway and nameservers on
// the NIC selected by its MAC or named interface; the control-plane VIP; the Longhorn data disk
// as a user volume selected by its serial, with the kubelet mount and node label Longhorn
// needs), then the profile's patches for all nodes, for the node's role and for the node. The
// result is validated by machinery for a metal (installed) machine; a failure names the node
// and the patch that caused it.
//
// Built-in patches follow the config contract: Talos ≥ 1.12 gets multi-document network
// configuration (HostnameConfig, LinkAliasConfig, LinkConfig, Layer2VIPConfig,
// ResolverConfig); 1.10 and 1.11 get the v1alpha1 machine.network form.
//
// Rendering is deterministic: the same profile, patches and secrets bundle give byte-identical
// configs. Everything shared by nodes (base configs per role, parsed patch files) is prepared
// once; nodes render concurrently.
package machineconfig
