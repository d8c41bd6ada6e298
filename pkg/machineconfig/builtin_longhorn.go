package machineconfig

import (
	"fmt"

	"github.com/siderolabs/talos/pkg/machinery/cel"
	"github.com/siderolabs/talos/pkg/machinery/cel/celenv"
	configconfig "github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/config/types/block"
	"github.com/siderolabs/talos/pkg/machinery/config/types/k8s"
	blockres "github.com/siderolabs/talos/pkg/machinery/resources/block"

	"github.com/talforge/talforge/pkg/profile"
)

// longhornMinSize is the smallest disk the user volume accepts; the volume then grows to fill
// the disk, whatever size the profile gave it.
const longhornMinSize = "1GiB"

// longhornDocuments puts a node's Longhorn data disk under Talos as the user volume "longhorn"
// (mounted at /var/mnt/longhorn), selected by the serial talforge gives the disk, and labels
// the node so Longhorn creates its default disk there. They are the same for every such node
// and built from constants only.
func (g *Generator) longhornDocuments() ([]configconfig.Document, error) {
	// Never the system disk: `talosctl reset` wipes the whole system disk, user volumes on it
	// included (facts-longhorn-talos.md §4.2, talosctl reset --wipe-mode all).
	sel, err := celBool(fmt.Sprintf("disk.serial == %q && !system_disk", profile.LonghornDiskSerial), celenv.DiskLocator(), (*cel.Expression).ParseBool)
	if err != nil {
		return nil, fmt.Errorf("user volume for Longhorn: %w", err)
	}

	minSize, err := byteSize(longhornMinSize)
	if err != nil {
		return nil, fmt.Errorf("user volume for Longhorn: %w", err)
	}

	uv := block.NewUserVolumeConfigV1Alpha1()
	uv.MetaName = profile.LonghornVolumeName
	uv.ProvisioningSpec.DiskSelectorSpec.Match = sel
	uv.ProvisioningSpec.ProvisioningMinSize = minSize
	uv.ProvisioningSpec.ProvisioningGrow = new(true)
	uv.FilesystemSpec.FilesystemType = blockres.FilesystemTypeXFS

	labels := map[string]string{LonghornNodeLabel: "true"}

	if g.contract.MultidocKubernetesConfigSupported() {
		// Talos ≥ 1.14 bind-mounts /var/mnt into the kubelet itself and has no extraMounts.
		node := k8s.NewKubeNodeConfigV1Alpha1()
		node.LabelsConfig = labels

		return []configconfig.Document{uv, node}, nil
	}

	return []configconfig.Document{uv, legacyLonghornMachine(labels)}, nil
}

// byteSize parses a size the way machinery does when it loads one from YAML, keeping the text
// ("1GiB") that the config encodes (block.ByteSize.MarshalText).
func byteSize(s string) (block.ByteSize, error) {
	var bs block.ByteSize

	if err := bs.UnmarshalText([]byte(s)); err != nil {
		return block.ByteSize{}, fmt.Errorf("size %q: %w", s, err)
	}

	return bs, nil
}
