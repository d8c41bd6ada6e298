package adopt

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/cosi-project/runtime/pkg/safe"
	factory "github.com/siderolabs/image-factory/pkg/schematic"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"

	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/schematic"
)

// reportedSchematic is what a node says about its image: Image Factory adds a virtual
// extension named "schematic" whose version is the schematic ID and, since Talos 1.7, whose
// extraInfo is the schematic document (image-factory internal/artifacts/schematic.go).
type reportedSchematic struct {
	id string
	// doc is the schematic, nil when the node's Talos is too old to carry it.
	doc *factory.Schematic
	// extensions are the names of the other extensions the node runs.
	extensions []string
}

// readSchematic reads the node's ExtensionStatuses. A node whose image Image Factory did not
// build reports no schematic: nil, no error.
func readSchematic(ctx context.Context, c *client.Client) (*reportedSchematic, error) {
	list, err := safe.StateListAll[*runtime.ExtensionStatus](ctx, c.COSI)
	if err != nil {
		return nil, err
	}

	var rs *reportedSchematic

	var names []string

	for ext := range list.All() {
		md := ext.TypedSpec().Metadata
		if md.Name != constants.ImageFactorySchematicExtensionName {
			names = append(names, md.Name)

			continue
		}

		rs = &reportedSchematic{id: md.Version}

		if md.ExtraInfo != "" {
			doc, err := factory.Unmarshal([]byte(md.ExtraInfo))
			if err != nil {
				return nil, fmt.Errorf("the schematic extension's extraInfo: %w", err)
			}

			if id, err := doc.ID(); err != nil || id != md.Version {
				return nil, fmt.Errorf("the schematic the node reports does not hash to its ID %s", md.Version)
			}

			rs.doc = doc
		}
	}

	if rs != nil {
		slices.Sort(names)
		rs.extensions = names
	}

	return rs, nil
}

// talosOnly reports whether the schematic says no more than the profile can: official
// extensions and extra kernel arguments.
func talosOnly(s *factory.Schematic) bool {
	bare := *s
	bare.Customization.ExtraKernelArgs = nil
	bare.Customization.SystemExtensions.OfficialExtensions = nil

	id, err := bare.ID()

	return err == nil && emptySchematic(id)
}

// liveSchematic is the schematic a node's install image was built from, as far as talforge
// can know it: the one the node reports, when its install image names the same ID, or the
// empty schematic, whose ID is well known.
func liveSchematic(imageID string, rs *reportedSchematic) (*factory.Schematic, []string) {
	switch {
	case rs == nil && emptySchematic(imageID):
		return &factory.Schematic{}, nil
	case rs == nil:
		return nil, []string{fmt.Sprintf("install image schematic %s: the node reports no schematic, so its extensions are unknown; the image is kept in a patch "+
			"(list them under talos.extensions to let talforge build the image)", imageID)}
	case rs.id != imageID:
		return nil, []string{fmt.Sprintf("the node runs schematic %s but its install image names %s (an upgrade not finished?): the image is kept in a patch", rs.id, imageID)}
	case rs.doc == nil:
		return nil, []string{fmt.Sprintf("the node runs schematic %s with the extensions %s, but its Talos does not report the schematic itself: "+
			"the image is kept in a patch (list them under talos.extensions to let talforge build the image)", rs.id, strings.Join(rs.extensions, ", "))}
	case !talosOnly(rs.doc):
		return nil, []string{fmt.Sprintf("schematic %s customises more than extensions and kernel arguments: the image is kept in a patch", rs.id)}
	}

	return rs.doc, nil
}

// fitSchematic makes the whole profile (Proxmox and Longhorn blocks included, which make
// talforge add the guest agent, iscsi-tools and util-linux-tools by itself) say the live
// schematic: talos.extensions lists the live extensions talforge would not add, kernelArgs
// the live ones, and a live image without the guest agent turns proxmox.qemuGuestAgent off.
// When no profile can say it (talforge would add an extension the image lacks), both are
// cleared and the install image stays in a patch.
func fitSchematic(c *profile.Cluster, live *factory.Schematic) []string {
	if live == nil {
		return nil
	}

	liveID, err := live.ID()
	if err != nil {
		return nil
	}

	liveExts := live.Customization.SystemExtensions.OfficialExtensions

	if c.Proxmox != nil && !slices.Contains(liveExts, schematic.QemuGuestAgent) {
		off := false
		c.Proxmox.QemuGuestAgent = &off
	}

	c.Talos.Extensions, c.Talos.KernelArgs = nil, slices.Clone(live.Customization.ExtraKernelArgs)

	img, err := schematic.ForCluster(c)
	if err != nil {
		return nil
	}

	added := img.Extensions()

	for _, e := range liveExts {
		if !slices.Contains(added, e) {
			c.Talos.Extensions = append(c.Talos.Extensions, e)
		}
	}

	if img, err = schematic.ForCluster(c); err == nil && img.ID == liveID {
		return nil
	}

	missing := slices.DeleteFunc(slices.Clone(added), func(e string) bool { return slices.Contains(liveExts, e) })
	c.Talos.Extensions, c.Talos.KernelArgs = nil, nil

	return []string{fmt.Sprintf("the nodes' image (schematic %s) lacks %s, which talforge adds for this profile: the install image is kept in a patch",
		liveID, strings.Join(missing, ", "))}
}

func emptySchematic(id string) bool {
	empty, err := (&factory.Schematic{}).ID()

	return err == nil && id == empty
}
