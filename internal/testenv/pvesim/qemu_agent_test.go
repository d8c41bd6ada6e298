package pvesim

import (
	"encoding/json"
	"testing"
)

func TestAgentNetworkInterfaces(t *testing.T) {
	guest := []AgentInterface{
		{Name: "lo", MAC: "00:00:00:00:00:00", Addrs: []string{"127.0.0.1/8", "::1/128"}},
		{Name: "eth0", MAC: "BC:24:11:0A:0B:0C", Addrs: []string{"10.0.0.21/24"}},
	}
	seed := []SeedVM{
		{ID: 500, Config: map[string]string{"name": "agent", "agent": "enabled=1"}, Running: true, Agent: guest},
		{ID: 501, Config: map[string]string{"name": "no-agent-key"}, Running: true, Agent: guest},
		{ID: 502, Config: map[string]string{"name": "stopped", "agent": "1"}, Agent: guest},
		{ID: 503, Config: map[string]string{"name": "agent-off", "agent": "0"}, Running: true, Agent: guest},
		{ID: 504, Config: map[string]string{"name": "silent-guest", "agent": "1"}, Running: true},
	}

	cases := []struct {
		name   string
		major  int
		acl    map[string][]string // nil: the default admin token
		path   string
		status int
		reason string
		want   string // JSON of data on success
	}{
		{name: "answers", major: 9, path: "/nodes/pve/qemu/500/agent/network-get-interfaces", status: 200,
			want: `{"result":[{"hardware-address":"00:00:00:00:00:00","ip-addresses":[{"ip-address":"127.0.0.1","ip-address-type":"ipv4","prefix":8},` +
				`{"ip-address":"::1","ip-address-type":"ipv6","prefix":128}],"name":"lo","statistics":{"rx-bytes":0,"rx-dropped":0,"rx-errs":0,` +
				`"rx-packets":0,"tx-bytes":0,"tx-dropped":0,"tx-errs":0,"tx-packets":0}},{"hardware-address":"bc:24:11:0a:0b:0c","ip-addresses":` +
				`[{"ip-address":"10.0.0.21","ip-address-type":"ipv4","prefix":24}],"name":"eth0","statistics":{"rx-bytes":0,"rx-dropped":0,` +
				`"rx-errs":0,"rx-packets":0,"tx-bytes":0,"tx-dropped":0,"tx-errs":0,"tx-packets":0}}]}`},
		{name: "PVE 8 admin has VM.Monitor", major: 8, path: "/nodes/pve/qemu/500/agent/network-get-interfaces", status: 200},
		{name: "no agent key", major: 9, path: "/nodes/pve/qemu/501/agent/network-get-interfaces", status: 500, reason: "No QEMU guest agent configured"},
		{name: "VM stopped", major: 9, path: "/nodes/pve/qemu/502/agent/network-get-interfaces", status: 500, reason: "VM 502 is not running"},
		{name: "agent disabled", major: 9, path: "/nodes/pve/qemu/503/agent/network-get-interfaces", status: 500, reason: "QEMU guest agent is not running"},
		{name: "no agent in the guest", major: 9, path: "/nodes/pve/qemu/504/agent/network-get-interfaces", status: 500, reason: "QEMU guest agent is not running"},
		{name: "wrong node", major: 9, path: "/nodes/pve/qemu/599/agent/network-get-interfaces", status: 500,
			reason: "Configuration file 'nodes/pve/qemu-server/599.conf' does not exist"},
		{name: "VM.Audit is not enough (PVE 9)", major: 9, acl: map[string][]string{"/vms": {"VM.Audit"}},
			path: "/nodes/pve/qemu/500/agent/network-get-interfaces", status: 403,
			reason: "Permission check failed (/vms/500, VM.GuestAgent.Audit|VM.GuestAgent.Unrestricted)"},
		{name: "VM.GuestAgent.Audit (PVE 9)", major: 9, acl: map[string][]string{"/vms": {"VM.GuestAgent.Audit"}},
			path: "/nodes/pve/qemu/500/agent/network-get-interfaces", status: 200},
		{name: "VM.GuestAgent.Audit is not a PVE 8 privilege", major: 8, acl: map[string][]string{"/vms": {"VM.GuestAgent.Audit"}},
			path: "/nodes/pve/qemu/500/agent/network-get-interfaces", status: 403, reason: "Permission check failed (/vms/500, VM.Monitor)"},
		{name: "unknown parameter", major: 9, path: "/nodes/pve/qemu/500/agent/network-get-interfaces?x=1", status: 400,
			reason: "Parameter verification failed."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := New(fastOptions(testSchema(t, tc.major)))
			defer srv.Close()
			srv.Seed(seed...)

			auth := "PVEAPIToken=" + DefaultTokenID + "=" + DefaultTokenSecret
			if tc.acl != nil {
				srv.SetACL("limited@pve!t", "x", tc.acl)
				auth = "PVEAPIToken=limited@pve!t=x"
			}

			a := doReqAuth(t, srv, "GET", tc.path, nil, auth)
			if a.status != tc.status || (tc.reason != "" && a.reason != tc.reason) {
				t.Fatalf("got %d %q (%s), want %d %q", a.status, a.reason, a.raw, tc.status, tc.reason)
			}

			if tc.want != "" {
				got, _ := json.Marshal(a.data())
				if string(got) != tc.want {
					t.Errorf("data =\n%s\nwant\n%s", got, tc.want)
				}
			}

			if m := srv.MutatingRequests(); len(m) != 0 {
				t.Errorf("mutating requests: %v", m)
			}
		})
	}
}
