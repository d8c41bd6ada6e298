package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/atomicfile"
	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/profile"
)

func newInitCmd(o *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "init NAME",
		Short: "Set up a project: age identity, .sops.yaml rules and a starter profile",
		Long: `init prepares the current directory for a cluster named NAME:
  - creates an age identity at $SOPS_AGE_KEY_FILE or ~/.config/sops/age/keys.txt (mode 0600)
    when none exists, and prints its public key;
  - writes .sops.yaml creation rules for that key when the project has none;
  - writes profiles/NAME.yaml, a starter profile to edit, unless it exists.
It never overwrites anything.`,
		Example: `  talforge init homelab
  $EDITOR profiles/homelab.yaml
  talforge generate -p profiles/homelab.yaml`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 || !profile.ValidClusterName(args[0]) {
				return &flagError{errors.New("init takes one cluster name: lowercase letters, digits and '-' (e.g. talforge init homelab)")}
			}

			return nil
		},
		RunE: func(_ *cobra.Command, args []string) error {
			name := args[0]

			id, err := generate.EnsureSOPS(".", o.errOut)
			if err != nil {
				return err
			}

			fmt.Fprintf(o.out, "age public key: %s\n", id.Recipient)

			path := filepath.Join("profiles", name+".yaml")
			if _, err := os.Stat(path); err == nil {
				fmt.Fprintf(o.out, "%s exists: left as it is\n", path)

				return nil
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}

			if err := atomicfile.Write(path, []byte(strings.ReplaceAll(starterProfile, "NAME", name)), 0o644); err != nil {
				return err
			}

			fmt.Fprintf(o.out, "wrote %s: edit the network, Proxmox and nodes, then run `talforge validate -p %s`\n", path, path)

			return nil
		},
	}
}

const starterProfile = `# yaml-language-server: $schema=https://talforge.dev/schemas/cluster-v1alpha1.json
# Starter profile written by talforge init. Every field is documented in the JSON Schema
# (talforge schema). Relative paths are resolved against the project root.
apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata:
  name: NAME
talos:
  allowSchedulingOnControlPlanes: true
network:
  cidr: 192.168.1.0/24
  gateway: 192.168.1.1
  nameservers: [1.1.1.1, 9.9.9.9]
proxmox:
  endpoint: https://pve.lan:8006/api2/json
  node: pve
  storage: local-lvm
  defaults:
    cores: 4
    memory: 8192
    disk: 40G
    longhornDisk: 100G
nodes:
  - {name: NAME-cp-1, role: controlplane, ip: 192.168.1.51}
  - {name: NAME-worker-1, role: worker, ip: 192.168.1.61}
# longhorn:
#   replicaCount: 2
#   backup:
#     target: s3://my-bucket@eu-central-1/
#     credentialsFile: secrets/aws-backup.sops.yaml
`
