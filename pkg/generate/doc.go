// Package generate is talforge's main job: from a cluster profile to clusters/<name>/ — the
// SOPS-encrypted secrets bundle (created once, never replaced), every node's validated Talos
// machine config (secret fields encrypted), the talosconfig, the image schematic, the
// lockfile and whatever extra renderers add (Longhorn values and manifests, the IAM policy).
//
// Everything is rendered and checked in memory first; only when it all succeeds is anything
// written, so bad input never leaves a half-written directory. Unchanged files are not
// rewritten.
//
// A run holds the directory's run lock (pkg/runlock) throughout, completes or clears what a
// killed run left, checks the files against the lockfile's digests, and writes the next
// generation with the lockfile as its commit point (see package gitops): a kill at any moment
// leaves a whole set, which the next run trusts only where the digests say so. Only files the
// previous lockfile lists are ever removed, and --commit commits only the lockfile's files.
package generate
