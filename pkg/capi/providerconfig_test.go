package capi_test

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/Masterminds/semver/v3"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	talosgenerate "github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/validation"

	"github.com/talforge/talforge/pkg/capi"
	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/machineconfig"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/talospatch"
)

// cabptConfig renders a machine's config the way CABPT v0.6.12 does
// (controllers/talosconfig_controller.go genConfigs and reconcileGenerate): machinery's
// generate with the cluster's name and endpoint, the Machine's Kubernetes version, the contract
// of talosVersion, the secrets bundle and the DNS domain, then the strategic patches in order
// and its hostname patch last.
func cabptConfig(t *testing.T, r *generate.Rendered, spec map[string]any, host string, port int, k8s, hostname string) config.Provider {
	t.Helper()
	contract, err := config.ParseContractFromVersion(spec["talosVersion"].(string))
	if err != nil {
		t.Fatal(err)
	}
	in, err := talosgenerate.NewInput(r.Cluster.Metadata.Name, fmt.Sprintf("https://%s:%d", host, port), strings.TrimPrefix(k8s, "v"),
		talosgenerate.WithVersionContract(contract), talosgenerate.WithSecretsBundle(r.Bundle), talosgenerate.WithDNSDomain("cluster.local"))
	if err != nil {
		t.Fatal(err)
	}
	typ, err := machine.ParseType(spec["generateType"].(string))
	if err != nil {
		t.Fatal(err)
	}
	base, err := in.Config(typ)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	if p, ok := spec["strategicPatches"].([]string); ok {
		texts = append(texts, p...)
	}
	// CABPT's hostname patch: a HostnameConfig from Talos 1.12.0-beta.0 on, by talosVersion
	// as semver; machine.network.hostname before.
	v, err := semver.NewVersion(spec["talosVersion"].(string))
	if err == nil && !v.LessThan(semver.MustParse("1.12.0-beta.0")) {
		texts = append(texts, "apiVersion: v1alpha1\nkind: HostnameConfig\nauto: off\nhostname: "+hostname+"\n")
	} else {
		texts = append(texts, "machine:\n  network:\n    hostname: "+hostname+"\n")
	}
	patches, err := configpatcher.LoadPatches(texts)
	if err != nil {
		t.Fatal(err)
	}
	out, err := configpatcher.Apply(configpatcher.WithConfig(base), patches)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := out.Config()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// cloudMode is how Talos runs on Proxmox's nocloud platform under CAPMOX: the config need not
// name an install disk (runtime mode.go: only metal requires one).
type cloudMode struct{}

func (cloudMode) String() string        { return "cloud" }
func (cloudMode) RequiresInstall() bool { return false }
func (cloudMode) InContainer() bool     { return false }

// TestProviderConfigsCarryTheCluster: the config CABPT renders for each role from the exported
// TalosConfig specs is valid for machinery and carries what talforge's configs carry: the
// cluster's identity, the installer image of its schematic, the VIP on control planes, the
// Longhorn user volume where the role has a data disk, and the profile's patches; for every
// config contract talforge renders (Talos 1.10 to 1.14).
func TestProviderConfigsCarryTheCluster(t *testing.T) {
	for _, tt := range []struct{ profile, talos string }{
		{"tazlab", ""}, {"ha", ""}, // Talos 1.14: multi-document Kubernetes config
		{"tazlab", "v1.13.4"}, {"tazlab", "v1.12.4"}, // network documents, v1alpha1 Kubernetes
		{"tazlab", "v1.11.3"}, {"tazlab", "v1.10.6"}, // machine.network, v1alpha1 only
	} {
		t.Run(tt.profile+tt.talos, func(t *testing.T) {
			c, err := profile.Load(filepath.Join("..", "..", "profiles", tt.profile+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if tt.talos != "" {
				c.Talos.Version, c.Talos.Kubernetes = tt.talos, profile.DefaultKubernetesVersion(tt.talos)
			}
			r, err := generate.RenderThrowaway(t.Context(), c)
			if err != nil {
				t.Fatal(err)
			}
			exp, err := capi.Build(t.Context(), r, capi.Options{})
			if err != nil {
				t.Fatal(err)
			}
			host, port, workerVersion := "", 0, ""
			for _, o := range exp.Objects {
				switch o.Kind {
				case "Cluster":
					ep := o.Spec["controlPlaneEndpoint"].(map[string]any)
					host, port = ep["host"].(string), ep["port"].(int)
				case "MachineDeployment":
					workerVersion = o.Spec["template"].(map[string]any)["spec"].(map[string]any)["version"].(string)
				}
			}
			for _, o := range exp.Objects {
				var spec map[string]any
				var version string
				role := profile.RoleWorker
				switch o.Kind {
				case "TalosControlPlane":
					spec, version, role = o.Spec["controlPlaneConfig"].(map[string]any)["controlplane"].(map[string]any), o.Spec["version"].(string), profile.RoleControlPlane
				case "TalosConfigTemplate":
					spec = o.Spec["template"].(map[string]any)["spec"].(map[string]any)
					version = workerVersion
				default:
					continue
				}
				node := c.Workers()
				if role == profile.RoleControlPlane {
					node = c.ControlPlanes()
				}
				cfg := cabptConfig(t, r, spec, host, port, version, node[0].Name)
				if _, err := cfg.ValidateAsClient(cloudMode{}, validation.WithLocal()); err != nil {
					t.Errorf("%s: the config CABPT renders is invalid: %v", role, err)
				}
				text := encodeConfig(t, cfg)
				if !strings.Contains(text, r.Bundle.Cluster.ID) || !strings.Contains(text, r.Bundle.Cluster.Secret) || !strings.Contains(text, r.Bundle.Secrets.BootstrapToken) {
					t.Errorf("%s: not the cluster's identity", role)
				}
				if got := machineconfig.InstallImage(cfg); got != r.Image.InstallerImage() {
					t.Errorf("%s: installs %q, want %q", role, got, r.Image.InstallerImage())
				}
				// As data, the provider's config is talforge's for every node of the role, but for
				// the node's own network (CAPMOX's network-config and CABPT's hostname patch).
				var own string
				for _, n := range node {
					var mine *machineconfig.Config
					for _, cfg := range r.Configs {
						if cfg.Node.Name == n.Name {
							mine = cfg
						}
					}
					theirs := cabptConfig(t, r, spec, host, port, version, n.Name)
					if !strings.Contains(encodeConfig(t, theirs), "hostname: "+n.Name) {
						t.Errorf("%s: the provider's config does not name its host", n.Name)
					}
					want, err := capi.RoleDocuments(mine.Provider)
					if err != nil {
						t.Fatal(err)
					}
					got, err := capi.RoleDocuments(theirs)
					if err != nil {
						t.Fatal(err)
					}
					if len(want) < 2 || !reflect.DeepEqual(byKey(got), byKey(want)) {
						diff, _ := talospatch.File(talospatch.Diff(got, want))
						t.Errorf("%s: the provider's config differs from talforge's (%d vs %d documents); what would make it talforge's:\n%s", n.Name, len(got), len(want), diff)
					}
					if n.Name == node[0].Name {
						own = string(mine.Bytes)
					}
				}
				checks := map[string]bool{}
				for _, marker := range []string{"time.cloudflare.com", "kind: UserVolumeConfig", "audit-log-maxage", "node.longhorn.io/create-default-disk", "NoSchedule"} {
					checks[marker] = strings.Contains(own, marker)
				}
				if role == profile.RoleControlPlane && c.Network.VIP != "" {
					checks["ip: "+c.Network.VIP] = true
				}
				for want, present := range checks {
					if strings.Contains(text, want) != present {
						t.Errorf("%s: %q in the config: %v, want %v\n%s", role, want, !present, present, text)
					}
				}
			}
		})
	}
}

func encodeConfig(t *testing.T, cfg config.Provider) string {
	t.Helper()
	data, err := cfg.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// byKey indexes documents by what identifies them: a config's documents are a set.
func byKey(docs []talospatch.Document) map[talospatch.DocKey]map[string]any {
	out := map[talospatch.DocKey]map[string]any{}
	for _, d := range docs {
		out[d.Key] = d.Data
	}
	return out
}
