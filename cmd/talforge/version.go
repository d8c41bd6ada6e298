package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/version"
)

func newVersionCmd(o *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print talforge's version and the default versions it deploys",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(o.out, "talforge %s (%s)\ndefaults: Talos %s, Kubernetes %s, Longhorn %s\n",
				version.Version, runtime.Version(), profile.DefaultTalosVersion,
				profile.DefaultKubernetesVersion(profile.DefaultTalosVersion), profile.DefaultLonghornVersion)

			return err
		},
	}
}
