package proxmox

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/talforge/talforge/internal/testenv/pvesim"
)

func TestGuestInterfaces(t *testing.T) {
	srv := pvesim.New(pvesim.Options{Schema: pveSchema(t), AuthFailDelay: -1, DefaultLatency: time.Millisecond})
	t.Cleanup(srv.Close)

	guest := []pvesim.AgentInterface{
		{Name: "lo", MAC: "00:00:00:00:00:00", Addrs: []string{"127.0.0.1/8", "::1/128"}},
		{Name: "eth0", MAC: "BC:24:11:0A:0B:0C", Addrs: []string{"10.0.0.21/24", "fd00::21/64"}},
	}
	srv.Seed(
		pvesim.SeedVM{ID: 500, Config: map[string]string{"name": "a", "agent": "enabled=1"}, Running: true, Agent: guest},
		pvesim.SeedVM{ID: 501, Config: map[string]string{"name": "b"}, Running: true, Agent: guest},
		pvesim.SeedVM{ID: 502, Config: map[string]string{"name": "c", "agent": "1"}, Agent: guest},
		pvesim.SeedVM{ID: 503, Config: map[string]string{"name": "d", "agent": "1"}, Running: true},
	)
	srv.SetACL("audit@pve!t", "x", map[string][]string{"/vms": {"VM.Audit"}})

	client := func(id, secret string) *Telmate {
		tok, err := NewToken(id, secret)
		if err != nil {
			t.Fatal(err)
		}

		api, err := NewTelmateAPI(ClientOptions{Endpoint: srv.URL(), Token: tok, TLS: &tls.Config{RootCAs: srv.CertPool(), MinVersion: tls.VersionTLS12}})
		if err != nil {
			t.Fatal(err)
		}

		return api
	}
	admin, auditor := client(pvesim.DefaultTokenID, pvesim.DefaultTokenSecret), client("audit@pve!t", "x")

	cases := []struct {
		name    string
		api     *Telmate
		vmid    int
		want    string // fmt of the interfaces
		noAgent string // the ErrNoGuestAgent error text
		status  int    // an APIError status
	}{
		{name: "agent answers", api: admin, vmid: 500, want: "[{lo 00:00:00:00:00:00 [127.0.0.1 ::1]} {eth0 bc:24:11:0a:0b:0c [10.0.0.21 fd00::21]}]"},
		{name: "no agent configured", api: admin, vmid: 501, noAgent: "no QEMU guest agent answers: none configured"},
		{name: "VM stopped", api: admin, vmid: 502, noAgent: "no QEMU guest agent answers: the VM is not running"},
		{name: "agent not running in the guest", api: admin, vmid: 503, noAgent: "no QEMU guest agent answers: the agent is not running in the guest"},
		{name: "token without the agent privilege", api: auditor, vmid: 500, status: 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.api.GuestInterfaces(context.Background(), "pve", tc.vmid)

			var ae *APIError

			switch {
			case tc.noAgent != "":
				if !errors.Is(err, ErrNoGuestAgent) || err.Error() != tc.noAgent {
					t.Fatalf("err = %v, want %q", err, tc.noAgent)
				}
			case tc.status != 0:
				if !errors.As(err, &ae) || ae.Status != tc.status || errors.Is(err, ErrNoGuestAgent) {
					t.Fatalf("err = %v, want an HTTP %d that is not ErrNoGuestAgent", err, tc.status)
				}
			case err != nil:
				t.Fatal(err)
			default:
				if s := fmt.Sprint(got); s != tc.want {
					t.Errorf("interfaces = %s, want %s", s, tc.want)
				}
			}
		})
	}

	if m := srv.MutatingRequests(); len(m) != 0 {
		t.Errorf("mutating requests: %v", m)
	}
}
