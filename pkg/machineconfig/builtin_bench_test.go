package machineconfig

import (
	"testing"

	"github.com/talforge/talforge/pkg/schematic"
)

// BenchmarkBuiltinPatches measures building one node's patch list (the built-in documents plus
// the already parsed user patches), per config contract shape.
func BenchmarkBuiltinPatches(b *testing.B) {
	for _, tc := range contracts {
		c := loadProfile(b, tc.talos, tc.k8s, "", nil)

		img, err := schematic.ForCluster(c)
		if err != nil {
			b.Fatal(err)
		}

		g, err := New(b.Context(), c, img, bundleFor(b, c.Talos.Version))
		if err != nil {
			b.Fatal(err)
		}

		for _, name := range []string{"cp-1", "w-1"} {
			n, _ := c.Node(name)

			b.Run(tc.talos+"/"+name, func(b *testing.B) {
				b.ReportAllocs()

				for b.Loop() {
					if _, err := g.patchesFor(n); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
