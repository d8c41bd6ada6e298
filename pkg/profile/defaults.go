package profile

// Pinned defaults. Every default talforge applies to a profile is here and nowhere else.
const (
	// DefaultTalosVersion is the Talos release talforge targets when a profile names none:
	// the release of the machinery module talforge is built with.
	DefaultTalosVersion = "v1.14.1"
	// DefaultLonghornVersion is the newest Longhorn chart in the supported range.
	DefaultLonghornVersion = "1.11.3"
	// DefaultImageFactory serves schematics, boot ISOs and installer images.
	DefaultImageFactory = "factory.talos.dev"
	// DefaultInstallDisk is scsi0 on Proxmox's virtio-scsi-pci controller.
	DefaultInstallDisk = "/dev/sda"
	// DefaultLonghornRepoURL is the official Longhorn chart repository.
	DefaultLonghornRepoURL = "https://charts.longhorn.io"
	// DefaultLonghornReplicaCount is Longhorn's own default, capped by the nodes that have a disk.
	DefaultLonghornReplicaCount = 3
	// DefaultBackupCredentialSecret is the Secret talforge creates in longhorn-system.
	DefaultBackupCredentialSecret = "longhorn-backup-credentials"
	// DefaultBackupPollInterval is Longhorn's default backup-store poll interval.
	DefaultBackupPollInterval = "5m"
	// DefaultRecurringJobConcurrency is explicit because Longhorn treats 0 as 10.
	DefaultRecurringJobConcurrency = 1
	// DefaultStorageClassFSType is Longhorn's default filesystem.
	DefaultStorageClassFSType = "ext4"
	// DefaultReclaimPolicy matches Kubernetes' default.
	DefaultReclaimPolicy = "Delete"
	// DefaultVolumeStorageClass is the StorageClass the Longhorn chart creates.
	DefaultVolumeStorageClass = "longhorn"

	DefaultISOStorage = "local"
	DefaultBridge     = "vmbr0"
	DefaultCPU        = "host"
	DefaultCores      = 2
	// DefaultMemory (MiB) is Talos' recommended minimum for a control plane (4 GiB).
	DefaultMemory = 4096
	DefaultDisk   = "20G"
)

// DefaultKubernetesVersions maps a Talos minor release to the Kubernetes version that release
// shipped as its default (Talos' constants.DefaultKubernetesVersion at each release).
var defaultKubernetesVersions = map[string]string{
	"1.10": "v1.33.0",
	"1.11": "v1.34.0",
	"1.12": "v1.35.0",
	"1.13": "v1.36.0",
	"1.14": "v1.37.0",
}

// DefaultKubernetesVersion returns the Kubernetes version talforge uses with a Talos version
// when the profile names none, or "" for an unsupported Talos version.
func DefaultKubernetesVersion(talosVersion string) string {
	v, err := parseVersion(talosVersion)
	if err != nil {
		return ""
	}

	return defaultKubernetesVersions[v.MajorMinor()]
}

// supportedTalos is the supported Talos range (inclusive minor bounds). The Longhorn range
// follows from longhornReleases (domain.go).
var supportedTalos = versionRange{min: minor{1, 10}, max: minor{1, 14}}

// applyDefaults fills every unset field that has a default. It never overrides a set value.
func (c *Cluster) applyDefaults() {
	t := &c.Talos
	if t.Version == "" {
		t.Version = DefaultTalosVersion
	}

	if t.Kubernetes == "" {
		t.Kubernetes = DefaultKubernetesVersion(t.Version)
	}

	if t.ImageFactory == "" {
		t.ImageFactory = DefaultImageFactory
	}

	if t.InstallDisk == "" {
		t.InstallDisk = DefaultInstallDisk
	}

	if p := c.Proxmox; p != nil {
		if p.ISOStorage == "" {
			p.ISOStorage = DefaultISOStorage
		}

		if p.Bridge == "" {
			p.Bridge = DefaultBridge
		}

		if p.CPU == "" {
			p.CPU = DefaultCPU
		}

		if p.QemuGuestAgent == nil {
			on := true
			p.QemuGuestAgent = &on
		}

		if p.Defaults.Cores == 0 {
			p.Defaults.Cores = DefaultCores
		}

		if p.Defaults.Memory == 0 {
			p.Defaults.Memory = DefaultMemory
		}

		if p.Defaults.Disk == "" {
			p.Defaults.Disk = DefaultDisk
		}
	}

	for i := range c.Nodes {
		n := &c.Nodes[i]
		if n.InstallDisk == "" {
			n.InstallDisk = t.InstallDisk
		}

		if n.Interface == "" {
			n.Interface = c.Network.Interface
		}

		if c.Proxmox != nil {
			d := c.Proxmox.Defaults
			if n.PVENode == "" {
				n.PVENode = c.Proxmox.Node
			}

			if n.Cores == 0 {
				n.Cores = d.Cores
			}

			if n.Memory == 0 {
				n.Memory = d.Memory
			}

			if n.Disk == "" {
				n.Disk = d.Disk
			}

			if n.LonghornDisk == "" {
				n.LonghornDisk = d.LonghornDisk
			}
		}

		if n.MAC == "" {
			n.MAC = DeriveMAC(c.Metadata.Name, n.Name)
		}
	}

	if l := c.Longhorn; l != nil {
		if l.Version == "" {
			l.Version = DefaultLonghornVersion
		}

		if l.RepoURL == "" {
			l.RepoURL = DefaultLonghornRepoURL
		}

		if l.ReplicaCount == 0 {
			l.ReplicaCount = min(DefaultLonghornReplicaCount, max(1, len(c.LonghornNodes())))
		}

		if b := l.Backup; b != nil {
			if b.CredentialSecret == "" {
				b.CredentialSecret = DefaultBackupCredentialSecret
			}

			if b.PollInterval == "" {
				b.PollInterval = DefaultBackupPollInterval
			}

			for i := range b.RecurringJobs {
				if b.RecurringJobs[i].Concurrency == 0 {
					b.RecurringJobs[i].Concurrency = DefaultRecurringJobConcurrency
				}
			}
		}

		for i := range l.StorageClasses {
			sc := &l.StorageClasses[i]
			if sc.ReclaimPolicy == "" {
				sc.ReclaimPolicy = DefaultReclaimPolicy
			}

			if sc.Replicas == 0 {
				sc.Replicas = l.ReplicaCount
			}

			if sc.FSType == "" {
				sc.FSType = DefaultStorageClassFSType
			}

			if sc.DataLocality == "" {
				sc.DataLocality = "disabled"
			}
		}

		for i := range l.Volumes {
			v := &l.Volumes[i]
			if v.Claim == "" {
				v.Claim = v.Name
			}

			if v.StorageClass == "" {
				v.StorageClass = DefaultVolumeStorageClass
			}
		}
	}
}
