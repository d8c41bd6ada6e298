package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/talforge/talforge/pkg/profile"
)

func newSchemaCmd(o *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the profile's JSON Schema (for yaml-language-server and editors)",
		Example: `  talforge schema > schemas/cluster-v1alpha1.json
  # then, first line of a profile:
  # yaml-language-server: $schema=../schemas/cluster-v1alpha1.json`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			data, err := profile.JSONSchema()
			if err != nil {
				return err
			}

			_, err = fmt.Fprintln(o.out, string(data))

			return err
		},
	}
}
