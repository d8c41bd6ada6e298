package pvesim

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	pxapi "github.com/Telmate/proxmox-api-go/proxmox"
)

func ptr[T any](v T) *T { return &v }

// TestTelmateClientLifecycle drives the real Telmate client (typed API)
// through create with cloud-init, start, read config and delete. Telmate
// polls tasks every 2 s, so this test takes ~10 s.
func TestTelmateClientLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: Telmate polls tasks every 2 s")
	}
	schema := optSchema(t, 9)
	srv := New(fastOptions(schema))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	client, err := pxapi.NewClient(srv.URL(), nil, "", &tls.Config{RootCAs: srv.CertPool()}, "", 60, false)
	if err != nil {
		t.Fatal(err)
	}
	var tokID pxapi.ApiTokenID
	if err := tokID.Parse(DefaultTokenID); err != nil {
		t.Fatal(err)
	}
	client.SetAPIToken(tokID, pxapi.ApiTokenSecret(DefaultTokenSecret))

	mac, _ := net.ParseMAC("bc:24:11:00:00:01")
	node := pxapi.NodeName("pve")
	id := pxapi.GuestID(4242)
	cfg := pxapi.ConfigQemu{
		ID: &id, Node: &node, Name: ptr(pxapi.GuestName("cp-1")),
		CPU:    &pxapi.QemuCPU{Cores: ptr(pxapi.QemuCpuCores(2)), Type: ptr(pxapi.CpuType("host"))},
		Memory: &pxapi.QemuMemory{CapacityMiB: ptr(pxapi.QemuMemoryCapacity(2048)), MinimumCapacityMiB: ptr(pxapi.QemuMemoryBalloonCapacity(0))},
		Scsihw: "virtio-scsi-pci",
		Networks: pxapi.QemuNetworkInterfaces{0: {Bridge: ptr("vmbr0"), Model: ptr(pxapi.QemuNetworkModel("virtio")), MAC: &mac,
			NativeVlan: ptr(pxapi.Vlan(10))}},
		Disks: &pxapi.QemuStorages{
			Scsi: &pxapi.QemuScsiDisks{Disk_0: &pxapi.QemuScsiStorage{Disk: &pxapi.QemuScsiDisk{SizeInKibibytes: 10 << 20, Storage: "local-lvm", Format: "raw", Backup: true}}},
			Ide:  &pxapi.QemuIdeDisks{Disk_2: &pxapi.QemuIdeStorage{CloudInit: &pxapi.QemuCloudInitDisk{Storage: "local-lvm", Format: "raw"}}},
		},
		CloudInit: &pxapi.CloudInit{
			NetworkInterfaces: pxapi.CloudInitNetworkInterfaces{0: {IPv4: &pxapi.CloudInitIPv4Config{
				Address: ptr(pxapi.IPv4CIDR("10.0.0.21/24")), Gateway: ptr(pxapi.IPv4Address("10.0.0.1"))}}},
			DNS: &pxapi.GuestDNS{NameServers: &[]netip.Addr{netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("9.9.9.9")}, SearchDomain: ptr("lab")},
		},
		Tags: &pxapi.Tags{"talforge", "talforge-lab"},
	}
	vmr, err := client.New().QemuGuest.Create(ctx, cfg)
	if err != nil {
		t.Fatalf("create: %v\n%s", err, srv.RequestSummary())
	}
	if vmr.VmId() != id {
		t.Fatalf("created id %d", vmr.VmId())
	}
	if err := client.New().Guest.Start(ctx, *vmr); err != nil {
		t.Fatalf("start: %v\n%s", err, srv.RequestSummary())
	}
	got, err := pxapi.NewConfigQemuFromApi(ctx, vmr, client)
	if err != nil {
		t.Fatalf("read config: %v\n%s", err, srv.RequestSummary())
	}
	if got.Name == nil || *got.Name != "cp-1" {
		t.Errorf("name = %v", got.Name)
	}
	raw, err := client.GetVmConfig(ctx, vmr)
	if err != nil {
		t.Fatal(err)
	}
	if raw["ipconfig0"] != "ip=10.0.0.21/24,gw=10.0.0.1" {
		t.Errorf("ipconfig0 = %q", raw["ipconfig0"])
	}
	if raw["nameserver"] != "1.1.1.1 9.9.9.9" {
		t.Errorf("nameserver = %q", raw["nameserver"])
	}
	if !strings.HasPrefix(raw["net0"].(string), "virtio=BC:24:11:00:00:01,bridge=vmbr0") &&
		!strings.HasPrefix(strings.ToLower(raw["net0"].(string)), "virtio=bc:24:11:00:00:01,bridge=vmbr0") {
		t.Errorf("net0 = %q", raw["net0"])
	}
	vm, _ := srv.VM(4242)
	t.Logf("config: %v", vm.Config)
	if !vm.Running {
		t.Errorf("VM not running after start")
	}
	if err := vmr.Delete(ctx, client); err != nil {
		t.Fatalf("delete: %v\n%s", err, srv.RequestSummary())
	}
	if _, ok := srv.VM(4242); ok {
		t.Fatalf("VM still exists after delete")
	}
	for _, v := range srv.Volumes() {
		if v.VMID == 4242 {
			t.Errorf("volume %s survived VM deletion", v.VolID)
		}
	}
	for _, r := range srv.Requests() {
		if r.Status >= 400 && !(r.Status == 500 && strings.HasPrefix(r.Path, "/cluster/ha/")) {
			t.Errorf("unexpected error answer: %s %s -> %d %s %v", r.Method, r.Path, r.Status, r.Message, r.Errors)
		}
	}
	for _, r := range srv.Requests() {
		if r.Method == "POST" && r.Path == "/nodes/pve/qemu" {
			t.Logf("create params: %v", r.Params)
		}
	}
	t.Logf("requests:\n%s", srv.RequestSummary())
}
