// Package runlock keeps two talforge runs from working on one cluster at once.
//
// Each cluster directory (clusters/<name>/, or generate's --out) has a lock file,
// .talforge-run.lock, held with flock(2) for as long as a run that writes the directory or
// changes the cluster (generate, up, rebuild, destroy, provision) lasts. A second run fails at
// once with "another talforge run holds the lock on clusters/<name> (pid P, since T)".
//
// The kernel releases a flock when its holder dies, even under kill -9, so a stale lock of a
// dead process is never in the way: the next run simply takes it. The pid and start time in
// the file are only for the message. The holder removes the file when it releases the lock;
// a run that opened the file just before checks after locking that its descriptor still names
// the file at the path, and starts over if not, so removing it never lets two runs in.
//
// Acquire returns a context that remembers the lock, so an operation that holds it (up) can
// call another that takes it (generate) without locking itself out.
package runlock
