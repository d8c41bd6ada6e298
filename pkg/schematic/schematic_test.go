package schematic

import (
	"strings"
	"testing"

	"github.com/talforge/talforge/pkg/profile"
)

func cluster(talos string, longhorn, proxmox bool, agent *bool, extensions ...string) *profile.Cluster {
	c := &profile.Cluster{Talos: profile.Talos{Version: talos, ImageFactory: profile.DefaultImageFactory, Extensions: extensions}}
	if longhorn {
		c.Longhorn = &profile.Longhorn{}
	}

	if proxmox {
		c.Proxmox = &profile.Proxmox{QemuGuestAgent: agent}
	}

	return c
}

// The known IDs of docs/talos.md#schematic-id, computed by image-factory's own algorithm.
func TestKnownSchematicIDs(t *testing.T) {
	off := false

	for _, tc := range []struct {
		name    string
		cluster *profile.Cluster
		id      string
		exts    []string
	}{
		{"vanilla", cluster("v1.14.1", false, false, nil), "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba", nil},
		{"longhorn", cluster("v1.14.1", true, false, nil), "613e1592b2da41ae5e265e8789429f22e121aab91cb4deb6bc3c0b6262961245",
			[]string{ISCSITools, UtilLinuxTools}},
		{"proxmox agent only", cluster("v1.14.1", false, true, nil), "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515",
			[]string{QemuGuestAgent}},
		{"longhorn on proxmox (alphabetical, as the factory UI)", cluster("v1.14.1", true, true, nil),
			"88d1f7a5c4f1d3aba7df787c448c1d3d008ed29cfb34af53fa0df4336a56040b", []string{ISCSITools, QemuGuestAgent, UtilLinuxTools}},
		{"user order and duplicates do not matter", cluster("v1.14.1", true, true, nil, UtilLinuxTools, QemuGuestAgent, ISCSITools),
			"88d1f7a5c4f1d3aba7df787c448c1d3d008ed29cfb34af53fa0df4336a56040b", []string{ISCSITools, QemuGuestAgent, UtilLinuxTools}},
		{"iscsi only", cluster("v1.14.1", false, true, &off, ISCSITools), "c9078f9419961640c712a8bf2bb9174933dfcf1da383fd8ea2b7dc21493f8bac",
			[]string{ISCSITools}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := ForCluster(tc.cluster)
			if err != nil {
				t.Fatal(err)
			}

			if img.ID != tc.id {
				t.Errorf("ID = %s, want %s", img.ID, tc.id)
			}

			if strings.Join(img.Extensions(), ",") != strings.Join(tc.exts, ",") {
				t.Errorf("extensions = %v, want %v", img.Extensions(), tc.exts)
			}
		})
	}
}

func TestCanonicalYAMLIsTheHashInput(t *testing.T) {
	img, err := ForCluster(cluster("v1.14.1", true, false, nil))
	if err != nil {
		t.Fatal(err)
	}

	got, err := img.YAML()
	if err != nil {
		t.Fatal(err)
	}

	want := "customization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/iscsi-tools\n            - siderolabs/util-linux-tools\n"
	if string(got) != want {
		t.Errorf("canonical YAML:\n%s\nwant:\n%s", got, want)
	}
}

func TestImageReferences(t *testing.T) {
	for _, tc := range []struct {
		talos, installer, iso, file string
		proxmox                     bool
	}{
		{"v1.14.1", "factory.talos.dev/nocloud-installer/88d1f7a5c4f1d3aba7df787c448c1d3d008ed29cfb34af53fa0df4336a56040b:v1.14.1",
			"https://factory.talos.dev/image/88d1f7a5c4f1d3aba7df787c448c1d3d008ed29cfb34af53fa0df4336a56040b/v1.14.1/nocloud-amd64.iso",
			"talos-v1.14.1-nocloud-amd64-88d1f7a5c4f1d3ab.iso", true},
		{"v1.10.0", "factory.talos.dev/nocloud-installer/88d1f7a5c4f1d3aba7df787c448c1d3d008ed29cfb34af53fa0df4336a56040b:v1.10.0",
			"https://factory.talos.dev/image/88d1f7a5c4f1d3aba7df787c448c1d3d008ed29cfb34af53fa0df4336a56040b/v1.10.0/nocloud-amd64.iso",
			"talos-v1.10.0-nocloud-amd64-88d1f7a5c4f1d3ab.iso", true},
		// Before 1.10 there are no platform installers: the generic one.
		{"v1.9.5", "factory.talos.dev/installer/88d1f7a5c4f1d3aba7df787c448c1d3d008ed29cfb34af53fa0df4336a56040b:v1.9.5",
			"https://factory.talos.dev/image/88d1f7a5c4f1d3aba7df787c448c1d3d008ed29cfb34af53fa0df4336a56040b/v1.9.5/nocloud-amd64.iso",
			"talos-v1.9.5-nocloud-amd64-88d1f7a5c4f1d3ab.iso", true},
		{"v1.14.1", "factory.talos.dev/metal-installer/613e1592b2da41ae5e265e8789429f22e121aab91cb4deb6bc3c0b6262961245:v1.14.1",
			"https://factory.talos.dev/image/613e1592b2da41ae5e265e8789429f22e121aab91cb4deb6bc3c0b6262961245/v1.14.1/metal-amd64.iso",
			"talos-v1.14.1-metal-amd64-613e1592b2da41ae.iso", false},
	} {
		t.Run(tc.talos+tc.file, func(t *testing.T) {
			img, err := ForCluster(cluster(tc.talos, true, tc.proxmox, nil))
			if err != nil {
				t.Fatal(err)
			}

			if got := img.InstallerImage(); got != tc.installer {
				t.Errorf("installer = %s, want %s", got, tc.installer)
			}

			if got := img.ISOURL(); got != tc.iso {
				t.Errorf("ISO URL = %s, want %s", got, tc.iso)
			}

			if got := img.ISOFileName(); got != tc.file {
				t.Errorf("ISO file = %s, want %s", got, tc.file)
			}
		})
	}
}
