package talosnode

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/siderolabs/crypto/x509"
	factory "github.com/siderolabs/image-factory/pkg/schematic"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
)

// Cluster is the state several emulated nodes share: one etcd (membership and whether it was bootstrapped),
// the OS CA key that control planes hand out through trustd, and the kubeconfig served by control planes.
type Cluster struct {
	mu sync.Mutex

	bootstrapCalls       int
	conflictingBootstrap int
	// starting: a Bootstrap was accepted and etcd is starting (Options.EtcdStartDelay).
	starting     bool
	bootstrapped chan struct{}
	members      []etcdMember
	nextMemberID uint64
	// up holds the IPs of the cluster's nodes whose API is up: an etcd member runs on its node,
	// so it is healthy exactly while that node is up.
	up map[string]bool

	kubeconfig []byte
	osCA       *x509.PEMEncodedCertificateAndKey
	// schematics are the ones this world's Image Factory built images from, by ID.
	schematics map[string]factory.Schematic
}

type etcdMember struct {
	id       uint64
	hostname string
	ip       string
}

// NewCluster returns an empty cluster: etcd not bootstrapped, no members.
func NewCluster() *Cluster {
	return &Cluster{bootstrapped: make(chan struct{}), nextMemberID: 0x5a1e0001}
}

// SetKubeconfig sets the kubeconfig every control plane of this cluster serves through the Kubeconfig RPC.
// Without it, a control plane serves an admin kubeconfig generated from its machine config.
func (c *Cluster) SetKubeconfig(kubeconfig []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()

	c.kubeconfig = slices.Clone(kubeconfig)
}

// BootstrapCalls counts Bootstrap RPCs that reached the handler of a configured control plane (successful or
// not). A correct client makes exactly one per cluster.
func (c *Cluster) BootstrapCalls() int {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.bootstrapCalls
}

// ConflictingBootstraps counts Bootstrap calls made on a control plane that had not joined an already
// bootstrapped etcd yet. On real Talos that creates a second etcd cluster (split brain); the emulator answers
// AlreadyExists but records it so tests can assert it never happens.
func (c *Cluster) ConflictingBootstraps() int {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.conflictingBootstrap
}

// Bootstrapped reports whether etcd was bootstrapped.
func (c *Cluster) Bootstrapped() bool {
	select {
	case <-c.bootstrapped:
		return true
	default:
		return false
	}
}

// EtcdMembers returns the hostnames of the etcd members in join order.
func (c *Cluster) EtcdMembers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()

	names := make([]string, 0, len(c.members))
	for _, m := range c.members {
		names = append(names, m.hostname)
	}

	return names
}

// bootstrap makes the node the first etcd member. It mirrors Talos: the node-local check is "is my etcd data
// directory empty", so a member gets AlreadyExists, and so does (in the emulator) a node that had not joined yet.
// With later, etcd is only starting: finishBootstrap makes the member, and calls meanwhile get AlreadyExists.
func (c *Cluster) bootstrap(hostname, ip string, later bool) (alreadyExists bool) {
	c.mu.Lock()
	defer c.mu.Unlock()

	c.bootstrapCalls++

	if c.starting {
		return true
	}

	if len(c.members) > 0 {
		if !c.isMemberLocked(ip) {
			c.conflictingBootstrap++
		}

		return true
	}

	if later {
		c.starting = true

		return false
	}

	c.addMemberLocked(hostname, ip)
	close(c.bootstrapped)

	return false
}

// finishBootstrap ends a delayed bootstrap: etcd runs with its first member.
func (c *Cluster) finishBootstrap(hostname, ip string) {
	c.mu.Lock()
	defer c.mu.Unlock()

	c.starting = false

	if len(c.members) > 0 {
		return
	}

	c.addMemberLocked(hostname, ip)
	close(c.bootstrapped)
}

// abortBootstrap forgets a delayed bootstrap whose node went down before etcd started: its data
// directory stays empty, so Bootstrap may be called again.
func (c *Cluster) abortBootstrap() {
	c.mu.Lock()
	defer c.mu.Unlock()

	c.starting = false
}

// join adds a control plane to etcd once the cluster is bootstrapped; joining twice is a no-op.
func (c *Cluster) join(hostname, ip string) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if c.isMemberLocked(ip) {
		return
	}

	c.addMemberLocked(hostname, ip)
}

func (c *Cluster) isMember(ip string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.isMemberLocked(ip)
}

func (c *Cluster) isMemberLocked(ip string) bool {
	return slices.ContainsFunc(c.members, func(m etcdMember) bool { return m.ip == ip })
}

func (c *Cluster) addMemberLocked(hostname, ip string) {
	c.members = append(c.members, etcdMember{id: c.nextMemberID, hostname: hostname, ip: ip})
	c.nextMemberID++
}

// setUp records whether the node at ip is up.
func (c *Cluster) setUp(ip string, up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if c.up == nil {
		c.up = map[string]bool{}
	}

	c.up[ip] = up
}

// validateForUpgrade is etcd's pre-upgrade check a control plane runs before an upgrade
// (internal/pkg/etcd/etcd.go ValidateForUpgrade): two members would lose quorum while one
// reboots, and every member must be healthy. Upstream names an unhealthy member by its ID; the
// emulator names it by hostname (emulator choice: easier to read in test failures).
func (c *Cluster) validateForUpgrade() error {
	c.mu.Lock()
	defer c.mu.Unlock()

	if len(c.members) == 0 {
		return errNoEtcdEndpoints
	}

	if len(c.members) == 2 {
		return fmt.Errorf("etcd member count(%d) is insufficient to maintain quorum if upgrade commences", len(c.members))
	}

	for _, m := range c.members {
		if !c.up[m.ip] {
			return fmt.Errorf("etcd member %s is not healthy; all members must be healthy to perform an upgrade", m.hostname)
		}
	}

	return nil
}

// errNoEtcdEndpoints is what Talos answers when it asks etcd before any control plane runs it.
var errNoEtcdEndpoints = errors.New("failed to create etcd client: no controlplane endpoints discovered yet")

func (c *Cluster) memberList() []*machine.EtcdMember {
	c.mu.Lock()
	defer c.mu.Unlock()

	list := make([]*machine.EtcdMember, 0, len(c.members))
	for _, m := range c.members {
		list = append(list, &machine.EtcdMember{
			Id:         m.id,
			Hostname:   m.hostname,
			PeerUrls:   []string{"https://" + joinHostPort(m.ip, "2380")},
			ClientUrls: []string{"https://" + joinHostPort(m.ip, "2379")},
		})
	}

	return list
}

func (c *Cluster) servedKubeconfig() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()

	return slices.Clone(c.kubeconfig)
}

// publishOSCA records the OS CA key pair a control plane's config carries, so workers (whose config has only
// the CA certificate) can get a serving certificate, as Talos workers do from trustd.
func (c *Cluster) publishOSCA(ca *x509.PEMEncodedCertificateAndKey) {
	if ca == nil || len(ca.Key) == 0 {
		return
	}

	c.mu.Lock()
	defer c.mu.Unlock()

	if c.osCA == nil {
		c.osCA = ca.DeepCopy()
	}
}

func (c *Cluster) trustdCA() *x509.PEMEncodedCertificateAndKey {
	c.mu.Lock()
	defer c.mu.Unlock()

	if c.osCA == nil {
		return nil
	}

	return c.osCA.DeepCopy()
}
