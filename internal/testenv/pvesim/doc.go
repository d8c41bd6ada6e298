// Package pvesim is a test-only emulator of the Proxmox VE REST API (the
// /api2/json endpoints talforge drives through the Telmate client).
//
// It aims at wire fidelity rather than completeness:
//
//   - every request's parameters are checked against the upstream PVE API
//     schema (pve-docs apidata.js, saved as ../shared/fixtures/proxmox/
//     pve{8,9}-apischema.json): unknown parameters, type, format, pattern,
//     enum and range violations are answered with HTTP 400 "Parameter
//     verification failed." and the per-parameter "errors" map PVE sends;
//   - responses use the {"data": ...} envelope; errors carry their first
//     message line in the HTTP reason phrase, as pve-http-server does;
//   - the semantic parameter checks qemu-server and pve-storage make before
//     any task starts, answered like the schema's (drive_params.go,
//     drive_storage.go: media=cdrom misuse, import-from, content types;
//     storage.go: download-url targets and extensions);
//   - API-token authentication (401 on a bad token, 403 "Permission check
//     failed (<path>, <priv>)" when a token lacks a privilege), with PVE's
//     ACL propagation: the most specific ACL path wins, NoAccess ends
//     inheritance, pools lend their ACLs to their VMs (acl.go);
//   - hotplug as vmconfig_hotplug_pending does it: a running VM's change
//     either applies at once or waits in [PENDING] (hotplug.go);
//   - move_disk to another VM with the checks of move_vm_disk
//     (qemu_reassign.go);
//   - asynchronous tasks with real-format UPIDs, task status and log,
//     per-VM configuration locks, configurable per-task latency;
//   - fault injection (5xx, dropped connections, lock timeouts, failed tasks);
//   - config digests: a stale digest on a config update or resize, or a
//     stale digest / target-digest on move_disk, is refused as PVE refuses
//     it, so clients can make "check, then change" atomic.
//
// Tests observe the emulator through its request log and state accessors
// and seed it with VMs (including "foreign" ones) and storage content.
// Modify and Fault.Act play another actor who renames, retags or re-disks a
// VM between a client's check and its change.
//
// The emulator never talks to the network: download-url "downloads" by
// creating the volume after the configured latency.
package pvesim
