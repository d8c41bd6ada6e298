package generate

import (
	"fmt"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestLockMarshalParts: the lockfile that Run writes from two parts, its head encoded while
// the files are written and its tail after, has the bytes of the whole Lock encoded at once;
// a field added to Lock outside its two parts fails here. Node names include scalars yaml.v3
// quotes.
func TestLockMarshalParts(t *testing.T) {
	full := func(nodes int) *Lock {
		l := &Lock{
			LockHead: LockHead{
				Tool: "talforge test", Profile: "profiles/home.yaml", ProfileDigest: "sha256:00",
				Talos:     LockTalos{Version: "v1.14.1", Contract: "v1.14", Kubernetes: "v1.37.0"},
				Schematic: LockSchematic{ID: "88d1", Extensions: []string{"siderolabs/iscsi-tools"}, KernelArgs: []string{"net.ifnames=0"}, Installer: "i", ISO: "https://x/y.iso"},
				Longhorn:  &LockLonghorn{Chart: "1.11.3", Repo: "https://charts.longhorn.io"},
			},
			LockFiles: LockFiles{
				Encryption: "sha256:9a7c",
				Files:      map[string]string{"nodes/yes.yaml.enc": "sha256:1", "nodes/n10.yaml.enc": "sha256:2", "nodes/n9.yaml.enc": "sha256:3", "talosconfig.sops.yaml": "sha256:4"},
			},
		}
		for i := range nodes {
			name := fmt.Sprintf("n%d", i)
			switch i {
			case 1:
				name = "yes"
			case 2:
				name = "0x1F"
			}
			l.Nodes = append(l.Nodes, LockNode{Name: name, Role: "worker", IP: fmt.Sprintf("10.0.0.%d", i), MAC: "9a:17:61:39:a4:be", ConfigDigest: fmt.Sprintf("sha256:%02x", i)})
		}
		return l
	}

	bare := full(0)
	bare.Longhorn, bare.Schematic.Extensions, bare.Schematic.KernelArgs, bare.Files = nil, nil, nil, nil

	tests := map[string]*Lock{
		"1000 nodes":               full(1000),
		"3 nodes":                  full(3),
		"no nodes and no longhorn": bare,
	}
	for name, l := range tests {
		t.Run(name, func(t *testing.T) {
			whole, err := yaml.Marshal(l)
			if err != nil {
				t.Fatal(err)
			}

			got, err := l.Marshal()
			if err != nil {
				t.Fatal(err)
			}

			if want := lockComment + string(whole); string(got) != want {
				t.Fatalf("lockfile from parts:\n%s\nwant:\n%s", got, want)
			}

			// And it reads back with every node's digest found.
			back := readLockData(got)
			if back == nil {
				t.Fatal("the lockfile does not read back")
			}
			for _, n := range l.Nodes {
				if d := back.nodeDigest(n.Name); d != n.ConfigDigest {
					t.Fatalf("node %s: digest %q, want %q", n.Name, d, n.ConfigDigest)
				}
			}
		})
	}
}
