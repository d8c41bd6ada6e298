// Package proxmox provisions a cluster's Talos VMs on Proxmox VE through the PVE API alone: no
// SSH, no Terraform state. Everything is idempotent by observation.
//
//   - Desired turns a profile into one VMSpec per node (see spec.go for every setting and why)
//     and the boot image (the Image Factory nocloud ISO of the cluster's schematic); Lint
//     flags settings Talos cannot boot or run with.
//   - Ownership (owner.go): a VM is a cluster's through one tag naming role and cluster,
//     talforge.node.<cluster> or talforge.parked.<cluster> (holders of kept data disks);
//     cluster names are DNS labels without '.', so the tags cannot collide whatever the
//     clusters are called. ParseOwnership also reads the older talforge-<cluster> tags where
//     they are unambiguous.
//   - Observe lists the VMs, finds the cluster's by the ownership tag and their name, and plans
//     create / update (field-level diff) / unchanged. A VM with a node's name or VMID but
//     without the tag is foreign: a Conflict that blocks Apply; it is never touched.
//   - Adopted VMs (adopt.go; nodes[].adopted, made by hand and taken over by `talforge
//     import`) are found by VMID instead, whatever their name, and must still have a NIC with
//     the node's MAC; untagged or tagged for this cluster they are the node's, otherwise a
//     Conflict, and a missing one is never created. Only the ownership tags (added to the
//     VM's own), cores, memory and disk growth are planned; no boot image, no lint, and
//     destroy skips them unless DestroyOptions.IncludeAdopted.
//   - Executor.Apply downloads the ISO where missing, then creates or updates and starts the
//     VMs with bounded parallelism. Steps are retried with backoff on lock contention, 5xx
//     answers and dropped connections; every retry re-observes first, so a create whose answer
//     was lost is recognised rather than repeated. A failed task becomes a TaskError carrying
//     the tail of its log.
//   - PlanDestroy / Executor.Destroy stop and delete (purge) only VMs with the ownership tag,
//     optionally parking their data disks in holder VMs for the next provision.
//   - Every stop, start, update, resize, move_disk and delete is preceded by a fresh read of
//     the VM's config that re-checks tag and name (ErrNotOwned otherwise), and sends the config
//     digest back where PVE accepts one, so that PVE refuses a change made in between.
//     Re-attaching a kept disk succeeds only when scsi1 holds that volume under the name
//     move_disk gave it; a holder is never deleted while it holds a disk.
//
// The Proxmox client is github.com/Telmate/proxmox-api-go behind the API interface this
// package owns (Telmate). Task waiting is done here (Executor.Wait) because Telmate polls every
// 2 s: with 300 ms tasks that would make every step cost 2 s (BenchmarkProvision12VMs measures
// both). Telmate calls are guarded against its panics on unexpected answers.
//
// # Minimum privileges
//
// Give the API token (privilege separation on, ACLs on the token) a role with these
// privileges; `talforge provision` and `talforge destroy` need nothing else
// (docs/proxmox.md#token-privileges,
// enforced by internal/testenv/pvesim and TestMinimalPrivileges):
//
//	ACL path (propagate)                 privileges
//	/vms                                 VM.Allocate VM.Clone VM.Audit VM.PowerMgmt
//	                                     VM.Config.CDROM VM.Config.CPU VM.Config.Cloudinit
//	                                     VM.Config.Disk VM.Config.HWType VM.Config.Memory
//	                                     VM.Config.Network VM.Config.Options
//	/storage/<proxmox.storage>           Datastore.AllocateSpace Datastore.Audit
//	/storage/<proxmox.isoStorage>        Datastore.AllocateTemplate Datastore.Audit
//	/nodes/<each PVE node>               Sys.AccessNetwork (download-url; PVE >= 8.2)
//	/sdn/zones/localnetwork/<bridge>     SDN.Use (add /<vlan> scoping if you restrict VLANs)
//
// With proxmox.pool set, VM.Allocate may instead be granted on /pool/<pool>. No Sys.Audit is
// needed: the token reads only its own tasks. See docs/proxmox.md for the pveum commands.
package proxmox
