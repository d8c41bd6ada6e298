package lifecycle

import (
	"context"

	"github.com/talforge/talforge/pkg/runlock"
)

// lock takes the cluster's run lock (on clusters/<name>/) for the whole operation, so that
// two runs never change one cluster or its files at once. generate, called inside with the
// returned context, finds the lock already held.
func (r *run) lock(ctx context.Context) (context.Context, func(), error) {
	ctx, lk, err := runlock.Acquire(ctx, r.out)
	if err != nil {
		return ctx, nil, err
	}

	return ctx, func() { lk.Release() }, nil
}
