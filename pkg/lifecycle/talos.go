package lifecycle

import (
	"context"

	machinetype "github.com/siderolabs/talos/pkg/machinery/config/machine"

	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/profile"
)

// ErrNotGenerated means clusters/<name>/ has no secrets bundle yet.
var ErrNotGenerated = generate.ErrNotGenerated

// TalosObservation is what a node's Talos API says.
type TalosObservation = bootstrap.Observation

// talosCluster turns rendered configs into the bootstrap stage's input.
func talosCluster(r *generate.Rendered) bootstrap.Cluster {
	c := r.Cluster
	in := bootstrap.Cluster{Name: c.Metadata.Name, Talosconfig: r.Talosconfig, VIP: c.Network.VIP}
	for _, cfg := range r.Configs {
		role := machinetype.TypeWorker
		if cfg.Node.Role == profile.RoleControlPlane {
			role = machinetype.TypeControlPlane
		}
		in.Nodes = append(in.Nodes, bootstrap.Node{Name: cfg.Node.Name, IP: cfg.Node.IP, Role: role, Config: cfg.Bytes})
	}
	return in
}

// renderTalos renders every node's config from the profile and the stored secrets bundle, in
// memory (what `generate` writes), with the stored talosconfig: for commands that must not write.
func renderTalos(ctx context.Context, c *profile.Cluster) (bootstrap.Cluster, *generate.Rendered, error) {
	r, err := generate.RenderStored(ctx, c)
	if err != nil {
		return bootstrap.Cluster{}, nil, err
	}
	return talosCluster(r), r, nil
}
