package profile

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
)

// LonghornDiskSerial is the serial number of every node's Longhorn data disk. Proxmox sets it
// on scsi1 and Talos' UserVolumeConfig selects the disk by it, so the data disk is found by
// identity, never by a device name that can change between boots. It only has to be unique
// within one VM; PVE allows at most 20 characters.
const LonghornDiskSerial = "talforge-longhorn"

// LonghornVolumeName is the Talos user volume on the Longhorn data disk, mounted at
// /var/mnt/<name>.
const LonghornVolumeName = "longhorn"

// LonghornDataPath is where Longhorn keeps replicas: the Talos user volume on the node's
// Longhorn data disk (Talos mounts user volumes at /var/mnt/<name>). Not on the system disk,
// which a Talos reset wipes.
const LonghornDataPath = "/var/mnt/" + LonghornVolumeName

// DeriveMAC returns the MAC address talforge assigns to a node's NIC: a locally administered
// unicast address derived from the cluster and node names, so a rebuilt VM gets the same MAC
// (and the same network config) as the one it replaces.
func DeriveMAC(cluster, node string) string {
	sum := sha256.Sum256([]byte("talforge/mac/" + cluster + "/" + node))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&0xfc | 0x02 // locally administered, unicast

	return mac.String()
}

// ControlPlanes returns the control-plane nodes in profile order.
func (c *Cluster) ControlPlanes() []Node {
	return c.nodesWhere(func(n Node) bool { return n.Role == RoleControlPlane })
}

// Workers returns the worker nodes in profile order.
func (c *Cluster) Workers() []Node {
	return c.nodesWhere(func(n Node) bool { return n.Role == RoleWorker })
}

// LonghornNodes returns the nodes that have a Longhorn data disk.
func (c *Cluster) LonghornNodes() []Node {
	if c.Longhorn != nil && c.Longhorn.SystemDiskDataPath != "" {
		return c.Nodes // Longhorn's default disk on every node, on its system disk
	}

	return c.nodesWhere(Node.HasLonghornDisk)
}

// DataPath returns where Longhorn keeps replicas on a node: the user volume on the
// dedicated data disk, or the system-disk path an adopted cluster keeps.
func (l *Longhorn) DataPath() string {
	if l != nil && l.SystemDiskDataPath != "" {
		return l.SystemDiskDataPath
	}

	return LonghornDataPath
}

func (c *Cluster) nodesWhere(keep func(Node) bool) []Node {
	var out []Node

	for _, n := range c.Nodes {
		if keep(n) {
			out = append(out, n)
		}
	}

	return out
}

// LonghornNodesWithDisk are the nodes that get a Longhorn data disk.
func (c *Cluster) LonghornNodesWithDisk() []Node { return c.nodesWhere(Node.HasLonghornDisk) }

// HasLonghornDisk reports whether the node gets a Longhorn data disk.
func (n Node) HasLonghornDisk() bool { return n.LonghornDisk != "" }

// IsAdopted reports whether the node's VM was made by hand and adopted (nodes[].adopted).
func (n Node) IsAdopted() bool { return n.Adopted != nil }

// Node returns the node with the given name.
func (c *Cluster) Node(name string) (Node, bool) {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n, true
		}
	}

	return Node{}, false
}

// PrefixLen returns the prefix length of network.cidr (0 if it does not parse).
func (c *Cluster) PrefixLen() int {
	p, err := netip.ParsePrefix(c.Network.CIDR)
	if err != nil {
		return 0
	}

	return p.Bits()
}

// NodeCIDR returns the node's address with the network prefix length, e.g. 192.168.1.51/24.
func (c *Cluster) NodeCIDR(n Node) string { return fmt.Sprintf("%s/%d", n.IP, c.PrefixLen()) }

// ControlPlaneEndpoint returns the Kubernetes API endpoint URL: talos.endpoint if set, else the
// VIP, else the first control plane, on port 6443.
func (c *Cluster) ControlPlaneEndpoint() string {
	if c.Talos.Endpoint != "" {
		return c.Talos.Endpoint
	}

	host := c.Network.VIP
	if host == "" {
		if cps := c.ControlPlanes(); len(cps) > 0 {
			host = cps[0].IP
		}
	}

	return "https://" + net.JoinHostPort(host, "6443")
}

// ControlPlaneIPs returns the control-plane node IPs in profile order: the Talos API endpoints.
func (c *Cluster) ControlPlaneIPs() []string {
	var ips []string
	for _, n := range c.ControlPlanes() {
		ips = append(ips, n.IP)
	}

	return ips
}

// File returns the profile's path as given to Load.
func (c *Cluster) File() string {
	if c.src == nil {
		return ""
	}

	return c.src.file
}

// Root returns the project root: relative paths in the profile (patches, credential files)
// are resolved against it, and clusters/<name>/ is written under it. It is the parent of the
// profiles/ directory when the profile lives in one, else the profile's own directory.
func (c *Cluster) Root() string {
	if c.src == nil {
		return "."
	}

	return c.src.root
}

// Resolve returns a profile-relative path resolved against the project root.
func (c *Cluster) Resolve(path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}

	return filepath.Join(c.Root(), path)
}

// OutputDir returns clusters/<name> under the project root.
func (c *Cluster) OutputDir() string {
	return filepath.Join(c.Root(), "clusters", c.Metadata.Name)
}

func projectRoot(profilePath string) string {
	dir := filepath.Dir(profilePath)
	if filepath.Base(dir) == "profiles" {
		return filepath.Dir(dir)
	}

	return dir
}
