package profile

// APIVersion and Kind identify a talforge cluster profile.
const (
	APIVersion = "talforge.dev/v1alpha1"
	Kind       = "Cluster"
)

// Cluster is a talforge cluster profile.
type Cluster struct {
	// Profile format version; must be talforge.dev/v1alpha1.
	APIVersion string `yaml:"apiVersion" json:"apiVersion"`
	// Document kind; must be Cluster.
	Kind string `yaml:"kind" json:"kind"`
	// Cluster identity.
	Metadata Metadata `yaml:"metadata" json:"metadata"`
	// Talos and Kubernetes versions, system extensions and install settings.
	Talos Talos `yaml:"talos,omitempty" json:"talos,omitempty"`
	// The static network every node lives on (no DHCP).
	Network Network `yaml:"network" json:"network"`
	// Proxmox VE placement and VM hardware. Omit it to manage machine configs only (bare metal).
	Proxmox *Proxmox `yaml:"proxmox,omitempty" json:"proxmox,omitempty"`
	// The cluster's machines, one entry per node.
	Nodes []Node `yaml:"nodes" json:"nodes"`
	// Talos config patches (files under patches/) applied after talforge's built-in patches, in the
	// order all → role → node.
	Patches Patches `yaml:"patches,omitempty" json:"patches,omitempty"`
	// Directories outside the project root that patches, proxmox.tokenFile, proxmox.caFile and
	// longhorn.backup.credentialsFile may be read from: absolute, or relative to the project root
	// (e.g. ../shared-secrets). Without an entry here every such path must lie inside the project
	// root, symlinks followed: a profile cannot make talforge read /etc/passwd or ~/.ssh and put
	// it into a machine config. List only directories you trust with the cluster.
	ExternalDirs []string `yaml:"externalDirs,omitempty" json:"externalDirs,omitempty"`
	// Longhorn distributed storage. Adding this block turns on the iscsi-tools and
	// util-linux-tools extensions, the Longhorn data-disk user volume, the Helm values, the S3
	// backup target, RecurringJobs, StorageClasses and the IAM policy.
	Longhorn *Longhorn `yaml:"longhorn,omitempty" json:"longhorn,omitempty"`

	// Warnings are problems that do not stop talforge (for example an even number of
	// control planes). Filled by Load.
	Warnings Problems `yaml:"-" json:"-"`

	src *source
}

// Metadata identifies the cluster.
type Metadata struct {
	// Cluster name: a DNS label (lowercase letters, digits, '-'), used for the Talos cluster
	// name, the clusters/<name>/ output directory and the Proxmox ownership tag talforge.node.<name>.
	Name string `yaml:"name" json:"name"`
}

// Talos selects the Talos and Kubernetes versions and the boot/install image.
type Talos struct {
	// Talos version (v1.10.0 to v1.14.x). It also selects the machine-config version contract.
	Version string `yaml:"version,omitempty" json:"version,omitempty"`
	// Kubernetes version; must be supported by the Talos version. Defaults to the version that
	// Talos release shipped with.
	Kubernetes string `yaml:"kubernetes,omitempty" json:"kubernetes,omitempty"`
	// Official system extensions baked into the image (e.g. siderolabs/qemu-guest-agent).
	// talforge adds the ones Longhorn and Proxmox need.
	Extensions []string `yaml:"extensions,omitempty" json:"extensions,omitempty"`
	// Extra kernel arguments baked into the Image Factory schematic.
	KernelArgs []string `yaml:"kernelArgs,omitempty" json:"kernelArgs,omitempty"`
	// Image Factory host (default factory.talos.dev); a self-hosted factory also works.
	ImageFactory string `yaml:"imageFactory,omitempty" json:"imageFactory,omitempty"`
	// Disk Talos installs to (default /dev/sda: scsi0 on Proxmox virtio-scsi). Per-node override: nodes[].installDisk.
	InstallDisk string `yaml:"installDisk,omitempty" json:"installDisk,omitempty"`
	// Let workloads run on control-plane nodes (needed for clusters with few nodes).
	AllowSchedulingOnControlPlanes bool `yaml:"allowSchedulingOnControlPlanes,omitempty" json:"allowSchedulingOnControlPlanes,omitempty"`
	// Kubernetes API endpoint override (https://host:port). Default: the VIP, else the first
	// control plane's IP, on port 6443.
	Endpoint string `yaml:"endpoint,omitempty" json:"endpoint,omitempty"`
}

// Network is the static IPv4 network of the cluster.
type Network struct {
	// Node subnet in CIDR notation, e.g. 192.168.1.0/24.
	CIDR string `yaml:"cidr" json:"cidr"`
	// Default gateway, inside cidr.
	Gateway string `yaml:"gateway" json:"gateway"`
	// DNS servers (IPv4 addresses).
	Nameservers []string `yaml:"nameservers,omitempty" json:"nameservers,omitempty"`
	// DNS search domains.
	SearchDomains []string `yaml:"searchDomains,omitempty" json:"searchDomains,omitempty"`
	// Optional shared virtual IP for the Kubernetes API on the control planes (Layer 2).
	VIP string `yaml:"vip,omitempty" json:"vip,omitempty"`
	// Name of the NIC to configure (e.g. eth0). Default: select the NIC by the MAC address
	// talforge assigns to each node. Per-node override: nodes[].interface.
	Interface string `yaml:"interface,omitempty" json:"interface,omitempty"`
	// Link MTU (default: the system default, 1500).
	MTU int `yaml:"mtu,omitempty" json:"mtu,omitempty"`
}

// Proxmox places the cluster's VMs on Proxmox VE.
type Proxmox struct {
	// PVE API URL, e.g. https://pve.lan:8006/api2/json.
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	// SOPS-encrypted YAML file with key `token: USER@REALM!TOKENID=SECRET`, inside the project
	// root (or externalDirs). The environment variable TALFORGE_PVE_TOKEN takes precedence.
	TokenFile string `yaml:"tokenFile,omitempty" json:"tokenFile,omitempty"`
	// PEM CA bundle to verify the PVE certificate (default: system roots), inside the project
	// root (or externalDirs).
	CAFile string `yaml:"caFile,omitempty" json:"caFile,omitempty"`
	// Skip TLS verification. Only for lab hosts with self-signed certificates; prefer caFile.
	InsecureSkipVerify bool `yaml:"insecureSkipVerify,omitempty" json:"insecureSkipVerify,omitempty"`
	// Default PVE node (host) for VMs. Per-node override: nodes[].pveNode.
	Node string `yaml:"node" json:"node"`
	// Storage for VM disks (e.g. local-lvm).
	Storage string `yaml:"storage" json:"storage"`
	// File-based storage holding ISO images (default local).
	ISOStorage string `yaml:"isoStorage,omitempty" json:"isoStorage,omitempty"`
	// Network bridge (default vmbr0).
	Bridge string `yaml:"bridge,omitempty" json:"bridge,omitempty"`
	// VLAN tag for net0 (1-4094; 0 = untagged).
	VLAN int `yaml:"vlan,omitempty" json:"vlan,omitempty"`
	// CPU type (default host). Must provide x86-64-v2; kvm64/qemu64 cannot boot Talos.
	CPU string `yaml:"cpu,omitempty" json:"cpu,omitempty"`
	// Install the QEMU guest agent extension and enable the agent in PVE (default true).
	QemuGuestAgent *bool `yaml:"qemuGuestAgent,omitempty" json:"qemuGuestAgent,omitempty"`
	// Optional template VMID to clone from instead of creating VMs from scratch.
	Template int `yaml:"template,omitempty" json:"template,omitempty"`
	// Optional resource pool for the VMs.
	Pool string `yaml:"pool,omitempty" json:"pool,omitempty"`
	// VM defaults; every field can be overridden per node.
	Defaults VMSize `yaml:"defaults,omitempty" json:"defaults,omitempty"`
}

// VMSize is the hardware of a node's VM.
type VMSize struct {
	// Virtual CPU cores.
	Cores int `yaml:"cores,omitempty" json:"cores,omitempty"`
	// Memory in MiB.
	Memory int `yaml:"memory,omitempty" json:"memory,omitempty"`
	// OS disk size, e.g. 40G (binary units: G = GiB).
	Disk string `yaml:"disk,omitempty" json:"disk,omitempty"`
	// Longhorn data disk size, e.g. 100G. A node without one stores no Longhorn replicas.
	LonghornDisk string `yaml:"longhornDisk,omitempty" json:"longhornDisk,omitempty"`
}

// Role is a Talos machine type.
type Role string

// Node roles.
const (
	RoleControlPlane Role = "controlplane"
	RoleWorker       Role = "worker"
)

// Node is one machine of the cluster.
type Node struct {
	// Hostname: a DNS label, also the Proxmox VM name.
	Name string `yaml:"name" json:"name"`
	// controlplane or worker.
	Role Role `yaml:"role" json:"role" jsonschema:"enum=controlplane,enum=worker"`
	// Static IPv4 address inside network.cidr.
	IP string `yaml:"ip" json:"ip"`
	// NIC MAC address. Default: derived from the cluster and node names (locally administered,
	// stable across rebuilds).
	MAC string `yaml:"mac,omitempty" json:"mac,omitempty"`
	// Proxmox VMID (100-999999999). Default: allocated by Proxmox (/cluster/nextid).
	VMID int `yaml:"vmid,omitempty" json:"vmid,omitempty"`
	// Proxmox node (host) override.
	PVENode string `yaml:"pveNode,omitempty" json:"pveNode,omitempty"`
	// VM hardware; unset fields come from proxmox.defaults.
	VMSize `yaml:",inline" json:",inline"`
	// Install disk override.
	InstallDisk string `yaml:"installDisk,omitempty" json:"installDisk,omitempty"`
	// NIC name override (instead of MAC selection).
	Interface string `yaml:"interface,omitempty" json:"interface,omitempty"`
	// The node's VM was made by hand and adopted (written by `talforge import`): talforge never
	// creates, recreates or reconfigures it. It adds its ownership tags (the VM's own tags
	// stay), sets cores and memory, and grows the disks in the slots named here; everything
	// else stays as the VM has it, and `destroy` leaves it alone without --include-adopted.
	// Needs vmid and mac (the VM's NIC), which identify the VM. `{}` means scsi0 and scsi1.
	Adopted *AdoptedVM `yaml:"adopted,omitempty" json:"adopted,omitempty"`
}

// AdoptedVM names the disk slots of an adopted node's VM.
type AdoptedVM struct {
	// Slot of the system disk, e.g. scsi0 or virtio0 (default scsi0).
	OSDisk string `yaml:"osDisk,omitempty" json:"osDisk,omitempty"`
	// Slot of the Longhorn data disk (default scsi1); used only with longhornDisk.
	LonghornDisk string `yaml:"longhornDisk,omitempty" json:"longhornDisk,omitempty"`
}

// Default disk slots of an adopted VM: those talforge gives the VMs it creates.
const (
	DefaultAdoptedOSDisk       = "scsi0"
	DefaultAdoptedLonghornDisk = "scsi1"
)

// OSDiskSlot returns the system disk's slot, scsi0 unless set.
func (a AdoptedVM) OSDiskSlot() string {
	if a.OSDisk == "" {
		return DefaultAdoptedOSDisk
	}

	return a.OSDisk
}

// LonghornDiskSlot returns the Longhorn data disk's slot, scsi1 unless set.
func (a AdoptedVM) LonghornDiskSlot() string {
	if a.LonghornDisk == "" {
		return DefaultAdoptedLonghornDisk
	}

	return a.LonghornDisk
}

// Patches lists Talos config patch files (strategic merge or JSON6902, multi-document allowed).
// Paths are relative to the project root and must stay inside it (see externalDirs).
type Patches struct {
	// Applied to every node.
	All []string `yaml:"all,omitempty" json:"all,omitempty"`
	// Applied to control-plane nodes.
	ControlPlane []string `yaml:"controlplane,omitempty" json:"controlplane,omitempty"`
	// Applied to worker nodes.
	Worker []string `yaml:"worker,omitempty" json:"worker,omitempty"`
	// Applied to the named nodes.
	Nodes map[string][]string `yaml:"nodes,omitempty" json:"nodes,omitempty"`
}

// Longhorn configures Longhorn and its backups.
type Longhorn struct {
	// Longhorn chart version (1.8.x to 1.11.x).
	Version string `yaml:"version,omitempty" json:"version,omitempty"`
	// Helm repository URL (default https://charts.longhorn.io).
	RepoURL string `yaml:"repoURL,omitempty" json:"repoURL,omitempty"`
	// Default number of replicas per volume; at most the number of nodes with a Longhorn disk.
	ReplicaCount int `yaml:"replicaCount,omitempty" json:"replicaCount,omitempty"`
	// S3 backup target, credentials and recurring jobs.
	Backup *LonghornBackup `yaml:"backup,omitempty" json:"backup,omitempty"`
	// Extra StorageClasses.
	StorageClasses []StorageClass `yaml:"storageClasses,omitempty" json:"storageClasses,omitempty"`
	// Data the cluster owns, declared by claim (namespace + PVC name): the Longhorn volume
	// behind each claim gets its recurring-job labels, `talforge rebuild` restores each claim
	// from its latest S3 backup, and `talforge dr-test` proves the restore byte for byte.
	Volumes []Volume `yaml:"volumes,omitempty" json:"volumes,omitempty"`
	// Extra Helm values merged under talforge's own (talforge-owned keys win).
	Values map[string]any `yaml:"values,omitempty" json:"values,omitempty"`
	// Keep Longhorn's replicas on every node's system disk at this path (e.g.
	// /var/lib/longhorn), as clusters built by hand often do: no node needs a longhornDisk.
	// A Talos reset or reinstall that wipes a system disk destroys that node's replicas; move
	// the data to dedicated disks (longhornDisk) when you can (docs/longhorn.md).
	SystemDiskDataPath string `yaml:"systemDiskDataPath,omitempty" json:"systemDiskDataPath,omitempty"`
	// Leave the installed Helm release's values and the Settings they set as they are while
	// the installed chart is longhorn.version: a release installed by hand and adopted by
	// talforge import. The next upgrade renders talforge's values (longhorn.values keeps the
	// adopted ones), and plan shows the difference before it happens.
	KeepReleaseValues bool `yaml:"keepReleaseValues,omitempty" json:"keepReleaseValues,omitempty"`
}

// LonghornBackup configures the default backup target.
type LonghornBackup struct {
	// S3 URL s3://bucket@region/[path/]. Must end with '/'.
	Target string `yaml:"target" json:"target"`
	// SOPS-encrypted YAML with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (optional
	// AWS_ENDPOINTS, AWS_CERT, VIRTUAL_HOSTED_STYLE), inside the project root (or externalDirs).
	CredentialsFile string `yaml:"credentialsFile" json:"credentialsFile"`
	// Name of the Secret created in longhorn-system (default longhorn-backup-credentials).
	CredentialSecret string `yaml:"credentialSecret,omitempty" json:"credentialSecret,omitempty"`
	// How often Longhorn polls the backup store, as a duration (default 5m; 0 disables polling).
	PollInterval string `yaml:"pollInterval,omitempty" json:"pollInterval,omitempty"`
	// Longhorn RecurringJobs.
	RecurringJobs []RecurringJob `yaml:"recurringJobs,omitempty" json:"recurringJobs,omitempty"`
}

// RecurringJob is a Longhorn RecurringJob.
type RecurringJob struct {
	// Job name (lowercase, digits, '-', '_', '.'; at most 40 characters).
	Name string `yaml:"name" json:"name"`
	// What the job does.
	Task string `yaml:"task" json:"task" jsonschema:"enum=backup,enum=backup-force-create,enum=snapshot,enum=snapshot-force-create,enum=snapshot-cleanup,enum=snapshot-delete,enum=filesystem-trim,enum=system-backup"`
	// Schedule: a 5-field cron expression, e.g. "0 3 * * *".
	Cron string `yaml:"cron" json:"cron"`
	// How many snapshots/backups to keep.
	Retain int `yaml:"retain,omitempty" json:"retain,omitempty"`
	// How many volumes the job processes at once (default 1).
	Concurrency int `yaml:"concurrency,omitempty" json:"concurrency,omitempty"`
	// Recurring-job groups this job belongs to (volumes opt in per group).
	Groups []string `yaml:"groups,omitempty" json:"groups,omitempty"`
	// Labels added to the created snapshots/backups.
	Labels map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	// Task parameters, e.g. full-backup-interval.
	Parameters map[string]string `yaml:"parameters,omitempty" json:"parameters,omitempty"`
}

// StorageClass is a Longhorn StorageClass.
type StorageClass struct {
	// StorageClass name.
	Name string `yaml:"name" json:"name"`
	// Delete (default) or Retain.
	ReclaimPolicy string `yaml:"reclaimPolicy,omitempty" json:"reclaimPolicy,omitempty" jsonschema:"enum=Delete,enum=Retain"`
	// Replicas per volume (default longhorn.replicaCount).
	Replicas int `yaml:"replicas,omitempty" json:"replicas,omitempty"`
	// RecurringJobs (by name) every volume of this class gets.
	RecurringJobs []string `yaml:"recurringJobs,omitempty" json:"recurringJobs,omitempty"`
	// RecurringJob groups every volume of this class joins.
	RecurringJobGroups []string `yaml:"recurringJobGroups,omitempty" json:"recurringJobGroups,omitempty"`
	// Filesystem (default ext4).
	FSType string `yaml:"fsType,omitempty" json:"fsType,omitempty" jsonschema:"enum=ext4,enum=xfs"`
	// disabled (default), best-effort or strict-local.
	DataLocality string `yaml:"dataLocality,omitempty" json:"dataLocality,omitempty" jsonschema:"enum=disabled,enum=best-effort,enum=strict-local"`
	// The class was made by hand and found by talforge import: talforge takes it over by
	// labelling it, and never re-creates it (a StorageClass cannot change): a difference from
	// the profile is an error to fix in the profile.
	Adopted bool `yaml:"adopted,omitempty" json:"adopted,omitempty"`
}

// Volume is data the cluster owns, declared by the PersistentVolumeClaim that holds it. On a
// live cluster the Longhorn volume behind the claim is found through the claim
// (PVC spec.volumeName → PV → CSI volumeHandle): a dynamically provisioned volume is named
// pvc-<uid> and changes with every new claim, so the claim is what identifies the data.
// Longhorn records the claim in every backup of a bound volume (the backup label
// KubernetesStatus), which is how `talforge rebuild` finds the claim's latest backup.
type Volume struct {
	// Namespace of the PersistentVolumeClaim.
	Namespace string `yaml:"namespace" json:"namespace"`
	// PersistentVolumeClaim name (required unless name is given; then it defaults to name).
	Claim string `yaml:"claim,omitempty" json:"claim,omitempty"`
	// Longhorn volume name, only for a statically provisioned volume whose name you chose
	// (a PV with that volumeHandle). Leave it out for volumes a StorageClass provisions.
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Size, e.g. 1Gi.
	Size string `yaml:"size" json:"size"`
	// StorageClass of the PV/PVC (default longhorn).
	StorageClass string `yaml:"storageClass,omitempty" json:"storageClass,omitempty"`
	// RecurringJob groups the volume joins (label recurring-job-group.longhorn.io/<group>).
	RecurringJobGroups []string `yaml:"recurringJobGroups,omitempty" json:"recurringJobGroups,omitempty"`
	// RecurringJobs the volume gets (label recurring-job.longhorn.io/<job>).
	RecurringJobs []string `yaml:"recurringJobs,omitempty" json:"recurringJobs,omitempty"`
}
