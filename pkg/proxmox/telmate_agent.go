// The QEMU guest agent read: the network interfaces a running VM's agent reports.

package proxmox

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	pxapi "github.com/Telmate/proxmox-api-go/proxmox"
)

// GuestInterfaces implements API with Telmate's VmRef.GetAgentInformation (proxmox-api-go
// proxmox/data__qemu__agent.go), which already turns "QEMU guest agent is not running" and
// "VM <id> is not running" into states rather than errors.
func (t *Telmate) GuestInterfaces(ctx context.Context, node string, vmid int) ([]GuestInterface, error) {
	type answer struct {
		ifaces []pxapi.AgentNetworkInterface
		state  pxapi.GuestAgentState
	}

	a, err := guard("read guest agent interfaces", func() (answer, error) {
		raw, state, err := vmRef(node, vmid).GetAgentInformation(ctx, t.c)
		if err != nil || state != pxapi.GuestAgentStateRunning {
			// raw is then a typed nil inside the interface: only the state counts.
			return answer{state: state}, err
		}
		// Get type-asserts the agent's answer; an unexpected shape panics inside guard.
		return answer{ifaces: raw.Get(), state: state}, nil
	})

	switch {
	case err != nil:
		// The agent key is missing from the VM's config: assert_agent_available dies with
		// "No QEMU guest agent configured" before Telmate looks at the state.
		var ae *APIError
		if errors.As(err, &ae) && strings.HasPrefix(ae.Message, "No QEMU guest agent configured") {
			return nil, fmt.Errorf("%w: none configured", ErrNoGuestAgent)
		}

		return nil, err
	case a.state == pxapi.GuestAgentStateVmNotRunning:
		return nil, fmt.Errorf("%w: the VM is not running", ErrNoGuestAgent)
	case a.state == pxapi.GuestAgentStateNotRunning:
		return nil, fmt.Errorf("%w: the agent is not running in the guest", ErrNoGuestAgent)
	}

	out := make([]GuestInterface, 0, len(a.ifaces))

	for _, ifc := range a.ifaces {
		g := GuestInterface{Name: ifc.Name, MAC: ifc.MacAddress}

		for _, ip := range ifc.IpAddresses {
			// Telmate leaves nil where an address did not parse.
			if addr, ok := netip.AddrFromSlice(ip); ok {
				g.Addrs = append(g.Addrs, addr.Unmap())
			}
		}

		out = append(out, g)
	}

	return out, nil
}
