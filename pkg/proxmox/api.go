package proxmox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// API is the part of the Proxmox VE REST API that provisioning needs. Telmate (NewTelmateAPI)
// implements it with github.com/Telmate/proxmox-api-go; everything in this package talks to
// Proxmox only through it.
//
// Mutating calls start PVE worker tasks and return their UPID without waiting: the caller
// polls TaskStatus (see Waiter) so that a 300 ms task is not stretched to Telmate's fixed
// 2 s polling interval. DeleteVM is the exception (Telmate offers no DELETE that returns the
// task id) and returns when the task has finished.
type API interface {
	// Version returns the PVE version, e.g. "9.1.1".
	Version(ctx context.Context) (string, error)
	// ListVMs lists the QEMU guests the token may audit (GET /cluster/resources?type=vm).
	ListVMs(ctx context.Context) ([]VMResource, error)
	// NextID returns a free VMID (GET /cluster/nextid).
	NextID(ctx context.Context) (int, error)
	// IsFreeID reports whether a VMID is unused (GET /cluster/nextid?vmid=).
	IsFreeID(ctx context.Context, vmid int) (bool, error)
	// VMConfig returns a VM's configuration with pending changes applied, as strings.
	VMConfig(ctx context.Context, node string, vmid int) (map[string]string, error)
	// PendingKeys lists config keys whose change waits for the next VM start.
	PendingKeys(ctx context.Context, node string, vmid int) ([]string, error)
	// CreateVM starts a qmcreate task (POST /nodes/{node}/qemu).
	CreateVM(ctx context.Context, node string, vmid int, params Params) (string, error)
	// CloneVM starts a full clone of template into newID (POST .../clone).
	CloneVM(ctx context.Context, node string, template, newID int, params Params) (string, error)
	// UpdateVM starts a qmconfig task (POST /nodes/{node}/qemu/{vmid}/config).
	UpdateVM(ctx context.Context, node string, vmid int, params Params) (string, error)
	// ResizeDisk grows a disk to size (PUT .../resize); a non-empty digest makes PVE refuse
	// the change if the VM's config changed since it was read.
	ResizeDisk(ctx context.Context, node string, vmid int, disk, size, digest string) (string, error)
	// StartVM and StopVM start qmstart / qmstop tasks.
	StartVM(ctx context.Context, node string, vmid int) (string, error)
	StopVM(ctx context.Context, node string, vmid int) (string, error)
	// DeleteVM destroys a stopped VM and waits for the task.
	DeleteVM(ctx context.Context, node string, vmid int, purge, destroyUnreferenced bool) error
	// MoveDisk reassigns a disk to another VM on the same node (POST .../move_disk).
	MoveDisk(ctx context.Context, node string, vmid int, req MoveDiskRequest) (string, error)
	// StorageContent lists volumes of a content type on a node's storage.
	StorageContent(ctx context.Context, node, storage, content string) ([]StorageVolume, error)
	// DownloadURL makes PVE fetch a file into a storage (POST .../download-url).
	DownloadURL(ctx context.Context, node, storage string, req DownloadRequest) (string, error)
	// TaskStatus polls a task.
	TaskStatus(ctx context.Context, upid string) (TaskStatus, error)
	// TaskLog returns up to the last n lines of a task's log.
	TaskLog(ctx context.Context, upid string, n int) ([]string, error)
	// GuestInterfaces returns the network interfaces the QEMU guest agent of a running VM
	// reports (GET .../agent/network-get-interfaces; it only reads, but needs
	// VM.GuestAgent.Audit on PVE 9, VM.Monitor on PVE 8). An error wrapping ErrNoGuestAgent
	// means there is no agent to ask: none configured, the VM stopped, or no agent running in
	// the guest.
	GuestInterfaces(ctx context.Context, node string, vmid int) ([]GuestInterface, error)
}

// Params are API parameters in PVE's string form.
type Params map[string]string

// Keys returns the parameter names sorted.
func (p Params) Keys() []string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	return keys
}

// VMResource is one QEMU guest of /cluster/resources.
type VMResource struct {
	VMID     int
	Node     string
	Name     string
	Running  bool
	Locked   bool
	Template bool
	Tags     []string
	// Container marks an LXC container: it shares the VMID space with VMs, so it can hold a
	// VMID the profile fixes, but it is never a node, a holder or anything talforge changes.
	Container bool
}

// HasTag reports whether the VM carries a tag (PVE tags are case-insensitive).
func (r VMResource) HasTag(tag string) bool {
	for _, t := range r.Tags {
		if strings.EqualFold(t, tag) {
			return true
		}
	}

	return false
}

// TaskStatus is the state of a PVE worker task.
type TaskStatus struct {
	Running    bool
	ExitStatus string
}

// Compiled on first use, not at package initialisation, to keep start-up cheap (issue 16).
var rxWarnings = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^WARNINGS: \d+$`)
})

// Succeeded reports a stopped task whose exit status is "OK" or "WARNINGS: n"
// (docs/proxmox.md#task-status).
func (s TaskStatus) Succeeded() bool {
	return !s.Running && (s.ExitStatus == "OK" || rxWarnings().MatchString(s.ExitStatus))
}

// MoveDiskRequest reassigns a disk of a VM to another VM on the same node (move_disk with
// target-vmid).
type MoveDiskRequest struct {
	Disk       string
	TargetVMID int
	TargetDisk string
	// Digest and TargetDigest are the config digests of the source and the target VM as last
	// checked. PVE compares them under both config locks and refuses the move if either
	// config changed meanwhile (qemu-server src/PVE/API2/Qemu.pm move_vm_disk,
	// $load_and_check_reassign_configs): ownership checked before the call cannot go stale.
	Digest, TargetDigest string
}

// GuestInterface is a network interface as the QEMU guest agent reports it.
type GuestInterface struct {
	Name string
	MAC  net.HardwareAddr
	// Addrs are the interface's IPv4 and IPv6 addresses.
	Addrs []netip.Addr
}

// ErrNoGuestAgent is wrapped by GuestInterfaces errors that mean no agent can answer for the
// VM (qemu-server src/PVE/QemuServer/Agent.pm assert_agent_available).
var ErrNoGuestAgent = errors.New("no QEMU guest agent answers")

// StorageVolume is a volume of a storage.
type StorageVolume struct {
	VolID string
	Size  int64
}

// DownloadRequest asks PVE to download a file (download-url).
type DownloadRequest struct {
	URL      string
	Filename string
	Content  string // iso, import, vztmpl
}

// APIError is an error answer of the PVE API.
type APIError struct {
	Status  int
	Message string
	// Errors are per-parameter messages (400 Parameter verification failed).
	Errors map[string]string
}

func (e *APIError) Error() string {
	var b strings.Builder

	fmt.Fprintf(&b, "HTTP %d", e.Status)

	if m := strings.TrimSpace(e.Message); m != "" {
		b.WriteString(": " + m)
	}

	keys := make([]string, 0, len(e.Errors))
	for k := range e.Errors {
		keys = append(keys, k)
	}

	sort.Strings(keys)

	for i, k := range keys {
		sep := "; "
		if i == 0 {
			sep = " ("
		}

		b.WriteString(sep + k + ": " + strings.Join(strings.Fields(e.Errors[k]), " "))
	}

	if len(keys) > 0 {
		b.WriteString(")")
	}

	return b.String()
}

// TaskError is a PVE task that stopped with an error exit status.
type TaskError struct {
	UPID       string
	ExitStatus string
	// LogTail holds the last lines of the task log.
	LogTail []string
}

func (e *TaskError) Error() string {
	msg := fmt.Sprintf("task %s failed: %s", taskType(e.UPID), e.ExitStatus)
	if len(e.LogTail) > 0 {
		msg += "\n  task log (last lines):\n    " + strings.Join(e.LogTail, "\n    ")
	}

	return msg
}

// ErrConnection wraps transport failures (refused, reset, dropped connections).
var ErrConnection = errors.New("connection to the Proxmox API failed")

// ErrClientPanic is returned when the Telmate client panicked on an unexpected response.
var ErrClientPanic = errors.New("proxmox client panicked on an unexpected API response")

// upidNode returns the node field of a UPID (UPID:node:...).
func upidNode(upid string) (string, error) {
	parts := strings.Split(upid, ":")
	if len(parts) < 9 || parts[0] != "UPID" || parts[1] == "" {
		return "", fmt.Errorf("malformed task id %q", upid)
	}

	return parts[1], nil
}

func taskType(upid string) string {
	parts := strings.Split(upid, ":")
	if len(parts) < 9 {
		return "?"
	}

	return parts[5] + " " + parts[6]
}

// isLockTimeout matches PVE's config lock contention message.
func isLockTimeout(msg string) bool {
	return strings.Contains(msg, "can't lock file") && strings.Contains(msg, "got timeout")
}

// isDigestMismatch matches PVE's answers to a config digest that no longer matches: "detected
// modified configuration - file changed by other user? Try again." (pve-common
// src/PVE/Tools.pm assert_if_modified) and "checksum mismatch (file change by other user?)"
// (qemu-server update_vm_api, resize_vm). Transient by PVE's own word: every step that sends a
// digest re-reads the config and re-checks ownership before it tries again.
func isDigestMismatch(msg string) bool {
	return strings.Contains(msg, "detected modified configuration") || strings.Contains(msg, "checksum mismatch (file change by other user")
}

// Retryable reports whether an error is transient: config lock contention, 5xx answers
// that are not a handler's verdict, dropped or refused connections, tasks that failed on the
// config lock, config digest mismatches, and a disk caught between the two VMs of a move.
// errVMIDTaken marks a create that lost its allocated VMID to someone else between nextid and
// the create: retried, the create re-allocates (a VMID the profile fixes is never retried).
var errVMIDTaken = errors.New("the VMID was taken meanwhile")

func Retryable(err error) bool {
	if err == nil {
		return false
	}

	if errors.Is(err, errMoveInFlight) || errors.Is(err, errVMIDTaken) {
		return true
	}

	var te *TaskError
	if errors.As(err, &te) {
		return isLockTimeout(te.ExitStatus) || isDigestMismatch(te.ExitStatus)
	}

	var ae *APIError
	if errors.As(err, &ae) {
		switch {
		case isLockTimeout(ae.Message), isDigestMismatch(ae.Message):
			return true
		case ae.Status == 500:
			m := strings.TrimSpace(ae.Message)
			return m == "" || m == "Internal Server Error" || strings.Contains(m, "timeout") || strings.Contains(m, "temporarily")
		case ae.Status == 501:
			return false
		case ae.Status >= 502:
			return true
		}

		return false
	}

	return errors.Is(err, ErrConnection)
}

func atoiLoose(v any) int {
	switch t := v.(type) {
	case float64:
		return int(t)
	case string:
		n, _ := strconv.Atoi(t)
		return n
	case int:
		return t
	}

	return 0
}
