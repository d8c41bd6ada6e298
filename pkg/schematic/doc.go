// Package schematic builds a cluster's Image Factory schematic (the system extensions and
// kernel arguments baked into its boot and install images), computes the schematic ID offline
// with image-factory's own code, and names the platform-correct installer image and boot ISO.
//
// The extension list is canonical — de-duplicated and sorted, as the Image Factory UI does —
// because the factory hashes the list in the order given: the same set in another order would
// be another schematic.
package schematic
