// Package lifecycle composes talforge's stages into whole-cluster operations:
//
//   - Up: validate → generate → plan → provision → apply → bootstrap → Longhorn. After generate,
//     Up computes the whole plan with the same function as Plan, then each stage (a value with
//     plan and apply) applies its part and reports the Steps it took in the plan's vocabulary:
//     up takes the steps plan listed (Terraform's contract; StepsDiffer). Each stage observes
//     before it acts (PVE VMs by tag, Talos node stage and live config, etcd members, the
//     Helm release, Kubernetes objects), so an interrupted run resumes where it stopped and a
//     run over a cluster that is in place changes nothing: no mutating PVE request, no
//     ApplyConfiguration or Bootstrap call, no Helm upgrade, no file written. One progress line
//     per phase and per node, each with its elapsed time. Proxmox is read (never changed) while
//     generate runs, as the plan needs only the profile and what Proxmox holds.
//   - Plan: what Up would do, without doing it: the Proxmox plan, a redacted config diff per
//     node against the live node, the etcd bootstrap state and the Longhorn steps (install,
//     upgrade ladder, drift). PlanReport.Changes drives `talforge plan`'s exit code 2.
//   - Status: per node VM state, Talos stage, etcd membership and Kubernetes node; Longhorn's
//     version, the backup target's availability and the last backup of every volume.
//   - Rebuild (tabula rasa): plan and confirm, optionally back every Longhorn volume up, destroy
//     the cluster's own VMs (optionally keeping the data disks), re-create them from what Git
//     holds — the same secrets bundle, IPs and MACs — bootstrap, install Longhorn at the same
//     version and backup target, and restore every declared volume from its latest S3 backup
//     into a Volume, PV and PVC bound by name before any workload starts.
//   - DRTest: back a volume up, restore it into a new volume, compare, report the time.
//   - The single-stage commands (Validate, Provision, Destroy, ApplyConfigs, Bootstrap, Health,
//     Kubeconfig) run the same stage code on what is generated, rendered in memory
//     (generate.RenderStored); cmd/talforge only parses flags, calls one and prints.
//
// Every wait longer than a moment (Proxmox tasks, Talos installs and health, Helm actions with
// their hooks, Longhorn gates, backups and restores) shows on the progress stream when it starts
// and at least every 15 s, as a status line rewritten in place on a terminal (Options.Live).
//
// With Options.Commit the files a run wrote under clusters/<name>/ are committed with a
// message listing them.
package lifecycle
