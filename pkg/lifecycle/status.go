package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/talforge/talforge/pkg/backuptarget"
	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/longhorn"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/proxmox"
	"github.com/talforge/talforge/pkg/restore"
	"github.com/talforge/talforge/pkg/rollout"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// VMStatus is a node's Proxmox VM.
type VMStatus struct {
	VMID int    `json:"vmid,omitempty"`
	Host string `json:"host,omitempty"`
	// State is running, stopped or missing.
	State string `json:"state"`
}

// KubeNodeStatus is a node's Kubernetes Node.
type KubeNodeStatus struct {
	Registered bool `json:"registered"`
	// Ready is the Ready condition's status (True, False, Unknown), "" when not registered.
	Ready string `json:"ready,omitempty"`
	// Kubelet is the kubelet version the node reports.
	Kubelet string `json:"kubelet,omitempty"`
	// Upgrading is the Talos version talforge upgrade cordoned the node for ("" when none):
	// an upgrade is in progress, or was interrupted (`talforge upgrade` finishes it).
	Upgrading string `json:"upgrading,omitempty"`
}

// NodeStatus is one node.
type NodeStatus struct {
	Name  string           `json:"name"`
	Role  string           `json:"role"`
	IP    string           `json:"ip"`
	VM    *VMStatus        `json:"vm,omitempty"`
	Talos TalosObservation `json:"talos"`
	// TalosVersion is the version a configured node reports.
	TalosVersion string `json:"talosVersion,omitempty"`
	// EtcdMember is set for control planes.
	EtcdMember *bool          `json:"etcdMember,omitempty"`
	Kubernetes KubeNodeStatus `json:"kubernetes"`
}

// BackupTargetStatus is Longhorn's default backup target.
type BackupTargetStatus struct {
	URL       string `json:"url"`
	Available bool   `json:"available"`
	Message   string `json:"message,omitempty"`
}

// VolumeStatus is one claim the profile declares, or a Longhorn volume found in the cluster.
type VolumeStatus struct {
	// Claim is namespace/name of the declared claim ("" for a volume the profile does not
	// declare).
	Claim    string `json:"claim,omitempty"`
	Declared bool   `json:"declared"`
	// Volume is the Longhorn volume behind the claim ("" when the claim is not bound).
	Volume     string `json:"volume,omitempty"`
	Exists     bool   `json:"exists"`
	State      string `json:"state,omitempty"`
	Robustness string `json:"robustness,omitempty"`
	// LastBackup is the newest backup, read straight from the backup target.
	LastBackup *backuptarget.Backup `json:"lastBackup,omitempty"`
}

// LonghornStatus is Longhorn on the cluster.
type LonghornStatus struct {
	Installed      bool               `json:"installed"`
	Version        string             `json:"version,omitempty"`
	ProfileVersion string             `json:"profileVersion"`
	ManagerVersion string             `json:"managerVersion,omitempty"`
	BackupTarget   BackupTargetStatus `json:"backupTarget"`
	Volumes        []VolumeStatus     `json:"volumes"`
}

// StatusReport is the cluster's state as every component reports it.
type StatusReport struct {
	Cluster string       `json:"cluster"`
	Nodes   []NodeStatus `json:"nodes"`
	// EtcdMembers as a configured control plane reports them.
	EtcdMembers []string        `json:"etcdMembers"`
	Kubernetes  string          `json:"kubernetes,omitempty"`
	Longhorn    *LonghornStatus `json:"longhorn,omitempty"`
	// Certificates are the stored talosconfig's and kubeconfig's client certificates.
	Certificates []CertificateStatus `json:"certificates,omitempty"`
	// Problems are the parts that could not be observed, and why.
	Problems []string `json:"problems,omitempty"`
	// now is when the report was made, for the certificates' remaining time.
	now time.Time
}

// Status observes the cluster: per node the VM, the Talos stage, etcd membership and the
// Kubernetes node; Longhorn's version, backup target and the last backup of every volume.
// What cannot be reached is reported in Problems rather than failing the whole report.
func Status(ctx context.Context, opts Options) (*StatusReport, error) {
	opts = opts.withDefaults()
	c, err := profile.LoadContext(ctx, opts.Profile)
	if err != nil {
		return nil, err
	}
	st := &StatusReport{Cluster: c.Metadata.Name, EtcdMembers: []string{}}
	for _, n := range c.Nodes {
		st.Nodes = append(st.Nodes, NodeStatus{Name: n.Name, Role: string(n.Role), IP: n.IP})
	}
	timeout := opts.Talos.CallTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	st.observeVMs(ctx, opts, c)
	st.observeTalos(ctx, opts, c, timeout)
	kc := st.kubeconfig(c)
	if kc != nil {
		st.observeKube(ctx, kc, timeout)
	}
	st.now = opts.Now()
	st.observeCertificates(c, kc, st.now)
	if c.Longhorn != nil {
		st.Longhorn = &LonghornStatus{ProfileVersion: c.Longhorn.Version, Volumes: []VolumeStatus{}}
		decl, _ := restore.Declarations(c) // the profile validated
		for _, d := range decl {
			st.Longhorn.Volumes = append(st.Longhorn.Volumes, VolumeStatus{Claim: d.String(), Declared: true, Volume: d.Name})
		}
		if kc != nil && st.Kubernetes != "" {
			st.observeLonghorn(ctx, opts, c, kc, decl)
		}
		st.observeBackups(ctx, opts, c, decl)
	}
	return st, nil
}

// observeBackups reads the backup target straight from S3 — it answers when the cluster does
// not — and shows each claim's and volume's newest backup.
func (st *StatusReport) observeBackups(ctx context.Context, opts Options, c *profile.Cluster, decl []restore.Declared) {
	if c.Longhorn.Backup == nil {
		return
	}
	decrypt := opts.Longhorn.Decrypt
	if decrypt == nil {
		decrypt = sopsfile.DecryptFile
	}
	creds, err := longhorn.BackupCredentials(c, decrypt)
	if err != nil {
		st.problem("backup target: %v", err)
		return
	}
	lctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	listing, err := backuptarget.List(lctx, c.Longhorn.Backup.Target, creds)
	if err != nil {
		st.problem("backup target %s: %v", c.Longhorn.Backup.Target, err)
		return
	}
	vs := st.Longhorn.Volumes
	for i := range vs {
		if i < len(decl) && vs[i].Declared {
			vs[i].LastBackup = latestOf(listing, decl[i])
		}
		if vs[i].LastBackup == nil && vs[i].Volume != "" {
			vs[i].LastBackup = listing.LatestForVolume(vs[i].Volume)
		}
	}
}

func (st *StatusReport) problem(format string, args ...any) {
	st.Problems = append(st.Problems, fmt.Sprintf(format, args...))
}

func (st *StatusReport) observeVMs(ctx context.Context, opts Options, c *profile.Cluster) {
	if c.Proxmox == nil {
		return
	}
	api, err := opts.ConnectPVE(ctx, c)
	var vms []proxmox.VMResource
	if err == nil {
		vms, err = api.ListVMs(ctx)
	}
	if err != nil {
		st.problem("Proxmox: %v", err)
		return
	}
	for i := range st.Nodes {
		n := &st.Nodes[i]
		n.VM = &VMStatus{State: "missing"}
		for _, vm := range vms {
			if vm.Name == n.Name && vm.IsNodeOf(c.Metadata.Name) {
				n.VM = &VMStatus{VMID: vm.VMID, Host: vm.Node, State: "stopped"}
				if vm.Running {
					n.VM.State = "running"
				}
			}
		}
	}
}

func (st *StatusReport) observeTalos(ctx context.Context, opts Options, c *profile.Cluster, timeout time.Duration) {
	unknown := func(format string, err error) {
		st.problem(format, err)
		for i := range st.Nodes {
			st.Nodes[i].Talos = TalosObservation{Mode: "unknown"}
		}
	}
	in, _, err := renderTalos(ctx, c)
	if err != nil {
		unknown("Talos: %v", err)
		return
	}
	id, err := bootstrap.ParseIdentity(in.Talosconfig)
	if err != nil {
		unknown("talosconfig: %v", err)
		return
	}
	port := opts.Talos.TalosPort
	var wg sync.WaitGroup
	for i := range st.Nodes {
		n := &st.Nodes[i]
		if n.VM != nil && n.VM.State != "running" {
			n.Talos = TalosObservation{Mode: "unreachable", Error: "its VM is " + n.VM.State}
			continue
		}
		wg.Go(func() {
			n.Talos = bootstrap.Observe(ctx, bootstrap.Endpoint(n.IP, port), id, timeout)
			if n.Talos.Mode == "configured" {
				v, _ := bootstrap.NodeVersions(ctx, bootstrap.Endpoint(n.IP, port), id, timeout)
				n.TalosVersion = v.Talos
			}
		})
	}
	wg.Wait()
	var errs []string
	for i := range st.Nodes {
		n := &st.Nodes[i]
		if n.Role != string(profile.RoleControlPlane) || n.Talos.Mode != "configured" {
			continue
		}
		members, err := bootstrap.EtcdMembers(ctx, bootstrap.Endpoint(n.IP, port), id, timeout)
		if err != nil {
			errs = append(errs, n.Name+": "+bootstrap.ShortError(err))
			continue
		}
		st.EtcdMembers = members
		break
	}
	if len(st.EtcdMembers) == 0 && len(errs) > 0 {
		st.problem("etcd: %s", strings.Join(errs, "; "))
	}
	for i := range st.Nodes {
		n := &st.Nodes[i]
		if n.Role == string(profile.RoleControlPlane) {
			n.EtcdMember = new(slices.Contains(st.EtcdMembers, n.Name))
		}
	}
}

func (st *StatusReport) kubeconfig(c *profile.Cluster) []byte {
	kc, err := sopsfile.DecryptFile(filepath.Join(c.OutputDir(), bootstrap.KubeconfigFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		st.problem("Kubernetes: no %s yet (the cluster was not bootstrapped)", bootstrap.KubeconfigFile)
		return nil
	case err != nil:
		st.problem("Kubernetes: %v", err)
		return nil
	}
	return kc
}

func (st *StatusReport) observeKube(ctx context.Context, kc []byte, timeout time.Duration) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		st.problem("Kubernetes: kubeconfig: %v", err)
		return
	}
	cfg.Timeout = timeout
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		st.problem("Kubernetes: %v", err)
		return
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		st.problem("Kubernetes: %s: %v", cfg.Host, err)
		return
	}
	st.Kubernetes = cfg.Host
	for i := range st.Nodes {
		n := &st.Nodes[i]
		for _, kn := range nodes.Items {
			if kn.Name != n.Name {
				continue
			}
			n.Kubernetes = KubeNodeStatus{Registered: true, Ready: string(corev1.ConditionUnknown),
				Kubelet: kn.Status.NodeInfo.KubeletVersion, Upgrading: kn.Annotations[rollout.AnnotationUpgrading]}
			for _, cond := range kn.Status.Conditions {
				if cond.Type == corev1.NodeReady {
					n.Kubernetes.Ready = string(cond.Status)
				}
			}
		}
	}
}

func (st *StatusReport) observeLonghorn(ctx context.Context, opts Options, c *profile.Cluster, kc []byte, decl []restore.Declared) {
	ls := st.Longhorn
	lo := opts.Longhorn
	lo.Kubeconfig, lo.Log = kc, io.Discard
	cl, err := longhorn.New(c, lo)
	if err != nil {
		st.problem("Longhorn: %v", err)
		return
	}
	s, err := cl.Status(ctx)
	if err != nil {
		st.problem("Longhorn: %v", err)
		return
	}
	ls.Installed, ls.Version = s.Installed, s.ChartVersion
	if s.Health != nil {
		ls.ManagerVersion = s.Health.ManagerVersion
	}
	ls.BackupTarget = BackupTargetStatus{URL: s.BackupTarget.URL, Available: s.BackupTarget.Available, Message: s.BackupTarget.Message}
	if !s.Installed {
		return
	}
	ro := opts.Restore
	ro.Log = io.Discard
	rc, err := restore.New(kc, ro)
	if err != nil {
		st.problem("Longhorn volumes: %v", err)
		return
	}
	vols, err := rc.Volumes(ctx)
	if err != nil {
		st.problem("Longhorn volumes: %v", err)
		return
	}
	byVolume := map[string]*VolumeStatus{}
	for i, d := range decl {
		vs := &ls.Volumes[i]
		name, err := rc.ClaimVolume(ctx, d)
		if err != nil {
			st.problem("claim %s: %v", d, err)
			continue
		}
		if name != "" {
			vs.Volume, byVolume[name] = name, vs
		}
	}
	var undeclared []VolumeStatus // appended after the loop: byVolume points into ls.Volumes
	for _, v := range vols {
		vs, ok := byVolume[v.Name]
		if !ok {
			undeclared = append(undeclared, VolumeStatus{Volume: v.Name})
			vs = &undeclared[len(undeclared)-1]
		}
		vs.Exists, vs.State, vs.Robustness = true, v.State, v.Robustness
		if v.Restoring {
			vs.State += " (restoring)"
		}
	}
	ls.Volumes = append(ls.Volumes, undeclared...)
}

// WriteJSON writes the report as indented JSON.
func (st *StatusReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(st)
}

// Print writes the report for people.
func (st *StatusReport) Print(w io.Writer) {
	fmt.Fprintf(w, "Cluster %s\n\n", st.Cluster)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tIP\tVM\tTALOS\tVERSION\tETCD\tKUBERNETES")
	for _, n := range st.Nodes {
		vm := "-"
		if n.VM != nil {
			vm = n.VM.State
			if n.VM.VMID != 0 {
				vm = fmt.Sprintf("%d %s", n.VM.VMID, n.VM.State)
			}
		}
		talos := n.Talos.Mode
		if n.Talos.Stage != "" {
			talos += ", " + n.Talos.Stage
		}
		if n.Talos.Error != "" {
			talos += ": " + n.Talos.Error
		}
		etcd := "-"
		if n.EtcdMember != nil {
			etcd = map[bool]string{true: "member", false: "not a member"}[*n.EtcdMember]
		}
		kube := "not registered"
		if n.Kubernetes.Registered {
			kube = "Ready=" + n.Kubernetes.Ready
			if n.Kubernetes.Kubelet != "" {
				kube += ", kubelet " + n.Kubernetes.Kubelet
			}
			if n.Kubernetes.Upgrading != "" {
				kube += ", cordoned: upgrade to " + n.Kubernetes.Upgrading + " in progress"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, n.IP, vm, talos, orDash(n.TalosVersion), etcd, kube)
	}
	tw.Flush() // the writer's errors surface on the next write
	members := "none"
	if len(st.EtcdMembers) > 0 {
		members = strings.Join(st.EtcdMembers, ", ")
	}
	fmt.Fprintf(w, "\netcd members: %s\n", members)
	if st.Kubernetes != "" {
		fmt.Fprintf(w, "Kubernetes:   %s\n", st.Kubernetes)
	}
	if ls := st.Longhorn; ls != nil {
		switch {
		case !ls.Installed:
			fmt.Fprintf(w, "Longhorn:     not installed (profile: %s)\n", ls.ProfileVersion)
		default:
			fmt.Fprintf(w, "Longhorn:     %s (manager %s, profile %s)\n", ls.Version, orUnknown(ls.ManagerVersion), ls.ProfileVersion)
			bt := ls.BackupTarget
			switch {
			case bt.URL == "":
				fmt.Fprintln(w, "Backups:      no backup target")
			case bt.Available:
				fmt.Fprintf(w, "Backups:      %s available\n", bt.URL)
			default:
				fmt.Fprintf(w, "Backups:      %s UNAVAILABLE: %s\n", bt.URL, bt.Message)
			}
		}
		if len(ls.Volumes) > 0 {
			fmt.Fprintln(w)
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CLAIM\tVOLUME\tSTATE\tLAST BACKUP")
			for _, v := range ls.Volumes {
				state := "missing"
				if v.Exists {
					state = v.State + "/" + v.Robustness
				}
				last := "none in the backup target"
				if b := v.LastBackup; b != nil {
					last = fmt.Sprintf("%s %s (%s)", b.Name, b.Created.UTC().Format(time.RFC3339), formatBytes(b.VolumeSize))
				}
				claim := orDash(v.Claim)
				if !v.Declared {
					claim = "(not declared)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", claim, orDash(v.Volume), state, last)
			}
			tw.Flush() // as above
		}
	}
	st.printCertificates(w, st.now)
	if len(st.Problems) > 0 {
		fmt.Fprintln(w, "\nCould not observe:")
		for _, p := range st.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
