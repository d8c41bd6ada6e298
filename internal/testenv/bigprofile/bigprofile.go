// Package bigprofile writes cluster profiles of any size for benchmarks and scale tests, like
// the generator comparison in issue 16: 3 control planes behind a VIP, the rest workers, each
// with a static IP and a Longhorn disk.
package bigprofile

import (
	"fmt"
	"strings"
)

// Text is the profile of cluster bench<n> with n nodes; patches, when given, apply to every node.
func Text(n int, patches ...string) string {
	var b strings.Builder

	fmt.Fprintf(&b, `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: bench%d}
talos: {version: v1.14.1}
network: {cidr: 10.0.0.0/16, gateway: 10.0.0.1, nameservers: [10.0.0.1], vip: 10.0.0.5}
proxmox: {endpoint: "https://pve:8006/api2/json", node: pve, storage: local-lvm}
`, n)

	if len(patches) > 0 {
		fmt.Fprintf(&b, "patches: {all: [%s]}\n", strings.Join(patches, ", "))
	}

	b.WriteString("longhorn: {replicaCount: 3}\nnodes:\n")

	for i := range n {
		role := "worker"
		if i < 3 {
			role = "controlplane"
		}

		fmt.Fprintf(&b, "  - {name: n%d, role: %s, ip: 10.0.%d.%d, longhornDisk: 100G}\n", i, role, 10+i/250, i%250+2)
	}

	return b.String()
}
