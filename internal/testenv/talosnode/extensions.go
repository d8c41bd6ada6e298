// The system extensions a node reports: what Image Factory baked into its install image.

package talosnode

import (
	"context"
	"strconv"
	"strings"

	"github.com/cosi-project/runtime/pkg/resource"
	factory "github.com/siderolabs/image-factory/pkg/schematic"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/extensions"
	"github.com/siderolabs/talos/pkg/machinery/imager/quirks"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
)

// imageFactoryAuthor is how the schematic extension names its author: Image Factory's own
// constants.ImageFactoryName + " (" + baseURL + ")" (image-factory internal/artifacts/schematic.go).
const imageFactoryAuthor = "Image Factory (https://factory.talos.dev)"

// RegisterSchematic makes s known to this cluster's Image Factory: a node whose install image
// is built from it (<factory>/[<platform>-]installer/<ID>:<tag>) reports its extensions. It
// returns the schematic's ID.
func (c *Cluster) RegisterSchematic(s factory.Schematic) (string, error) {
	id, err := s.ID()
	if err != nil {
		return "", err
	}

	c.mu.Lock()
	defer c.mu.Unlock()

	if c.schematics == nil {
		c.schematics = map[string]factory.Schematic{}
	}

	c.schematics[id] = s

	return id, nil
}

func (c *Cluster) schematic(id string) (factory.Schematic, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()

	s, ok := c.schematics[id]

	return s, ok
}

// extensionStatuses are the ExtensionStatus resources Talos' ExtensionStatusController
// publishes for an image from Image Factory: one per official extension, in the schematic's
// order, then the virtual "schematic" extension, whose version is the schematic ID and whose
// extraInfo holds the schematic itself on versions that support overlays
// (image-factory internal/artifacts/schematic.go schematicExtension). IDs are the layer
// indexes. An image the factory does not know reports none.
func (n *Node) extensionStatusesLocked() []*runtime.ExtensionStatus {
	if n.active == nil {
		return nil
	}

	id := schematicOfImage(installImage(n.active.provider))
	s, ok := n.cluster.schematic(id)

	if !ok {
		return nil
	}

	var layers []extensions.Layer

	for _, name := range s.Customization.SystemExtensions.OfficialExtensions {
		short := name[strings.LastIndex(name, "/")+1:]
		layers = append(layers, extensions.Layer{
			Image: short + ".sqsh",
			Metadata: extensions.Metadata{
				Name: short, Version: "v1.0.0", Author: "Sidero Labs", Description: "emulated " + name,
				Compatibility: extensions.Compatibility{Talos: extensions.Constraint{Version: ">= v1.0.0"}},
			},
		})
	}

	meta := extensions.Metadata{
		Name: "schematic", Version: id, Author: imageFactoryAuthor,
		Description:   "Virtual extension which specifies the schematic of the image built with schematic.",
		Compatibility: extensions.Compatibility{Talos: extensions.Constraint{Version: ">= 1.0.0"}},
	}

	if quirks.New(n.version).SupportsOverlay() {
		if data, err := s.Marshal(); err == nil {
			meta.ExtraInfo = string(data)
		}
	}

	layers = append(layers, extensions.Layer{Image: "schematic.sqsh", Metadata: meta})

	out := make([]*runtime.ExtensionStatus, 0, len(layers))

	for i, l := range layers {
		r := runtime.NewExtensionStatus(runtime.NamespaceName, strconv.Itoa(i))
		*r.TypedSpec() = l
		out = append(out, r)
	}

	return out
}

// schematicOfImage is the schematic ID of an Image Factory installer image, "" otherwise.
func schematicOfImage(image string) string {
	ref, _, ok := strings.Cut(image, ":")
	if !ok {
		return ""
	}

	parts := strings.Split(ref, "/")
	if len(parts) != 3 || (parts[1] != "installer" && !strings.HasSuffix(parts[1], "-installer")) {
		return ""
	}

	return parts[2]
}

// publishExtensionsLocked replaces the published ExtensionStatuses with the active image's.
func (n *Node) publishExtensionsLocked(ctx context.Context) {
	want := n.extensionStatusesLocked()

	old, err := n.st.List(ctx, resource.NewMetadata(runtime.NamespaceName, runtime.ExtensionStatusType, "", resource.VersionUndefined))
	if err != nil {
		n.log("list extensions: %v", err)

		return
	}

	for _, r := range old.Items {
		if id, _ := strconv.Atoi(r.Metadata().ID()); id >= len(want) {
			if err := n.st.Destroy(ctx, r.Metadata()); err != nil {
				n.log("remove extension %s: %v", r.Metadata().ID(), err)
			}
		}
	}

	for _, r := range want {
		if err := putResource(ctx, n.st, r); err != nil {
			n.log("publish %s: %v", r.Metadata().Type(), err)
		}
	}
}

// installImage is the image a config installs from: Talos ≥ 1.14's UnattendedInstallConfig,
// else machine.install.image.
func installImage(cfg config.Provider) string {
	if u := cfg.UnattendedInstallConfig(); u != nil && u.InstallerImage() != "" {
		return u.InstallerImage()
	}

	if m := cfg.Machine(); m != nil && m.Install() != nil {
		return m.Install().Image()
	}

	return ""
}
