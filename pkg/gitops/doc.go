// Package gitops writes a cluster's generated output (clusters/<name>/) so that it is safe and
// pleasant to keep in Git: atomic writes, no rewrite of unchanged files (mtimes and Git stay
// quiet), secrets SOPS-encrypted, a leak check that refuses to write any plaintext private
// key, token or age identity, a .gitignore for decrypted material, and an optional commit of
// exactly the files talforge wrote.
//
// # How a run's files reach the output directory
//
// One generation of output is a set of files plus the lockfile (talforge.lock.yaml) that lists
// them with their digests. A run switches the directory from one generation to the next so
// that no kill, crash or power cut can leave a mix that looks whole:
//
//  1. Lock. The run holds the directory's run lock (pkg/runlock) from start to end, so no
//     other run stages, moves or recovers in the directory meanwhile.
//  2. Recover (Writer.Recover). Every .talforge-staging-*/ directory is what a dead run left.
//     One holding a complete journal is finished (step 5 again: its moves are idempotent);
//     any other is removed: its run died before touching anything in place. Nothing but
//     staging directories, and the paths their journals name, is touched.
//  3. Verify. The caller (pkg/generate) compares every file the lockfile lists with its
//     digest; a file that differs (a hand edit, or a set torn by an older talforge) is not
//     trusted as current: it is rendered again and rewritten when its content differs.
//  4. Stage (Writer.Stage). Every changed file is written into one staging directory of the
//     run, .talforge-staging-<random>/, mirroring its path. Nothing in place changes.
//  5. Commit (Staged.Commit). The journal (.talforge-commit.json in the staging directory)
//     names the staged files, the files to remove and the lockfile; one syncfs(2) makes all of
//     it durable. This is the commit point: from here the next generation is decided. Every
//     staged file but the lockfile is renamed into place; the files to remove are deleted —
//     only files the previous lockfile listed and this run no longer writes, never what a
//     directory listing finds, so a user's own files in nodes/ are safe —; a second flush makes
//     that durable; the lockfile is renamed last and its directory synced; the staging
//     directory is removed.
//
// A run killed before the journal is durable leaves the previous generation untouched (its
// staging directory is removed by the next run); one killed after it is completed by the next
// run before anything else. Either way the lockfile in place describes the files in place.
//
// Commit (the git one) commits the files the lockfile lists, the lockfile and the files this
// run removed, never anything else found under the directory; the generated .gitignore also
// keeps staging directories, the run lock and older versions' temporary files out of Git.
//
// All moves and removals go through an os.Root on the output directory: a path in a lockfile
// or journal (both read from disk, and the lockfile from Git) cannot reach outside it.
package gitops
