package generate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/talforge/talforge/pkg/gitops"
	"github.com/talforge/talforge/pkg/parallel"
	"github.com/talforge/talforge/pkg/runlock"
	"github.com/talforge/talforge/pkg/secrets"
)

// openOutput takes the run lock of out (a no-op when ctx already holds it: up calls generate),
// finishes or clears what an interrupted run left (gitops' Recover), and starts reading the
// lockfile in place and checking the files it lists against their digests, on another
// goroutine: the run decrypts its bundle and hashes its inputs meanwhile, and an all-changed
// run renders before it needs the lockfile. A file that differs is only reported: renderNodes
// and Stage trust a file only when its digest matches, so it is rendered and written again.
func openOutput(ctx context.Context, out string, log io.Writer) (context.Context, *runlock.Lock, *pendingLock, error) {
	ctx, lk, err := runlock.Acquire(ctx, out)
	if err != nil {
		return ctx, nil, nil, err
	}

	rec, err := (&gitops.Writer{Dir: out}).Recover(ctx)
	if err != nil {
		lk.Release()

		return ctx, nil, nil, err
	}

	if rec.Completed > 0 {
		fmt.Fprintf(log, "%s: completed the write of an interrupted run\n", out)
	}

	if rec.Discarded > 0 {
		fmt.Fprintf(log, "%s: removed what %d interrupted run(s) had staged\n", out, rec.Discarded)
	}

	readCtx, cancel := context.WithCancel(ctx)
	p := &pendingLock{done: make(chan struct{}), cancel: cancel, out: out, log: log}

	go func() {
		defer close(p.done)

		p.lock = readLock(filepath.Join(out, LockFile))
		p.torn = p.lock.differing(readCtx, out)
	}()

	return ctx, lk, p, nil
}

// pendingLock is the previous lockfile while openOutput reads and checks it.
type pendingLock struct {
	done     chan struct{}
	cancel   context.CancelFunc
	out      string
	log      io.Writer
	reported sync.Once

	lock *Lock
	torn []string
}

// stop ends the check if it still runs and waits for it: nothing of a run outlives it.
func (p *pendingLock) stop() {
	p.cancel()
	<-p.done
}

// get waits for the previous lockfile (nil when there is none or it is unreadable) and, the
// first time, reports the files that differ from it on the caller's goroutine: the log is
// the caller's.
func (p *pendingLock) get() *Lock {
	<-p.done

	p.reported.Do(func() {
		if len(p.torn) == 0 {
			return
		}

		shown := strings.Join(p.torn[:min(len(p.torn), 10)], ", ")
		if len(p.torn) > 10 {
			shown += fmt.Sprintf(" and %d more", len(p.torn)-10)
		}

		fmt.Fprintf(p.log, "%s: %d file(s) differ from %s (an interrupted run or a hand edit), writing them again: %s\n",
			p.out, len(p.torn), LockFile, shown)
	})

	return p.lock
}

// differing lists the files the lock records whose bytes on disk differ from the digest, or
// that are missing; later checks of the same lock reuse what it found.
func (l *Lock) differing(ctx context.Context, out string) []string {
	if l == nil {
		return nil
	}

	// Reading and hashing a thousand files is the first thing every run does: on every core.
	paths := slices.Sorted(maps.Keys(l.Files))
	current := make([]bool, len(paths))
	if parallel.ForEach(ctx, len(paths), 0, func(i int) { current[i] = l.fileCurrent(out, paths[i]) }) != nil {
		return nil // a cancelled run stops at its next check; nothing is known verified
	}

	var torn []string

	verified := map[string]bool{}

	for i, p := range paths {
		if current[i] {
			verified[p] = true
		} else {
			torn = append(torn, p)
		}
	}

	l.verified = verified

	return torn
}

// removedBy lists the files this (previous) lock records that next no longer does: talforge
// wrote them and no longer writes them, so they go. Nothing else in the directory is ever
// removed: a file talforge never recorded is the user's.
func (l *Lock) removedBy(next *Lock) []string {
	if l == nil {
		return nil
	}

	var gone []string

	for _, p := range slices.Sorted(maps.Keys(l.Files)) {
		if _, ok := next.Files[p]; !ok && p != LockFile && p != secrets.FileName {
			gone = append(gone, p)
		}
	}

	return gone
}

// commitOutput commits the output with --commit: the files the lockfile lists, the lockfile,
// the secrets bundle, whatever else the run wrote, and the removal of every file talforge
// wrote that is gone — those this run removed and those the committed lockfile lists that an
// earlier run without --commit removed. Nothing else under the directory, whoever put it
// there: not a user's file, not what a killed run left.
func commitOutput(ctx context.Context, out string, l *Lock, res *Result) (bool, error) {
	files := append(slices.Collect(maps.Keys(l.Files)), LockFile, secrets.FileName)
	files = append(files, res.Files.Written...)
	files = append(files, res.Files.Removed...)

	msg := commitMessage(res)

	committed, err := gitops.ReadCommitted(ctx, out, LockFile)
	if err != nil {
		return false, err
	}

	if len(committed) > 0 {
		var prev Lock
		if err := yaml.Unmarshal(committed, &prev); err != nil {
			return false, fmt.Errorf("the committed %s: %w", LockFile, err)
		}

		for _, p := range prev.removedBy(l) {
			// Only deletions: a file still there that talforge no longer lists is left alone.
			if _, err := os.Lstat(filepath.Join(out, filepath.FromSlash(p))); errors.Is(err, fs.ErrNotExist) && !slices.Contains(files, p) {
				files = append(files, p)
				msg += fmt.Sprintf("remove %s\n", p)
			}
		}
	}

	slices.Sort(files)

	return gitops.Commit(ctx, out, msg, slices.Compact(files))
}
