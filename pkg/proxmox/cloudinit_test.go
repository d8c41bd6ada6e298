package proxmox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/talforge/talforge/internal/testenv/pvesim"
)

// nocloudV1 mirrors the network-config v1 keys Talos' nocloud platform reads
// (docs/talos.md#nocloud-network, siderolabs/talos internal/app/machined/pkg/runtime/v1alpha1/platform/nocloud ConfigV1).
type nocloudV1 struct {
	Version int `yaml:"version"`
	Config  []struct {
		Type       string `yaml:"type"`
		Name       string `yaml:"name"`
		MacAddress string `yaml:"mac_address"`
		Subnets    []struct {
			Type    string `yaml:"type"`
			Address string `yaml:"address"`
			Netmask string `yaml:"netmask"`
			Gateway string `yaml:"gateway"`
		} `yaml:"subnets"`
		Address []string `yaml:"address"`
		Search  []string `yaml:"search"`
	} `yaml:"config"`
}

// talosView is what Talos' applyNetworkConfigV1 derives: parse errors abort the whole config.
type talosView struct {
	Links       map[string]string // name -> MAC
	Addresses   []netip.Prefix
	Gateways    []netip.Addr
	Nameservers []netip.Addr
}

func talosParseV1(doc string) (*talosView, error) {
	var cfg nocloudV1
	if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
		return nil, err
	}

	if cfg.Version != 1 {
		return nil, fmt.Errorf("network-config metadata version=%d is not supported", cfg.Version)
	}

	v := &talosView{Links: map[string]string{}}

	for _, c := range cfg.Config {
		switch c.Type {
		case "physical":
			v.Links[c.Name] = c.MacAddress

			for _, s := range c.Subnets {
				if s.Type != "static" {
					continue
				}

				ip, err := netip.ParseAddr(s.Address)
				if err != nil {
					return nil, fmt.Errorf("failed to parse address: %w", err)
				}

				mask, err := netip.ParseAddr(s.Netmask)
				if err != nil {
					return nil, fmt.Errorf("failed to parse netmask: %w", err)
				}

				bits := 0
				for _, b := range mask.AsSlice() {
					for ; b != 0; b <<= 1 {
						bits++
					}
				}

				v.Addresses = append(v.Addresses, netip.PrefixFrom(ip, bits))

				if s.Gateway != "" {
					gw, err := netip.ParseAddr(s.Gateway)
					if err != nil {
						return nil, fmt.Errorf("failed to parse gateway: %w", err)
					}

					v.Gateways = append(v.Gateways, gw)
				}
			}
		case "nameserver":
			for _, a := range c.Address {
				ns, err := netip.ParseAddr(a)
				if err != nil {
					return nil, fmt.Errorf("failed to parse nameserver: %w", err)
				}

				v.Nameservers = append(v.Nameservers, ns)
			}
		}
	}

	return v, nil
}

func cloudinitDump(t *testing.T, srv *pvesim.Server, node string, vmid int) string {
	t.Helper()

	req, _ := http.NewRequest("GET", srv.URL()+"/nodes/"+node+"/qemu/"+strconv.Itoa(vmid)+"/cloudinit/dump?type=network", nil)
	req.Header.Set("Authorization", "PVEAPIToken="+pvesim.DefaultTokenID+"="+pvesim.DefaultTokenSecret)

	resp, err := srv.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()

	body, _ := io.ReadAll(resp.Body)

	var env struct{ Data string }
	if err := json.Unmarshal(body, &env); err != nil || resp.StatusCode != 200 {
		t.Fatalf("cloudinit dump: %d %s", resp.StatusCode, body)
	}

	return env.Data
}

// TestCloudInitIsWhatTalosReads provisions the profiles and decodes each VM's generated
// nocloud network-config the way Talos does: the static address, gateway, MAC and every
// nameserver must come through.
func TestCloudInitIsWhatTalosReads(t *testing.T) {
	for _, name := range []string{"tazlab", "ha"} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, name)
			if _, _, err := e.provision(context.Background(), Options{}); err != nil {
				t.Fatal(err)
			}

			prefix := e.cluster.PrefixLen()

			for _, s := range e.specs {
				vm := e.vmByName(s.Name)
				wantIP := fmt.Sprintf("ip=%s/%d,gw=%s", s.Node.IP, prefix, e.cluster.Network.Gateway)

				if vm.Config["ipconfig0"] != wantIP {
					t.Errorf("%s ipconfig0 = %q, want %q", s.Name, vm.Config["ipconfig0"], wantIP)
				}

				if want := strings.Join(e.cluster.Network.Nameservers, " "); vm.Config["nameserver"] != want {
					t.Errorf("%s nameserver = %q, want space-separated %q", s.Name, vm.Config["nameserver"], want)
				}

				v, err := talosParseV1(cloudinitDump(t, e.srv, vm.Node, vm.ID))
				if err != nil {
					t.Fatalf("%s: Talos would reject the network config: %v", s.Name, err)
				}

				if mac := v.Links["eth0"]; mac != strings.ToLower(s.Node.MAC) {
					t.Errorf("%s eth0 MAC %q, want %q", s.Name, mac, strings.ToLower(s.Node.MAC))
				}

				wantAddr := netip.MustParsePrefix(fmt.Sprintf("%s/%d", s.Node.IP, prefix))
				if len(v.Addresses) != 1 || v.Addresses[0] != wantAddr {
					t.Errorf("%s addresses %v, want %v", s.Name, v.Addresses, wantAddr)
				}

				if len(v.Gateways) != 1 || v.Gateways[0].String() != e.cluster.Network.Gateway {
					t.Errorf("%s gateways %v", s.Name, v.Gateways)
				}

				if len(v.Nameservers) != len(e.cluster.Network.Nameservers) {
					t.Errorf("%s nameservers %v, want %v", s.Name, v.Nameservers, e.cluster.Network.Nameservers)
				}
			}
		})
	}
}

// TestCommaNameserversBreakTalos shows why nameservers are sent space-separated: PVE accepts a
// comma list, but its cloud-init generator emits it as one entry that Talos cannot parse. The
// lint catches it.
func TestCommaNameserversBreakTalos(t *testing.T) {
	doc := pvesim.NocloudNetwork(map[string]string{"net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0",
		"ipconfig0": "ip=10.0.0.21/24,gw=10.0.0.1", "nameserver": "1.1.1.1,9.9.9.9"})
	if _, err := talosParseV1(doc); err == nil || !strings.Contains(err.Error(), "nameserver") {
		t.Errorf("Talos-style parse of a comma list: %v\n%s", err, doc)
	}

	f := Lint("vm", Params{"nameserver": "1.1.1.1,9.9.9.9"}, true, "worker")

	found := false
	for _, x := range f {
		if x.Key == "nameserver" && x.Severity == SeverityError {
			found = true
		}
	}

	if !found {
		t.Errorf("lint does not flag comma nameservers: %v", f)
	}
}
