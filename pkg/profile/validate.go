// Validation of the defaulted profile: the entry point, the header, versions, Talos and Proxmox.

package profile

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/compatibility"
)

// Compiled on first use, not at package initialisation, to keep start-up cheap (issue 16).
var (
	// Longhorn webhook rules (longhorn-manager util.ValidateName, types.NameMaximumLength).
	recurringJobNameRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]+$`)
	})
	recurringJobGroupRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)
	})
	extensionRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9._-]*$`)
	})
	// PVE identifiers (pve-node, pve-storage-id, bridge names).
	pveIDRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]*$`)
	})
	// s3://bucket@region/[path/] (Longhorn backupstore s3 URL form with region).
	s3TargetRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])@([a-z0-9-]+)/(.*)$`)
	})
)

const (
	maxRecurringJobName = 40  // longhorn-manager types.NameMaximumLength
	maxRecurringRetain  = 100 // default recurring-job-max-retention
	minTalosMemoryMiB   = 2048
)

// normalize rewrites values whose spelling varies but whose meaning does not.
func (c *Cluster) normalize() {
	c.Talos.Version = withV(c.Talos.Version)
	c.Talos.Kubernetes = withV(c.Talos.Kubernetes)

	for i := range c.Nodes {
		c.Nodes[i].MAC = strings.ToLower(c.Nodes[i].MAC)
	}

	if c.Longhorn != nil {
		c.Longhorn.Version = withoutV(c.Longhorn.Version)
	}
}

// validate checks the defaulted profile and returns every error and warning. Once ctx is done
// it returns early, with what it found so far; the caller checks ctx.
func (c *Cluster) validate(ctx context.Context) (errs, warns Problems) {
	e := &problems{src: c.src}
	w := &problems{src: c.src}

	c.validateHeader(e)
	c.validateVersions(e)
	c.validateTalos(e)
	prefix := c.validateNetwork(e)
	c.validateNodes(ctx, e, w, prefix)
	c.validateProxmox(ctx, e, w)
	c.validateFiles(ctx, e)
	c.validateLonghorn(ctx, e, w)

	return e.list, w.list
}

func (c *Cluster) validateHeader(e *problems) {
	if c.APIVersion != APIVersion {
		e.add("apiVersion", "set apiVersion: "+APIVersion, "expected %q, got %q", APIVersion, c.APIVersion)
	}

	if c.Kind != Kind {
		e.add("kind", "set kind: "+Kind, "expected %q, got %q", Kind, c.Kind)
	}

	switch name := c.Metadata.Name; {
	case name == "":
		e.add("metadata.name", "name the cluster, e.g. metadata: {name: homelab}", "is required")
	case !ValidClusterName(name):
		e.add("metadata.name", "use lowercase letters, digits and '-', at most 63 characters", "%q is not a DNS label", name)
	}
}

func (c *Cluster) validateVersions(e *problems) {
	tv, err := parseVersion(c.Talos.Version)

	switch {
	case err != nil:
		e.add("talos.version", "write it like "+DefaultTalosVersion, "%v", err)
	case !supportedTalos.contains(tv):
		e.add("talos.version", "use a Talos release from "+supportedTalos.String(), "Talos %s is not supported (talforge supports the %s config contracts)", c.Talos.Version, supportedTalos)
	default:
		if c.Talos.Kubernetes == "" {
			break
		}

		if _, err := parseVersion(c.Talos.Kubernetes); err != nil {
			e.add("talos.kubernetes", "write it like "+DefaultKubernetesVersion(c.Talos.Version), "%v", err)

			break
		}

		k8s, kerr := compatibility.ParseKubernetesVersion(c.Talos.Kubernetes)
		talos, terr := compatibility.ParseTalosVersion(&machine.VersionInfo{Tag: c.Talos.Version})

		if kerr == nil && terr == nil {
			if err := k8s.SupportedWith(talos); err != nil {
				e.add("talos.kubernetes", "use a Kubernetes version Talos "+tv.MajorMinor()+" supports, e.g. "+DefaultKubernetesVersion(c.Talos.Version), "%v", err)
			}
		}
	}

	if l := c.Longhorn; l != nil {
		lv, err := parseVersion(l.Version)

		switch {
		case err != nil:
			e.add("longhorn.version", "write it like "+DefaultLonghornVersion, "%v", err)
		case !longhornRange().contains(lv):
			e.add("longhorn.version", "use a Longhorn chart from "+SupportedLonghorn(), "Longhorn %s is not supported", l.Version)
		}
	}
}

func (c *Cluster) validateTalos(e *problems) {
	seen := map[string]bool{}

	for i, ext := range c.Talos.Extensions {
		f := fmt.Sprintf("talos.extensions[%d]", i)

		switch {
		case !extensionRE().MatchString(ext):
			e.add(f, "official extensions are named like siderolabs/qemu-guest-agent", "%q is not an extension name", ext)
		case seen[ext]:
			e.add(f, "list each extension once", "%q is listed twice", ext)
		}

		seen[ext] = true
	}

	if ep := c.Talos.Endpoint; ep != "" {
		u, err := url.Parse(ep)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.Path != "" {
			e.add("talos.endpoint", "write it like https://k8s.lan:6443", "%q is not an https://host:port URL", ep)
		}
	}

	if !strings.HasPrefix(c.Talos.InstallDisk, "/dev/") {
		e.add("talos.installDisk", "name a device like /dev/sda", "%q is not a device path", c.Talos.InstallDisk)
	}

	if strings.Contains(c.Talos.ImageFactory, "/") {
		e.add("talos.imageFactory", "give only the host, e.g. factory.talos.dev", "%q is not a host name", c.Talos.ImageFactory)
	}
}

func (c *Cluster) validateProxmox(ctx context.Context, e, w *problems) {
	p := c.Proxmox
	if p == nil {
		return
	}

	if u, err := url.Parse(p.Endpoint); p.Endpoint == "" {
		e.add("proxmox.endpoint", "set it like https://pve.lan:8006/api2/json", "is required")
	} else if err != nil || u.Scheme != "https" || u.Host == "" {
		e.add("proxmox.endpoint", "set it like https://pve.lan:8006/api2/json", "%q is not an https URL", p.Endpoint)
	}

	for field, v := range map[string]string{"proxmox.node": p.Node, "proxmox.storage": p.Storage, "proxmox.isoStorage": p.ISOStorage, "proxmox.bridge": p.Bridge} {
		switch {
		case v == "":
			e.add(field, "name it as Proxmox shows it", "is required")
		case !pveIDRE().MatchString(v):
			e.add(field, "Proxmox IDs start with a letter and use letters, digits, '.', '_' and '-'", "%q is not a valid Proxmox ID", v)
		}
	}

	if p.VLAN != 0 && (p.VLAN < 1 || p.VLAN > 4094) {
		e.add("proxmox.vlan", "use 1-4094, or leave it out for untagged", "%d is not a VLAN tag", p.VLAN)
	}

	if CPUCannotBootTalos(p.CPU) {
		e.add("proxmox.cpu", "use cpu: host (or x86-64-v2-AES to allow live migration)", "CPU type %q lacks the x86-64-v2 instructions Talos needs; the VM would boot-loop", p.CPU)
	}

	if p.Template != 0 && (p.Template < 100 || p.Template > 999999999) {
		e.add("proxmox.template", "Proxmox VMIDs are 100-999999999", "%d is out of range", p.Template)
	}

	for i, n := range c.Nodes {
		if ctx.Err() != nil {
			return
		}

		// A value the node does not set itself comes from proxmox.defaults: blame that.
		f := func(name string) string {
			own := fmt.Sprintf("nodes[%d].%s", i, name)
			if _, set := c.src.pos[own]; set || c.src == nil {
				return own
			}

			if _, set := c.src.pos["proxmox.defaults."+name]; set {
				return "proxmox.defaults." + name
			}

			return own
		}

		if n.PVENode != "" && !pveIDRE().MatchString(n.PVENode) {
			e.add(f("pveNode"), "name the Proxmox host as Proxmox shows it", "%q is not a valid Proxmox node name", n.PVENode)
		}

		if n.Cores < 1 || n.Cores > 512 {
			e.add(f("cores"), "use 2 or more cores", "%d cores is out of range", n.Cores)
		}

		switch {
		case n.Memory < 1024:
			e.add(f("memory"), "give the node at least 2048 (MiB)", "%d MiB is below what Talos can run in", n.Memory)
		case n.Role == RoleControlPlane && n.Memory < minTalosMemoryMiB:
			w.add(f("memory"), "give control planes at least 2048 MiB (4096 recommended)", "%d MiB is below Talos' control-plane minimum", n.Memory)
		}

		if gib, err := SizeGiB(n.Disk); err != nil {
			e.add(f("disk"), "write a size in GiB like 40G", "%v", err)
		} else if gib < 10 {
			e.add(f("disk"), "give the OS disk at least 10G", "%dG is below Talos' minimum of 10 GiB", gib)
		}

	}
}

func oneOf(s string, options ...string) bool {
	for _, o := range options {
		if s == o {
			return true
		}
	}

	return false
}
