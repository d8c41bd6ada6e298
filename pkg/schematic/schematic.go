package schematic

import (
	"fmt"
	"slices"

	factory "github.com/siderolabs/image-factory/pkg/schematic"
	"github.com/siderolabs/talos/pkg/machinery/imager/quirks"

	"github.com/talforge/talforge/pkg/profile"
)

// Extensions talforge adds on its own.
const (
	ISCSITools     = "siderolabs/iscsi-tools"
	UtilLinuxTools = "siderolabs/util-linux-tools"
	QemuGuestAgent = "siderolabs/qemu-guest-agent"
)

// Platforms: Proxmox VMs boot the nocloud image so that Talos reads the static IP from the
// PVE cloud-init drive; the nocloud installer keeps reading it after install.
const (
	PlatformNocloud = "nocloud"
	PlatformMetal   = "metal"
)

// Arch is the only architecture talforge builds images for.
const Arch = "amd64"

// Image is a cluster's Talos image: schematic, ID and where to get it.
type Image struct {
	// Schematic is the Image Factory schematic.
	Schematic factory.Schematic
	// ID is the schematic ID (sha256 of its canonical YAML).
	ID string
	// Factory is the Image Factory host.
	Factory string
	// TalosVersion is the Talos version with a leading "v".
	TalosVersion string
	// Platform is nocloud (Proxmox) or metal.
	Platform string
}

// ForCluster returns the image a cluster's nodes boot and install.
func ForCluster(c *profile.Cluster) (*Image, error) {
	exts := slices.Clone(c.Talos.Extensions)

	if c.Longhorn != nil {
		exts = append(exts, ISCSITools, UtilLinuxTools)
	}

	platform := PlatformMetal
	if c.Proxmox != nil {
		platform = PlatformNocloud

		if c.Proxmox.QemuGuestAgent == nil || *c.Proxmox.QemuGuestAgent {
			exts = append(exts, QemuGuestAgent)
		}
	}

	slices.Sort(exts)
	exts = slices.Compact(exts)

	s := factory.Schematic{
		Customization: factory.Customization{
			ExtraKernelArgs:  slices.Clone(c.Talos.KernelArgs),
			SystemExtensions: factory.SystemExtensions{OfficialExtensions: exts},
		},
	}

	id, err := s.ID()
	if err != nil {
		return nil, fmt.Errorf("schematic ID: %w", err)
	}

	return &Image{Schematic: s, ID: id, Factory: c.Talos.ImageFactory, TalosVersion: c.Talos.Version, Platform: platform}, nil
}

// Extensions returns the schematic's official extensions, sorted.
func (i *Image) Extensions() []string {
	return i.Schematic.Customization.SystemExtensions.OfficialExtensions
}

// HasExtension reports whether the image carries an extension.
func (i *Image) HasExtension(name string) bool {
	_, found := slices.BinarySearch(i.Extensions(), name)

	return found
}

// YAML returns the canonical schematic document whose sha256 is the ID.
func (i *Image) YAML() ([]byte, error) { return i.Schematic.Marshal() }

// InstallerImage returns the installer image reference. Talos ≥ 1.10 has platform installers
// (nocloud-installer keeps the nocloud platform, and with it the static IP, after install);
// older versions only have the generic installer.
func (i *Image) InstallerImage() string {
	if quirks.New(i.TalosVersion).SupportsUnifiedInstaller() {
		return fmt.Sprintf("%s/%s-installer/%s:%s", i.Factory, i.Platform, i.ID, i.TalosVersion)
	}

	return fmt.Sprintf("%s/installer/%s:%s", i.Factory, i.ID, i.TalosVersion)
}

// ISOURL returns the boot ISO's download URL.
func (i *Image) ISOURL() string {
	return fmt.Sprintf("https://%s/image/%s/%s/%s-%s.iso", i.Factory, i.ID, i.TalosVersion, i.Platform, Arch)
}

// ISOFileName is the file name the boot ISO gets in Proxmox ISO storage: it encodes the
// version, platform and schematic so that a changed schematic is a new file, never a stale hit.
func (i *Image) ISOFileName() string {
	return fmt.Sprintf("talos-%s-%s-%s-%s.iso", i.TalosVersion, i.Platform, Arch, i.ID[:16])
}
