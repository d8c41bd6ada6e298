package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
)

// metal is the runtime mode a Proxmox VM's Talos validates its config for.
type metal struct{}

func (metal) String() string        { return "metal" }
func (metal) RequiresInstall() bool { return true }
func (metal) InContainer() bool     { return false }

// TestHandMadeConfigs: every contract from 1.10 to 1.14, both network styles, gives configs a
// metal node accepts, with the person's hostname, address by MAC, VIP on control planes only,
// kubelet argument and SANs.
func TestHandMadeConfigs(t *testing.T) {
	for _, tt := range []struct {
		version  string
		multiDoc bool
	}{
		{"v1.10.6", false}, {"v1.11.5", false}, {"v1.12.4", false}, {"v1.12.4", true},
		{"v1.13.2", true}, {"v1.14.1", false}, {"v1.14.1", true},
	} {
		name := tt.version
		if tt.multiDoc {
			name += "/multi-doc"
		}
		t.Run(name, func(t *testing.T) {
			o := HandMadeOptions{
				Name: "homelab", TalosVersion: tt.version, MultiDocNetwork: tt.multiDoc, VIP: "127.0.81.10",
				CertSANs:      []string{"homelab.lan"},
				ControlPlanes: []HandMadeNode{{Name: "cp1", IP: "127.0.81.11", MAC: "BC:24:11:0A:00:11", VMID: 201}},
				Workers:       []HandMadeNode{{Name: "w1", IP: "127.0.81.21", MAC: "BC:24:11:0A:00:21", VMID: 211, DataDisk: "50G"}},
			}
			if err := o.defaults(); err != nil {
				t.Fatal(err)
			}
			if o.Gateway != "127.0.81.1" {
				t.Errorf("gateway %s, want 127.0.81.1", o.Gateway)
			}
			gen, err := generateHandMade(&o)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range append(o.ControlPlanes, o.Workers...) {
				raw := gen.configs[n.Name]
				cfg, err := configloader.NewFromBytes(raw)
				if err != nil {
					t.Fatalf("%s: %v", n.Name, err)
				}
				if _, err := cfg.ValidateAsClient(metal{}); err != nil {
					t.Fatalf("%s: a metal node refuses the config: %v", n.Name, err)
				}
				if got := cfg.NetworkHostnameConfig().Hostname(); got != n.Name {
					t.Errorf("%s: hostname %q", n.Name, got)
				}
				text := string(raw)
				for _, want := range []string{strings.ToLower(n.MAC), n.IP + "/24", "127.0.81.1", "rotate-server-certificates", "/dev/sda"} {
					if !strings.Contains(text, want) {
						t.Errorf("%s: config lacks %q", n.Name, want)
					}
				}
				vip := strings.Contains(text, "vip:\n") || strings.Contains(text, "kind: Layer2VIPConfig")
				if cp := n.Name == "cp1"; vip != cp {
					t.Errorf("%s: VIP configured = %v, want %v", n.Name, vip, cp)
				}
				if !slices.Contains(cfg.Machine().Security().CertSANs(), "homelab.lan") {
					t.Errorf("%s: certSANs %v", n.Name, cfg.Machine().Security().CertSANs())
				}
				if strings.Contains(text, HandMadeDataMount) != (n.DataDisk != "") {
					t.Errorf("%s: data disk mount present = %v", n.Name, n.DataDisk == "")
				}
				if (tt.multiDoc && strings.Contains(text, "hardwareAddr")) || (!tt.multiDoc && strings.Contains(text, "kind: LinkConfig")) {
					t.Errorf("%s: network style mixed up", n.Name)
				}
			}
			if gen.bundle == nil || len(gen.talosconfig.Contexts) != 1 {
				t.Errorf("bundle %v, talosconfig contexts %d", gen.bundle != nil, len(gen.talosconfig.Contexts))
			}
			for _, c := range gen.talosconfig.Contexts {
				if !slices.Equal(c.Endpoints, []string{"127.0.81.11"}) {
					t.Errorf("talosconfig endpoints %v, want the control planes' IPs", c.Endpoints)
				}
			}
		})
	}
}
