// Command talforge takes a Talos-on-Proxmox cluster from one YAML profile to a running,
// backed-up cluster. See `talforge --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	// Imported for its init too: it paces the collector before the other packages initialise.
	"github.com/talforge/talforge/cmd/talforge/internal/gcpolicy"
)

func main() {
	gcpolicy.LimitSmallRuns()

	os.Exit(runWithSignals(os.Args[1:], streams{in: os.Stdin, out: os.Stdout, errOut: os.Stderr}))
}

// runWithSignals runs the CLI with a root context that the first SIGINT or SIGTERM cancels:
// every stage checks it between nodes, patches and problems and returns, and output is only
// ever switched in by renames (pkg/gitops), so nothing is left half-written. The first signal
// also restores the default handling, so a second one ends the process at once, whatever it
// is doing.
func runWithSignals(args []string, s streams) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	go func() {
		<-ctx.Done() // a signal, or stop when run returns
		stop()
	}()

	return run(ctx, args, s)
}
