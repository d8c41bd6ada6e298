package bootstrap

import (
	"context"
	"fmt"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"github.com/siderolabs/talos/pkg/machinery/config"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	"google.golang.org/grpc/codes"
)

// ReadLiveConfig reads the machine config a configured node runs: the COSI MachineConfig
// resource "v1alpha1" (configres.ActiveID), which needs the os:admin role (the resource is
// Sensitive), as readLive does for apply. The error says what failed in a few words and, when
// the client lacks os:admin, that it does.
func ReadLiveConfig(ctx context.Context, c *client.Client) (config.Provider, error) {
	mc, err := safe.StateGetByID[*configres.MachineConfig](ctx, c.COSI, configres.ActiveID)
	if err != nil {
		if codeOf(err) == codes.PermissionDenied {
			return nil, fmt.Errorf("read machine config: %s (the talosconfig's client certificate lacks the os:admin role)", describe(err))
		}

		return nil, fmt.Errorf("read machine config: %s", describe(err))
	}

	return mc.Provider(), nil
}

// RedactedDiff reports whether two configs differ and a unified diff of their redacted
// encodings, leak-checked: the diff plan and apply print (see redactedDiff).
func RedactedDiff(live, desired config.Provider) (bool, string, error) {
	return redactedDiff(live, desired)
}

// IsHandshakeFailure reports a TLS failure: something answered on the address, but the
// identities did not match (another cluster's CA, or a client certificate it does not trust).
func IsHandshakeFailure(err error) bool { return isHandshakeFailure(err) }
