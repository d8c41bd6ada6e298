package adopt

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	factory "github.com/siderolabs/image-factory/pkg/schematic"

	"github.com/talforge/talforge/pkg/profile"
)

func schematicOf(args []string, exts ...string) *factory.Schematic {
	return &factory.Schematic{Customization: factory.Customization{ExtraKernelArgs: args, SystemExtensions: factory.SystemExtensions{OfficialExtensions: exts}}}
}

// TestTalosImportReadsTheSchematic: nodes installed from an Image Factory image report its
// schematic (the "schematic" extension). Import turns it into talos.extensions and
// kernelArgs, so the profile builds the very same image and no patch pins it; where the
// node cannot say the schematic, the image stays in a patch and import says why.
func TestTalosImportReadsTheSchematic(t *testing.T) {
	homelab := schematicOf([]string{"net.ifnames=0"}, "siderolabs/intel-ucode", "siderolabs/iscsi-tools", "siderolabs/util-linux-tools")
	tests := []struct {
		version  string
		multidoc bool
	}{
		{"v1.14.1", true},
		{"v1.12.4", true},
		{"v1.10.6", false},
	}

	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			hm := buildHandMadeFrom(t, tt.version, tt.multidoc, homelab, true)

			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()

			imp, err := ReadTalos(ctx, "homelab", TalosOptions{Talosconfig: hm.talosconfig, Port: hm.port, Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}

			p := imp.Profile
			if !reflect.DeepEqual(p.Talos.Extensions, homelab.Customization.SystemExtensions.OfficialExtensions) ||
				!reflect.DeepEqual(p.Talos.KernelArgs, homelab.Customization.ExtraKernelArgs) {
				t.Errorf("talos.extensions %v, kernelArgs %v: want the schematic's", p.Talos.Extensions, p.Talos.KernelArgs)
			}

			for f, data := range imp.Files {
				if strings.Contains(string(data), "image:") {
					t.Errorf("%s pins the install image although the profile builds it:\n%s", f, data)
				}
			}

			diffs, err := imp.Check(ctx, writeProject(t, imp))
			if err != nil {
				t.Fatal(err)
			}

			for _, d := range diffs {
				t.Errorf("node %s: rendered config differs from the live one:\n%s", d.Node, d.Diff)
			}
		})
	}

	// An image whose schematic the node does not report: the image is kept in a patch, and
	// import says why.
	t.Run("unknown schematic", func(t *testing.T) {
		hm := buildHandMadeFrom(t, "v1.14.1", true, homelab, false)
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()

		imp, err := ReadTalos(ctx, "homelab", TalosOptions{Talosconfig: hm.talosconfig, Port: hm.port, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}

		if len(imp.Profile.Talos.Extensions) > 0 || !strings.Contains(strings.Join(imp.Warnings, "\n"), "the node reports no schematic") {
			t.Errorf("extensions %v, warnings %q", imp.Profile.Talos.Extensions, imp.Warnings)
		}

		pinned := false
		for _, data := range imp.Files {
			pinned = pinned || strings.Contains(string(data), "metal-installer/")
		}

		if !pinned {
			t.Errorf("no patch keeps the install image: %v", imp.Files)
		}
	})
}

func TestFitSchematic(t *testing.T) {
	on := true
	tests := []struct {
		name       string
		live       *factory.Schematic
		proxmox    bool
		longhorn   bool
		extensions []string
		args       []string
		agentOff   bool
		warning    string
	}{
		{name: "talforge adds the rest", live: schematicOf(nil, "siderolabs/intel-ucode", "siderolabs/iscsi-tools", "siderolabs/qemu-guest-agent", "siderolabs/util-linux-tools"),
			proxmox: true, longhorn: true, extensions: []string{"siderolabs/intel-ucode"}},
		{name: "exactly what talforge adds", live: schematicOf([]string{"console=ttyS0"}, "siderolabs/iscsi-tools", "siderolabs/qemu-guest-agent", "siderolabs/util-linux-tools"),
			proxmox: true, longhorn: true, args: []string{"console=ttyS0"}},
		{name: "no guest agent in the image", live: schematicOf(nil, "siderolabs/iscsi-tools", "siderolabs/util-linux-tools"),
			proxmox: true, longhorn: true, agentOff: true},
		{name: "Longhorn without its extensions", live: schematicOf(nil, "siderolabs/qemu-guest-agent"),
			proxmox: true, longhorn: true, warning: "lacks siderolabs/iscsi-tools, siderolabs/util-linux-tools"},
		{name: "bare metal, no Longhorn", live: schematicOf(nil, "siderolabs/iscsi-tools"), extensions: []string{"siderolabs/iscsi-tools"}},
		{name: "the empty schematic with Longhorn", live: &factory.Schematic{}, longhorn: true, warning: "lacks siderolabs/iscsi-tools, siderolabs/util-linux-tools"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &profile.Cluster{Talos: profile.Talos{Version: "v1.14.1", ImageFactory: profile.DefaultImageFactory,
				Extensions: tt.live.Customization.SystemExtensions.OfficialExtensions, KernelArgs: tt.live.Customization.ExtraKernelArgs}}
			if tt.proxmox {
				c.Proxmox = &profile.Proxmox{QemuGuestAgent: &on}
			}

			if tt.longhorn {
				c.Longhorn = &profile.Longhorn{Version: "1.10.1"}
			}

			warnings := fitSchematic(c, tt.live)
			if got := strings.Join(warnings, "\n"); (tt.warning == "") != (got == "") || !strings.Contains(got, tt.warning) {
				t.Errorf("warnings %q, want %q", got, tt.warning)
			}

			if !reflect.DeepEqual(c.Talos.Extensions, tt.extensions) || !reflect.DeepEqual(c.Talos.KernelArgs, tt.args) {
				t.Errorf("extensions %v, kernelArgs %v; want %v, %v", c.Talos.Extensions, c.Talos.KernelArgs, tt.extensions, tt.args)
			}

			if tt.proxmox && *c.Proxmox.QemuGuestAgent == tt.agentOff {
				t.Errorf("proxmox.qemuGuestAgent = %v", *c.Proxmox.QemuGuestAgent)
			}
		})
	}
}
