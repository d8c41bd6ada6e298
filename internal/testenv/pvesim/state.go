package pvesim

import (
	"crypto/sha1" // PVE's config digest is SHA-1
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Storage is a PVE storage definition.
type Storage struct {
	ID      string
	Type    string // "dir", "lvmthin", "zfspool", "nfs", ...
	Content []string
	Path    string // for file-based storages
	Shared  bool
	// Total is the reported capacity in bytes (default 1 TiB).
	Total int64
}

func (st *Storage) fileBased() bool {
	switch st.Type {
	case "dir", "nfs", "cifs", "cephfs", "glusterfs", "btrfs":
		return true
	}
	return false
}

func (st *Storage) hasContent(ct string) bool {
	for _, c := range st.Content {
		if c == ct {
			return true
		}
	}
	return false
}

// Volume is a storage volume.
type Volume struct {
	VolID   string // "local-lvm:vm-100-disk-0", "local:iso/x.iso"
	Storage string
	Content string // images, iso, import, ...
	Format  string // raw, qcow2, iso
	Size    int64
	VMID    int // owner, 0 for none
	CTime   int64
}

// VM is the emulated state of one QEMU guest.
type VM struct {
	ID      int
	Node    string
	Config  map[string]string
	Pending map[string]string
	// PendingDelete holds keys scheduled for deletion at the next start.
	PendingDelete map[string]bool
	Running       bool
	StartedAt     time.Time
	HA            bool
	// Agent is what the QEMU guest agent inside the VM reports (guest-network-get-interfaces)
	// while the VM runs with agent enabled in its config; nil: no agent answers in the guest.
	Agent []AgentInterface
	// Snapshots are the config sections of the VM's snapshots, by name. The emulator takes
	// none itself; they matter where PVE refuses to touch a volume a snapshot uses.
	Snapshots map[string]map[string]string
}

func (v *VM) clone() VM {
	c := *v
	c.Config = copyMap(v.Config)
	c.Snapshots = copySnapshots(v.Snapshots)
	c.Pending = copyMap(v.Pending)
	c.Agent = cloneAgent(v.Agent)
	c.PendingDelete = map[string]bool{}
	for k := range v.PendingDelete {
		c.PendingDelete[k] = true
	}
	return c
}

func copySnapshots(snaps map[string]map[string]string) map[string]map[string]string {
	if snaps == nil {
		return nil
	}
	out := make(map[string]map[string]string, len(snaps))
	for name, conf := range snaps {
		out[name] = copyMap(conf)
	}
	return out
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Tags returns the VM's tags (sorted).
func (v *VM) Tags() []string { return splitList(v.Config["tags"]) }

// Name returns the VM name.
func (v *VM) Name() string { return v.Config["name"] }

// digest is the SHA-1 of the rendered config, like PVE's config digest.
func (v *VM) digest() string {
	keys := make([]string, 0, len(v.Config))
	for k := range v.Config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha1.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s: %s\n", k, v.Config[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// SeedVM describes a VM to place into the emulator before a test.
type SeedVM struct {
	ID      int
	Node    string // default: first node
	Config  map[string]string
	Running bool
	HA      bool
	// Agent is what the guest agent in the VM reports (see VM.Agent).
	Agent []AgentInterface
	// Snapshots are the VM's snapshots (see VM.Snapshots).
	Snapshots map[string]map[string]string
}

// Seed adds VMs directly (no task, no checks). Disk keys referencing volumes
// of the form "<storage>:vm-<id>-disk-<n>" create those volumes with the
// size given in the drive's size= option.
func (s *Server) Seed(vms ...SeedVM) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sv := range vms {
		node := sv.Node
		if node == "" {
			node = s.opts.Nodes[0]
		}
		v := &VM{ID: sv.ID, Node: node, Config: copyMap(sv.Config), Pending: map[string]string{},
			PendingDelete: map[string]bool{}, Running: sv.Running, HA: sv.HA, Agent: cloneAgent(sv.Agent),
			Snapshots: copySnapshots(sv.Snapshots)}
		if v.Running {
			v.StartedAt = s.opts.Now()
		}
		s.seedVolumes(v)
		s.vms[v.ID] = v
	}
}

// seedVolumes creates the volumes a VM's drive and unusedN keys reference that do not exist
// yet (s.mu held).
func (s *Server) seedVolumes(v *VM) {
	for k, val := range v.Config {
		if !isDriveKey(k) && !rxIndexedKey("unused").MatchString(k) {
			continue
		}
		d := parseDriveString(val)
		file := d.get("file")
		if rxVolumeID.MatchString(file) && s.volumes[file] == nil {
			size, _ := ParseSize(d.get("size"))
			st, _, _ := strings.Cut(file, ":")
			ct := "images"
			if d.get("media") == "cdrom" && !strings.Contains(file, "cloudinit") {
				ct = "iso"
			}
			s.volumes[file] = &Volume{VolID: file, Storage: st, Content: ct, Format: "raw", Size: size,
				VMID: volumeOwner(file), CTime: s.opts.Now().Unix()}
		}
	}
}

// Modify changes a VM directly, as another actor would (the GUI, qm set, another tool) and
// without a task or a lock: fn gets the live VM. Volumes that new drive keys reference are
// created as Seed does. Tags are normalised like PVE stores them. It reports whether the VM
// exists.
func (s *Server) Modify(id int, fn func(v *VM)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vms[id]
	if !ok {
		return false
	}
	fn(v)
	if t, ok := v.Config["tags"]; ok {
		v.Config["tags"] = normalizeTags(t)
	}
	s.seedVolumes(v)
	return true
}

// SeedVolume places a volume into a storage (e.g. an ISO).
func (s *Server) SeedVolume(v Volume) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.Storage == "" {
		v.Storage, _, _ = strings.Cut(v.VolID, ":")
	}
	if v.CTime == 0 {
		v.CTime = s.opts.Now().Unix()
	}
	if v.VMID == 0 {
		v.VMID = volumeOwner(v.VolID)
	}
	vv := v
	s.volumes[v.VolID] = &vv
}

// Container is an LXC container. PVE keeps one VMID space for VMs and containers
// (PVE::Cluster::check_vmid_unused), and /cluster/resources lists both.
type Container struct {
	ID         int
	Node, Name string
	Tags       string
}

// AddContainer puts an LXC container on the cluster.
func (s *Server) AddContainer(ct Container) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cts[ct.ID] = ct
}

// vmidTaken is PVE's check_vmid_unused: the error for a VMID a VM or a container holds
// ("" when free; s.mu held).
func (s *Server) vmidTaken(id int) string {
	if v, ok := s.vms[id]; ok {
		return fmt.Sprintf("VM %d already exists on node '%s'", id, v.Node)
	}
	if ct, ok := s.cts[id]; ok {
		return fmt.Sprintf("CT %d already exists on node '%s'", id, ct.Node)
	}
	return ""
}

// VMs returns copies of all VMs (sorted by ID).
func (s *Server) VMs() []VM {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]int, 0, len(s.vms))
	for id := range s.vms {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	out := make([]VM, 0, len(ids))
	for _, id := range ids {
		out = append(out, s.vms[id].clone())
	}
	return out
}

// VM returns a copy of one VM.
func (s *Server) VM(id int) (VM, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vms[id]
	if !ok {
		return VM{}, false
	}
	return v.clone(), true
}

// Volumes returns copies of all volumes (sorted by volid).
func (s *Server) Volumes() []Volume {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Volume, 0, len(s.volumes))
	for _, v := range s.volumes {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].VolID < out[j].VolID })
	return out
}

var rxOwner = regexp.MustCompile(`(?:^|[:/])(?:vm|base)-(\d+)-`)

// volumeOwner mirrors PVE::Storage::parse_volname's owner detection.
func volumeOwner(volid string) int {
	m := rxOwner.FindStringSubmatch(volid)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func rxIndexedKey(prefix string) *regexp.Regexp {
	switch prefix {
	case "net":
		return rxNetKey
	case "ipconfig":
		return rxIPConfigKey
	case "unused":
		return rxUnusedKey
	case "serial":
		return rxSerialKey
	case "usb":
		return rxUSBKey
	case "parallel":
		return rxParallelKey
	}
	return regexp.MustCompile("^" + prefix + `\d+$`)
}

var (
	rxNetKey      = regexp.MustCompile(`^net\d+$`)
	rxIPConfigKey = regexp.MustCompile(`^ipconfig\d+$`)
	rxUnusedKey   = regexp.MustCompile(`^unused\d+$`)
	rxSerialKey   = regexp.MustCompile(`^serial\d+$`)
	rxUSBKey      = regexp.MustCompile(`^usb\d+$`)
	rxParallelKey = regexp.MustCompile(`^parallel\d+$`)
)

func isDriveKey(k string) bool { return rxDriveName.MatchString(k) }

// propString is a parsed property string preserving the default key.
type propString struct {
	keys []string
	vals map[string]string
}

func (p *propString) get(k string) string { return p.vals[k] }

func (p *propString) set(k, v string) {
	if _, ok := p.vals[k]; !ok {
		p.keys = append(p.keys, k)
	}
	p.vals[k] = v
}

func (p *propString) del(k string) {
	delete(p.vals, k)
	for i, x := range p.keys {
		if x == k {
			p.keys = append(p.keys[:i], p.keys[i+1:]...)
			return
		}
	}
}

// parsePropString splits "a,k=v,..." with the given default key.
func parsePropString(s, defaultKey string) *propString {
	p := &propString{vals: map[string]string{}}
	for _, part := range strings.Split(s, ",") {
		if part == "" {
			continue
		}
		if k, v, ok := strings.Cut(part, "="); ok {
			p.set(k, v)
		} else {
			p.set(defaultKey, part)
		}
	}
	return p
}

func parseDriveString(s string) *propString { return parsePropString(s, "file") }

// printDrive renders a drive like print_property_string: the file first,
// then the other keys sorted.
func printDrive(p *propString) string {
	keys := make([]string, 0, len(p.vals))
	for k := range p.vals {
		if k != "file" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := []string{p.vals["file"]}
	for _, k := range keys {
		parts = append(parts, k+"="+p.vals[k])
	}
	return strings.Join(parts, ",")
}

var netModels = set("e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b",
	"i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3")

// parseNet parses a netN value into model, mac and the other options.
func parseNet(s string) (model, mac string, opts *propString) {
	opts = &propString{vals: map[string]string{}}
	for _, part := range strings.Split(s, ",") {
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		switch {
		case !ok:
			model = part
		case netModels[k]:
			model, mac = k, v
		case k == "model":
			model = v
		case k == "macaddr":
			mac = v
		default:
			opts.set(k, v)
		}
	}
	return model, mac, opts
}

// printNet renders netN like qemu-server's print_net.
func printNet(model, mac string, opts *propString) string {
	keys := make([]string, 0, len(opts.vals))
	for k := range opts.vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := []string{model + "=" + mac}
	for _, k := range keys {
		parts = append(parts, k+"="+opts.vals[k])
	}
	return strings.Join(parts, ",")
}

// normalizeTags mirrors PVE's tag normalisation (unique, sorted, ';'-joined).
func normalizeTags(s string) string {
	seen := map[string]bool{}
	var out []string
	for _, t := range splitList(s) {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ";")
}

// nextMAC returns a deterministic MAC with Proxmox's BC:24:11 prefix.
func (s *Server) nextMAC() string {
	s.macSeq++
	n := s.macSeq
	return fmt.Sprintf("BC:24:11:%02X:%02X:%02X", (n>>16)&0xff, (n>>8)&0xff, n&0xff)
}
