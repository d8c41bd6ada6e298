// Package generate is talforge's main job: from a cluster profile to clusters/<name>/ — the
// SOPS-encrypted secrets bundle (created once, never replaced), every node's validated Talos
// machine config (secret fields encrypted), the talosconfig, the image schematic, the
// lockfile and whatever extra renderers add (Longhorn values and manifests, the IAM policy).
//
// Everything is rendered and checked in memory first; only when it all succeeds is anything
// written, so bad input never leaves a half-written directory. Unchanged files are not
// rewritten.
package generate
