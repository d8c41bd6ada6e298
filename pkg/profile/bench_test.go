package profile_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/talforge/talforge/pkg/profile"
)

// BenchmarkParse holds what loading a large profile costs (issue 16: a 1,000-node generate in
// well under a second): the strict structural walk and the node checks run once per node.
func BenchmarkParse(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			data := []byte(bigProfile(n))
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()

			for b.Loop() {
				c, err := profile.Parse("profiles/big.yaml", data)
				if err != nil {
					b.Fatal(err)
				}

				if len(c.Nodes) != n {
					b.Fatalf("%d nodes, want %d", len(c.Nodes), n)
				}
			}
		})
	}
}

func bigProfile(n int) string {
	var b strings.Builder

	fmt.Fprintf(&b, `apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: big%d}
talos: {version: v1.14.1}
network: {cidr: 10.0.0.0/16, gateway: 10.0.0.1, nameservers: [10.0.0.1], vip: 10.0.0.5}
proxmox: {endpoint: "https://pve:8006/api2/json", node: pve, storage: local-lvm}
longhorn: {replicaCount: 3}
nodes:
`, n)

	for i := range n {
		role := "worker"
		if i < 3 {
			role = "controlplane"
		}

		fmt.Fprintf(&b, "  - {name: n%d, role: %s, ip: 10.0.%d.%d, longhornDisk: 100G}\n", i, role, 10+i/250, i%250+2)
	}

	return b.String()
}
