package proxmox

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talforge/talforge/internal/testenv/pvesim"
	"github.com/talforge/talforge/pkg/profile"
)

const testSecret = "5ec12e7a-0c1d-4a4b-9d77-a1b2c3d4e5f6"

func TestParseToken(t *testing.T) {
	cases := []struct {
		in, id, err string
	}{
		{"talforge@pve!provision=" + testSecret, "talforge@pve!provision", ""},
		{"root@pam!ci=a=b", "", "another '='"},
		{"talforge@pve!provision", "", "found no '='"},
		{"talforge@pve=" + testSecret, "", "is not USER@REALM!TOKENID"},
		{"talforge@pve!provision=", "", "empty"},
		{"  talforge@pve!p=" + testSecret + "\n", "talforge@pve!p", ""},
	}
	for _, tc := range cases {
		tok, err := ParseToken(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseToken(%q) error %v, want %q", tc.in, err, tc.err)
			}

			if err != nil && strings.Contains(err.Error(), testSecret) {
				t.Errorf("error leaks the secret: %v", err)
			}

			continue
		}

		if err != nil || tok.ID != tc.id || tok.secret != testSecret {
			t.Errorf("ParseToken(%q) = %v, %v", tc.in, tok, err)
		}
	}
}

func TestTokenNeverPrinted(t *testing.T) {
	tok, err := ParseToken("talforge@pve!provision=" + testSecret)
	if err != nil {
		t.Fatal(err)
	}

	js, _ := json.Marshal(struct{ T Token }{tok})
	outs := []string{
		fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s %q", tok, tok, tok, tok, tok), fmt.Sprintf("%v", []Token{tok}),
		fmt.Sprintf("%+v", struct{ T Token }{tok}), fmt.Sprintf("%#v", struct{ T Token }{tok}), string(js), tok.String(),
	}
	for _, o := range outs {
		if strings.Contains(o, testSecret) {
			t.Errorf("secret printed: %s", o)
		}

		if !strings.Contains(o, "talforge@pve!provision") {
			t.Errorf("token id missing from %q", o)
		}
	}
}

func TestResolveToken(t *testing.T) {
	dir := t.TempDir()
	c, err := profile.Parse(filepath.Join(dir, "profiles", "x.yaml"), []byte(`apiVersion: talforge.dev/v1alpha1
kind: Cluster
metadata: {name: x}
network: {cidr: 10.0.0.0/24, gateway: 10.0.0.1, nameservers: [10.0.0.1]}
proxmox: {endpoint: "https://pve:8006/api2/json", node: pve, storage: local-lvm}
nodes: [{name: n1, role: controlplane, ip: 10.0.0.2}]
`))
	if err != nil {
		t.Fatal(err)
	}

	c.Proxmox.TokenFile = "secrets/proxmox.sops.yaml"
	decrypt := func(content string, err error) Decrypter {
		return func(path string) ([]byte, error) {
			if path != filepath.Join(dir, "secrets", "proxmox.sops.yaml") {
				return nil, fmt.Errorf("unexpected path %s", path)
			}

			return []byte(content), err
		}
	}
	noEnv := func(string) string { return "" }
	cases := []struct {
		name    string
		env     func(string) string
		decrypt Decrypter
		id, src string
		err     string
	}{
		{"env wins", func(k string) string {
			if k == EnvToken {
				return "env@pve!t=" + testSecret
			}
			return ""
		}, decrypt("", errors.New("must not be called")), "env@pve!t", "$TALFORGE_PVE_TOKEN", ""},
		{"sops file", noEnv, decrypt("token: file@pve!t="+testSecret+"\n", nil), "file@pve!t", filepath.Join(dir, "secrets", "proxmox.sops.yaml"), ""},
		{"missing key", noEnv, decrypt("other: 1\n", nil), "", "", "key `token` is missing"},
		{"decrypt error", noEnv, decrypt("", errors.New("no age identity")), "", "", "no age identity"},
		{"bad token in file", noEnv, decrypt("token: nope="+testSecret+"\n", nil), "", "", "is not USER@REALM!TOKENID"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, src, err := ResolveToken(c, tc.env, tc.decrypt)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}

				if strings.Contains(err.Error(), testSecret) {
					t.Errorf("error leaks the secret: %v", err)
				}

				return
			}

			if err != nil || tok.ID != tc.id || src != tc.src || tok.secret != testSecret {
				t.Fatalf("got %v %q %v", tok, src, err)
			}
		})
	}
}

func TestTLS(t *testing.T) {
	srv := pvesim.New(pvesim.Options{AuthFailDelay: -1})
	defer srv.Close()

	tok, _ := ParseToken(pvesim.DefaultTokenID + "=" + pvesim.DefaultTokenSecret)
	ca := filepath.Join(t.TempDir(), "ca.pem")

	if err := os.WriteFile(ca, srv.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}

	bad := filepath.Join(t.TempDir(), "bad.pem")
	_ = os.WriteFile(bad, []byte("not a cert"), 0o600)

	cases := []struct {
		name     string
		ca       string
		insecure bool
		err      string
	}{
		{"system roots reject the self-signed cert", "", false, "certificate"},
		{"CA file verifies", ca, false, ""},
		{"explicit insecure", "", true, ""},
		{"bad CA file", bad, false, "no PEM certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := TLSConfig(tc.ca, tc.insecure)
			if err == nil {
				var api *Telmate

				api, err = NewTelmateAPI(ClientOptions{Endpoint: srv.URL(), Token: tok, TLS: cfg, RequestTimeout: 5 * time.Second})
				if err == nil {
					_, err = api.Version(context.Background())
				}
			}

			if tc.err == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}

			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
}

// TestSecretNotLeakedOnAuthFailure: a rejected token's secret appears in no error.
func TestSecretNotLeakedOnAuthFailure(t *testing.T) {
	srv := pvesim.New(pvesim.Options{Schema: pveSchema(t), AuthFailDelay: -1})
	defer srv.Close()

	tok, _ := ParseToken(pvesim.DefaultTokenID + "=" + testSecret) // wrong secret
	api, err := NewTelmateAPI(ClientOptions{Endpoint: srv.URL(), Token: tok, TLS: &tls.Config{RootCAs: srv.CertPool(), MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}

	_, err = api.ListVMs(context.Background())

	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 401 || ae.Message != "invalid token value!" {
		t.Fatalf("error %v, want 401 invalid token value!", err)
	}

	if strings.Contains(err.Error(), testSecret) {
		t.Errorf("error leaks the secret: %v", err)
	}
}

// TestTelmatePanicsBecomeErrors feeds the client answers it type-asserts blindly.
func TestTelmatePanicsBecomeErrors(t *testing.T) {
	answers := map[string]string{
		"/api2/json/cluster/resources": `{"data":[{"vmid":"100","node":"pve","type":"qemu"}]}`, // vmid as string
		"/api2/json/version":           `{"data":"9.1"}`,                                       // not an object
		"/api2/json/nodes/pve/tasks/UPID:pve:00000001:00000001:00000001:qmstart:100:a@pve!t:/status": `{"data":"stopped"}`,
		"/api2/json/cluster/nextid": `{"data":101}`, // a number, Telmate wants a string
	}
	hs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a, ok := answers[r.URL.Path]; ok {
			_, _ = w.Write([]byte(a))
			return
		}

		http.NotFound(w, r)
	}))
	defer hs.Close()

	tok, _ := ParseToken("a@pve!t=" + testSecret)
	api, err := NewTelmateAPI(ClientOptions{Endpoint: hs.URL + "/api2/json", Token: tok, TLS: hs.Client().Transport.(*http.Transport).TLSClientConfig})
	if err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	checks := map[string]func() error{
		"ListVMs": func() error { _, err := api.ListVMs(ctx); return err },
		"Version": func() error { _, err := api.Version(ctx); return err },
		"TaskStatus": func() error {
			_, err := api.TaskStatus(ctx, "UPID:pve:00000001:00000001:00000001:qmstart:100:a@pve!t:")
			return err
		},
		"NextID": func() error { _, err := api.NextID(ctx); return err },
	}
	for name, f := range checks {
		if err := f(); !errors.Is(err, ErrClientPanic) {
			t.Errorf("%s: error %v, want ErrClientPanic", name, err)
		}
	}

	if _, err := api.TaskStatus(ctx, "not-a-upid"); err == nil || errors.Is(err, ErrClientPanic) {
		t.Errorf("malformed UPID: %v, want a plain error before the client is called", err)
	}
}

func TestLint(t *testing.T) {
	good := Params{"cpu": "host", "memory": "4096", "balloon": "0", "scsihw": "virtio-scsi-pci", "scsi0": "local-lvm:40",
		"boot": "order=scsi0;ide0", "ide2": "local-lvm:cloudinit", "ipconfig0": "ip=10.0.0.2/24,gw=10.0.0.1",
		"nameserver": "1.1.1.1 9.9.9.9", "net0": "virtio=02:00:00:00:00:01,bridge=vmbr0", "serial0": "socket", "agent": "enabled=1"}
	with := func(k, v string) Params {
		p := Params{}
		for a, b := range good {
			p[a] = b
		}

		if v == "" {
			delete(p, k)
		} else {
			p[k] = v
		}

		return p
	}
	cases := []struct {
		name  string
		cfg   Params
		agent bool
		role  profile.Role
		want  string // "" = clean; else severity:key
	}{
		{"good", good, true, profile.RoleControlPlane, ""},
		{"kvm64", with("cpu", "kvm64"), true, profile.RoleWorker, "error:cpu"},
		{"cpu unset", with("cpu", ""), true, profile.RoleWorker, "error:cpu"},
		{"n270", with("cpu", "cputype=n270"), true, profile.RoleWorker, "error:cpu"},
		{"x86-64-v2-AES ok", with("cpu", "x86-64-v2-AES,flags=+aes"), true, profile.RoleWorker, ""},
		{"small control plane", with("memory", "1024"), true, profile.RoleControlPlane, "error:memory"},
		{"1 GiB worker ok", with("memory", "1024"), true, profile.RoleWorker, ""},
		{"balloon", with("balloon", "2048"), true, profile.RoleWorker, "error:balloon"},
		{"scsi single", with("scsihw", "virtio-scsi-single"), true, profile.RoleWorker, "warning:scsihw"},
		{"lsi", with("scsihw", "lsi"), true, profile.RoleWorker, "error:scsihw"},
		{"tiny disk", with("scsi0", "local-lvm:4"), true, profile.RoleWorker, "error:scsi0"},
		{"iso first", with("boot", "order=ide0;scsi0"), true, profile.RoleWorker, "warning:boot"},
		{"no cloud-init", with("ide2", ""), true, profile.RoleWorker, "error:ide2"},
		{"dhcp", with("ipconfig0", "ip=dhcp"), true, profile.RoleWorker, "error:ipconfig0"},
		{"comma nameservers", with("nameserver", "1.1.1.1,9.9.9.9"), true, profile.RoleWorker, "error:nameserver"},
		{"multicast mac", with("net0", "virtio=01:00:00:00:00:01,bridge=vmbr0"), true, profile.RoleWorker, "error:net0"},
		{"agent without extension", good, false, profile.RoleWorker, "warning:agent"},
		{"no serial", with("serial0", ""), true, profile.RoleWorker, "warning:serial0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := Lint("vm", tc.cfg, tc.agent, tc.role)

			var got []string
			for _, x := range f {
				got = append(got, string(x.Severity)+":"+x.Key)
			}

			if tc.want == "" && len(got) != 0 || tc.want != "" && (len(got) != 1 || got[0] != tc.want) {
				t.Errorf("findings %v, want [%s]", f, tc.want)
			}
		})
	}
}

func TestRetryable(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{&APIError{Status: 500, Message: "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout"}, true},
		{&TaskError{ExitStatus: "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout"}, true},
		{&TaskError{ExitStatus: "lvcreate error"}, false},
		{&APIError{Status: 503, Message: "Service Unavailable"}, true},
		{&APIError{Status: 595, Message: "Connection refused"}, true},
		{&APIError{Status: 500, Message: "Internal Server Error"}, true},
		{&APIError{Status: 500, Message: "unable to create VM 100 - VM 100 already exists on node 'pve'"}, false},
		{&APIError{Status: 400, Message: "Parameter verification failed."}, false},
		{&APIError{Status: 403, Message: "Permission check failed (/vms/100, VM.Allocate)"}, false},
		{&APIError{Status: 401, Message: "invalid token value!"}, false},
		{&APIError{Status: 501, Message: "Method 'GET /x' not implemented"}, false},
		{fmt.Errorf("x: %w", ErrConnection), true},
		{context.Canceled, false},
		{errors.New("something"), false},
	}
	for _, tc := range cases {
		if got := Retryable(tc.err); got != tc.want {
			t.Errorf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestTaskStatusSucceeded(t *testing.T) {
	cases := map[TaskStatus]bool{
		{ExitStatus: "OK"}: true, {ExitStatus: "WARNINGS: 3"}: true, {ExitStatus: "WARNINGS"}: false,
		{ExitStatus: "unexpected status"}: false, {Running: true}: false, {ExitStatus: "VM 100 already running"}: false,
	}
	for st, want := range cases {
		if st.Succeeded() != want {
			t.Errorf("%+v.Succeeded() = %v", st, !want)
		}
	}
}

func TestDiffConfig(t *testing.T) {
	spec := VMSpec{Name: "n", Storage: "local-lvm", Config: Params{
		"memory": "4096", "tags": "talforge;talforge-x;worker", "net0": "virtio=02:AB:00:00:00:01,bridge=vmbr0,tag=20",
		"scsi0": "local-lvm:40,discard=on,ssd=1", "scsi1": "local-lvm:100,backup=0,discard=on,serial=talforge-longhorn,ssd=1",
		"ide2": "local-lvm:cloudinit", "ide0": "local:iso/t.iso,media=cdrom", "onboot": "1",
	}}
	same := map[string]string{
		"memory": "4096", "tags": "talforge;talforge-x;worker", "net0": "virtio=02:ab:00:00:00:01,bridge=vmbr0,tag=20",
		"scsi0": "local-lvm:vm-100-disk-0,discard=on,size=40G,ssd=1", "scsi1": "local-lvm:vm-100-disk-1,backup=0,discard=on,serial=talforge-longhorn,size=100G,ssd=1",
		"ide2": "local-lvm:vm-100-cloudinit,media=cdrom", "ide0": "local:iso/t.iso,media=cdrom,size=100M", "onboot": "1",
		"meta": "creation-qemu=9.2.0", "digest": "abc",
	}
	mod := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range same {
			m[a] = b
		}

		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}

		return m
	}
	cases := []struct {
		name    string
		cur     map[string]string
		changes string
		resize  string
		errs    int
	}{
		{"unchanged", same, "", "", 0},
		{"memory", mod("memory", "2048"), "~ memory: 2048 -> 4096", "", 0},
		{"tags order and case", mod("tags", "Worker;talforge-x;talforge"), "", "", 0},
		{"vlan", mod("net0", "virtio=02:AB:00:00:00:01,bridge=vmbr0"), "~ net0: virtio=02:AB:00:00:00:01,bridge=vmbr0 -> virtio=02:AB:00:00:00:01,bridge=vmbr0,tag=20", "", 0},
		{"disk grows", mod("scsi0", "local-lvm:vm-100-disk-0,discard=on,size=20G,ssd=1"), "~ scsi0 size: 20G -> 40G", "scsi0=40", 0},
		{"disk larger", mod("scsi0", "local-lvm:vm-100-disk-0,discard=on,size=80G,ssd=1"), "", "", 0},
		{"disk option", mod("scsi0", "local-lvm:vm-100-disk-0,size=40G"),
			"~ scsi0: local-lvm:vm-100-disk-0,size=40G -> local-lvm:vm-100-disk-0,discard=on,ssd=1", "", 0},
		{"data disk added", mod("scsi1", ""), "+ scsi1: local-lvm:100,backup=0,discard=on,serial=talforge-longhorn,ssd=1", "", 0},
		{"other storage", mod("scsi0", "ceph:vm-100-disk-0,discard=on,size=40G,ssd=1"), "", "", 1},
		{"iso changed", mod("ide0", "local:iso/old.iso,media=cdrom,size=90M"), "~ ide0: local:iso/old.iso,media=cdrom,size=90M -> local:iso/t.iso,media=cdrom", "", 0},
		{"agent removed", mod("agent", "1"), "- agent: 1", "", 0},
		{"onboot as true", mod("onboot", "true"), "", "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := diffConfig(spec, tc.cur)

			var ch []string
			for _, c := range d.changes {
				ch = append(ch, c.String())
			}

			var rs []string
			for k, v := range d.resize {
				rs = append(rs, fmt.Sprintf("%s=%d", k, v))
			}

			if strings.Join(ch, "|") != tc.changes || strings.Join(rs, "|") != tc.resize || len(d.errs) != tc.errs {
				t.Errorf("changes %q resize %q errs %v\nwant    %q resize %q errs %d", ch, rs, d.errs, tc.changes, tc.resize, tc.errs)
			}
		})
	}
}

// TestMinimalPrivileges provisions and destroys with the documented least-privilege role.
func TestMinimalPrivileges(t *testing.T) {
	e := newEnv(t, "tazlab")
	const id, secret = "talforge@pve!provision", "b4c1f0d2-9e8a-4f3b-a6c5-0d1e2f3a4b5c"
	e.srv.SetACL(id, secret, pvesim.MinimalACL("local-lvm", "local", "pve", "vmbr0"))

	tok, _ := NewToken(id, secret)

	api, err := NewTelmateAPI(ClientOptions{Endpoint: e.srv.URL(), Token: tok, TLS: &tls.Config{RootCAs: e.srv.CertPool(), MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}

	e.api = api
	ctx := context.Background()

	if _, _, err := e.provision(ctx, Options{}); err != nil {
		t.Fatalf("provision with the minimal role: %v\n%s", err, summary(e.srv))
	}

	e.assertConverged()

	dp, err := PlanDestroy(ctx, api, "tazlab", DestroyOptions{KeepDataDisks: true})
	if err != nil {
		t.Fatal(err)
	}

	if err := e.executor(Options{}).Destroy(ctx, dp); err != nil {
		t.Fatalf("destroy with the minimal role: %v\n%s", err, summary(e.srv))
	}

	for _, r := range e.srv.Requests() {
		if r.Status == 403 {
			t.Errorf("403 with the documented role: %s %s %s", r.Method, r.Path, r.Message)
		}
	}
	// and without SDN.Use on the bridge the create is refused, not retried
	acl := pvesim.MinimalACL("local-lvm", "local", "pve", "vmbr0")
	delete(acl, "/sdn/zones/localnetwork/vmbr0")
	e.srv.SetACL(id, secret, acl)

	_, _, err = e.provision(ctx, Options{})

	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 403 || !strings.Contains(ae.Message, "SDN.Use") {
		t.Fatalf("error %v, want 403 SDN.Use", err)
	}
}
