package profile_test

import (
	"fmt"
	"testing"

	"github.com/talforge/talforge/internal/testenv/bigprofile"
	"github.com/talforge/talforge/pkg/profile"
)

// BenchmarkParse holds what loading a large profile costs (issue 16: a 1,000-node generate in
// well under a second): the strict structural walk and the node checks run once per node.
func BenchmarkParse(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			data := []byte(bigprofile.Text(n))
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
