package capi

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/config"
	talossecrets "github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"gopkg.in/yaml.v3"

	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/profile"
)

// API groups and the versions of them the pinned CRDs store.
const (
	clusterAPI   = "cluster.x-k8s.io/v1beta2"
	proxmoxAPI   = "infrastructure.cluster.x-k8s.io/v1alpha2"
	controlAPI   = "controlplane.cluster.x-k8s.io/v1alpha3"
	bootstrapAPI = "bootstrap.cluster.x-k8s.io/v1alpha3"

	// ClusterNameLabel is CAPI's label naming a cluster's objects.
	ClusterNameLabel = "cluster.x-k8s.io/cluster-name"
	deploymentLabel  = "cluster.x-k8s.io/deployment-name"
)

// Machinery's defaults for the pod and service networks (generate.DefaultOptions): the Talos
// bootstrap provider overwrites a config's subnets with the Cluster's clusterNetwork, so the
// Cluster must name the ones talforge's configs carry.
var (
	podSubnets     = []string{"10.244.0.0/16"}
	serviceSubnets = []string{"10.96.0.0/12"}
)

// Options tune the export.
type Options struct {
	// Namespace of the objects in the management cluster (default "default").
	Namespace string
	// Longhorn, when set, adds the Longhorn add-on objects.
	Longhorn *Longhorn
}

// Object is one Cluster API object, ready to encode.
type Object struct {
	APIVersion string         `yaml:"apiVersion" json:"apiVersion"`
	Kind       string         `yaml:"kind" json:"kind"`
	Metadata   Metadata       `yaml:"metadata" json:"metadata"`
	Spec       map[string]any `yaml:"spec,omitempty" json:"spec,omitempty"`
	// Data is a ConfigMap's content; StringData a Secret's.
	Data       map[string]string `yaml:"data,omitempty" json:"data,omitempty"`
	StringData map[string]string `yaml:"stringData,omitempty" json:"stringData,omitempty"`
	Type       string            `yaml:"type,omitempty" json:"type,omitempty"`
}

// Metadata is an object's name, namespace and labels.
type Metadata struct {
	Name      string            `yaml:"name" json:"name"`
	Namespace string            `yaml:"namespace" json:"namespace"`
	Labels    map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
}

// Loss is a field of the profile the objects cannot express.
type Loss struct {
	// Field is the profile field (e.g. "nodes[2].mac").
	Field string `json:"field"`
	// Why says what Cluster API does instead.
	Why string `json:"why"`
}

func (l Loss) String() string { return l.Field + ": " + l.Why }

// Export is the result of Export.
type Export struct {
	// Objects are the Cluster API objects, in the order a person would read them (the
	// Secrets are apart: they must be stored encrypted).
	Objects []Object
	// Secrets are the "<cluster>-talos" Secret with the Talos secrets bundle and, with
	// Longhorn backups, the S3 credentials for the ClusterResourceSet.
	Secrets []Object
	// Lossy lists what the objects cannot express; Notes what the management cluster's side
	// needs to match them (a VM template, the in-cluster IPAM provider).
	Lossy []Loss
	Notes []string
}

// ErrLossy is returned by Export.Err when the export cannot say everything the profile says.
var ErrLossy = errors.New("the Cluster API objects cannot express the whole profile")

// Err is ErrLossy with every loss, or nil.
func (e *Export) Err() error {
	if len(e.Lossy) == 0 {
		return nil
	}

	msgs := make([]string, len(e.Lossy))
	for i, l := range e.Lossy {
		msgs[i] = l.String()
	}

	return fmt.Errorf("%w (pass --allow-lossy to export anyway):\n  %s", ErrLossy, strings.Join(msgs, "\n  "))
}

// Build exports the rendered cluster r, secrets bundle included. The machine configs the Talos
// providers generate come from the same patches talforge applies, so a node keeps its config;
// its own network (address, hostname) comes from CAPMOX instead.
func Build(ctx context.Context, r *generate.Rendered, opts Options) (*Export, error) {
	c := r.Cluster
	if c.Proxmox == nil {
		return nil, fmt.Errorf("%s: proxmox: the profile has no proxmox section: Cluster API's Proxmox provider needs one", c.File())
	}

	if opts.Namespace == "" {
		opts.Namespace = "default"
	}

	b := &builder{r: r, c: c, ns: opts.Namespace, out: &Export{}}

	host, port, err := endpoint(c)
	if err != nil {
		return nil, err
	}

	pool, err := b.ipPool(host)
	if err != nil {
		return nil, err
	}

	b.lossesOfNodes()

	cp, err := b.talosControlPlane(ctx)
	if err != nil {
		return nil, err
	}

	objs := []Object{b.cluster(host, port), b.proxmoxCluster(host, port, pool)}
	objs = append(objs, b.machineTemplate(profile.RoleControlPlane), cp)

	if len(c.Workers()) > 0 {
		workers, err := b.talosConfigTemplate(ctx)
		if err != nil {
			return nil, err
		}

		objs = append(objs, b.machineTemplate(profile.RoleWorker), workers, b.machineDeployment())
	}

	secret, err := b.secret(r.Bundle)
	if err != nil {
		return nil, err
	}

	b.out.Objects, b.out.Secrets = objs, append([]Object{secret}, b.out.Secrets...)

	if opts.Longhorn != nil {
		if err := b.longhorn(opts.Longhorn); err != nil {
			return nil, err
		}
	}

	return b.out, nil
}

// builder holds what every object needs.
type builder struct {
	r   *generate.Rendered
	c   *profile.Cluster
	ns  string
	out *Export
}

func (b *builder) meta(name string) Metadata {
	return Metadata{Name: name, Namespace: b.ns, Labels: map[string]string{ClusterNameLabel: b.c.Metadata.Name}}
}

func (b *builder) lossy(field, format string, a ...any) {
	b.out.Lossy = append(b.out.Lossy, Loss{Field: field, Why: fmt.Sprintf(format, a...)})
}

// endpoint is the Kubernetes API endpoint's host and port.
func endpoint(c *profile.Cluster) (string, int, error) {
	u, err := url.Parse(c.ControlPlaneEndpoint())
	if err != nil {
		return "", 0, fmt.Errorf("%s: talos.endpoint: %w", c.File(), err)
	}

	port := 6443
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return "", 0, fmt.Errorf("%s: talos.endpoint: port %q: %w", c.File(), p, err)
		}
	}

	return u.Hostname(), port, nil
}

// kubernetesVersion is the profile's Kubernetes version with the "v" CACPPT's CRD requires.
func (b *builder) kubernetesVersion() string {
	return "v" + strings.TrimPrefix(b.c.Talos.Kubernetes, "v")
}

// talosVersion is the Talos version CABPT generates for: the profile's, in full, since CABPT
// reads it both as the config contract and as a semver (its hostname patch takes the
// HostnameConfig form only for a version it parses at 1.12.0-beta.0 or later).
func (b *builder) talosVersion() (string, error) {
	if _, err := config.ParseContractFromVersion(b.c.Talos.Version); err != nil {
		return "", fmt.Errorf("%s: talos.version: %w", b.c.File(), err)
	}

	return "v" + strings.TrimPrefix(b.c.Talos.Version, "v"), nil
}

// ipPool is the node addresses as CAPMOX's ipv4Config: its in-cluster IP pool hands them out.
// The API endpoint is never in it (CAPMOX's webhook refuses that): a cluster whose endpoint is a
// node's own address has no endpoint Cluster API can keep while it replaces machines.
func (b *builder) ipPool(endpointHost string) (map[string]any, error) {
	prefix, err := netip.ParsePrefix(b.c.Network.CIDR)
	if err != nil {
		return nil, fmt.Errorf("%s: network.cidr: %w", b.c.File(), err)
	}

	addrs := make([]string, 0, len(b.c.Nodes))
	for _, n := range b.c.Nodes {
		if n.IP == endpointHost {
			b.lossy("network.vip", "the API endpoint %s is node %s's own address; Cluster API replaces control-plane machines, so the endpoint must be an address none of them owns: set network.vip (it is left out of the machines' address pool)", endpointHost, n.Name)
			continue
		}

		addrs = append(addrs, n.IP)
	}

	return map[string]any{"addresses": addrs, "prefix": prefix.Bits(), "gateway": b.c.Network.Gateway}, nil
}

func (b *builder) secret(bundle *talossecrets.Bundle) (Object, error) {
	data, err := yaml.Marshal(bundle)
	if err != nil {
		return Object{}, fmt.Errorf("secrets bundle: %w", err)
	}

	return Object{APIVersion: "v1", Kind: "Secret", Metadata: b.meta(b.c.Metadata.Name + "-talos"),
		Type: "Opaque", StringData: map[string]string{"bundle": string(data)}}, nil
}
