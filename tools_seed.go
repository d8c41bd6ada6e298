//go:build seed

package seed

import (
	_ "github.com/Telmate/proxmox-api-go/proxmox"
	_ "github.com/getsops/sops/v3/decrypt"
	_ "github.com/invopop/jsonschema"
	_ "github.com/siderolabs/image-factory/pkg/schematic"
	_ "github.com/siderolabs/talos/pkg/machinery/config/generate"
	_ "github.com/spf13/cobra"
	_ "gopkg.in/yaml.v3"
	_ "helm.sh/helm/v3/pkg/action"
	_ "k8s.io/client-go/kubernetes"
)
