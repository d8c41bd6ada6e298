//lint:file-ignore SA1019 this file builds the v1alpha1 forms machinery deprecates in favour of documents, for the contracts that know only them

package machineconfig

import (
	"slices"

	configconfig "github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"

	"github.com/talforge/talforge/pkg/profile"
)

// defaultRoute is the destination of the node's one route in the v1alpha1 form, which (unlike
// LinkConfig's routes) has no implicit default.
const defaultRoute = "0.0.0.0/0"

// legacyNetwork builds the network as v1alpha1 machine.network (Talos 1.10 and 1.11, which do
// not know the network documents).
func (g *Generator) legacyNetwork(n profile.Node) ([]configconfig.Document, error) {
	c := g.cluster

	// Parsed only to reject what the profile would have rejected; v1alpha1 keeps strings.
	if _, _, err := g.nodeAddresses(n); err != nil {
		return nil, err
	}

	dev := &v1alpha1.Device{
		DeviceAddresses: []string{c.NodeCIDR(n)},
		DeviceRoutes:    []*v1alpha1.Route{{RouteNetwork: defaultRoute, RouteGateway: c.Network.Gateway}},
		DeviceMTU:       c.Network.MTU,
	}

	if n.Interface != "" {
		dev.DeviceInterface = n.Interface
	} else {
		dev.DeviceSelector = &v1alpha1.NetworkDeviceSelector{NetworkDeviceHardwareAddress: n.MAC}
	}

	if c.Network.VIP != "" && n.Role == profile.RoleControlPlane {
		dev.DeviceVIPConfig = &v1alpha1.DeviceVIPConfig{SharedIP: c.Network.VIP}
	}

	// Copies of the profile's lists: the node's config must not share their arrays, and
	// machinery's merge hands a patch's values to the config as they are wherever the config has
	// none yet (config/merge/merge.go).
	nc := &v1alpha1.NetworkConfig{
		NetworkHostname:   n.Name,
		NameServers:       slices.Clone(c.Network.Nameservers),
		Searches:          slices.Clone(c.Network.SearchDomains),
		NetworkInterfaces: v1alpha1.NetworkDeviceList{dev},
	}

	return []configconfig.Document{&v1alpha1.Config{MachineConfig: &v1alpha1.MachineConfig{MachineNetwork: nc}}}, nil
}

// legacyLonghornMachine is the v1alpha1 part of the Longhorn patch before Talos 1.14: the node
// labels, and the data path as a shared, writable bind in the kubelet, as Longhorn's Talos guide
// asks (1.14 bind-mounts /var/mnt into the kubelet itself and has no extraMounts).
func legacyLonghornMachine(labels map[string]string) *v1alpha1.Config {
	return &v1alpha1.Config{MachineConfig: &v1alpha1.MachineConfig{
		MachineNodeLabels: labels,
		MachineKubelet: &v1alpha1.KubeletConfig{
			KubeletExtraMounts: []v1alpha1.ExtraMount{{
				Destination: profile.LonghornDataPath,
				Type:        "bind",
				Source:      profile.LonghornDataPath,
				Options:     []string{"bind", "rshared", "rw"},
			}},
		},
	}}
}
