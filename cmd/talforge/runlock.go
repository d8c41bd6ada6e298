package main

import (
	"context"

	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/runlock"
)

// lockCluster takes the run lock of the cluster's directory (clusters/<name>/) for commands
// that change the cluster without going through generate (destroy, provision): one run at a
// time per cluster.
func lockCluster(ctx context.Context, c *profile.Cluster) (context.Context, func(), error) {
	ctx, lk, err := runlock.Acquire(ctx, c.OutputDir())
	if err != nil {
		return ctx, nil, err
	}

	return ctx, func() { lk.Release() }, nil
}
