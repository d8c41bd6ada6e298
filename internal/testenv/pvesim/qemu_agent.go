// The QEMU guest agent endpoint talforge reads: GET .../agent/network-get-interfaces
// (qemu-server src/PVE/API2/Qemu/Agent.pm register_command, src/PVE/QemuServer/Agent.pm
// assert_agent_available).

package pvesim

import (
	"net/netip"
	"strconv"
	"strings"
)

// AgentInterface is one network interface as the QEMU guest agent in a VM reports it
// (guest-network-get-interfaces).
type AgentInterface struct {
	Name string
	// MAC is the interface's hardware address; the agent reports it in lower case.
	MAC string
	// Addrs are the interface's addresses with their prefix length, e.g. "10.0.0.21/24".
	Addrs []string
}

func cloneAgent(a []AgentInterface) []AgentInterface {
	if a == nil {
		return nil
	}

	out := make([]AgentInterface, len(a))
	for i, ifc := range a {
		ifc.Addrs = append([]string(nil), ifc.Addrs...)
		out[i] = ifc
	}

	return out
}

// agentPrivileges are the privileges of which network-get-interfaces needs one on /vms/{vmid}:
// VM.Monitor in PVE 8, VM.GuestAgent.Audit or VM.GuestAgent.Unrestricted in PVE 9 (the
// permissions of the two saved API schemas).
func (s *Server) agentPrivileges() []string {
	if s.schema != nil && s.schema.Name == "pve8" {
		return []string{"VM.Monitor"}
	}

	return []string{"VM.GuestAgent.Audit", "VM.GuestAgent.Unrestricted"}
}

// GET /nodes/{node}/qemu/{vmid}/agent/network-get-interfaces
func (s *Server) agentNetworkInterfaces(c *call) (any, *apiError) {
	if aerr := c.requireAny("/vms/"+strconv.Itoa(c.vmid()), s.agentPrivileges()...); aerr != nil {
		return nil, aerr
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	v, aerr := s.lookupVM(c)
	if aerr != nil {
		return nil, aerr
	}

	// assert_agent_available: the agent key must exist at all, the VM must run and the agent
	// must answer (a VM started with agent disabled has no agent channel).
	agent, configured := v.Config["agent"]
	if !configured {
		return nil, err500("No QEMU guest agent configured\n")
	}

	if !v.Running {
		return nil, err500("VM %d is not running\n", v.ID)
	}

	if b, _ := parseBoolean(parsePropString(agent, "enabled").get("enabled")); b != "1" || v.Agent == nil {
		return nil, err500("QEMU guest agent is not running\n")
	}

	result := make([]map[string]any, 0, len(v.Agent))

	for _, ifc := range v.Agent {
		addrs := []map[string]any{}

		for _, a := range ifc.Addrs {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				return nil, err500("pvesim: guest agent address %q of VM %d: %v\n", a, v.ID, err)
			}

			typ := "ipv4"
			if p.Addr().Is6() {
				typ = "ipv6"
			}

			addrs = append(addrs, map[string]any{"ip-address-type": typ, "ip-address": p.Addr().String(), "prefix": p.Bits()})
		}

		result = append(result, map[string]any{
			"name": ifc.Name, "hardware-address": strings.ToLower(ifc.MAC), "ip-addresses": addrs,
			"statistics": map[string]any{"rx-bytes": 0, "rx-dropped": 0, "rx-errs": 0, "rx-packets": 0,
				"tx-bytes": 0, "tx-dropped": 0, "tx-errs": 0, "tx-packets": 0},
		})
	}

	// The handler returns the agent's answer under "result" (register_command).
	return map[string]any{"result": result}, nil
}
