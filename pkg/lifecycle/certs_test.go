package lifecycle_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/crypto/x509"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/talforge/talforge/pkg/bootstrap"
	"github.com/talforge/talforge/pkg/machineconfig"
)

// clientPair is a CA and a client certificate of it that expires at notAfter.
func clientPair(t *testing.T, notAfter time.Time) (ca *x509.CertificateAuthority, crt *x509.KeyPair) {
	t.Helper()
	ca, err := x509.NewSelfSignedCertificateAuthority(x509.ECDSA(true))
	if err != nil {
		t.Fatal(err)
	}
	crt, err = x509.NewKeyPair(ca, x509.ECDSA(true), x509.CommonName("admin"), x509.Organization("os:admin"), x509.NotAfter(notAfter))
	if err != nil {
		t.Fatal(err)
	}
	return ca, crt
}

// TestCertificateExpiry: the expiry status shows and renewal acts on, read from the stored
// talosconfig (machineconfig) and kubeconfig (bootstrap).
func TestCertificateExpiry(t *testing.T) {
	notAfter := time.Now().Add(10 * 24 * time.Hour).Truncate(time.Second)
	ca, crt := clientPair(t, notAfter)

	talosconfig, err := clientconfig.NewConfig("lab", []string{"10.0.0.11"}, ca.CrtPEM, &x509.PEMEncodedCertificateAndKey{Crt: crt.CrtPEM, Key: crt.KeyPEM}).Bytes()
	if err != nil {
		t.Fatal(err)
	}

	kc := clientcmdapi.NewConfig()
	kc.Clusters["lab"] = &clientcmdapi.Cluster{Server: "https://10.0.0.11:6443", CertificateAuthorityData: ca.CrtPEM}
	kc.AuthInfos["admin@lab"] = &clientcmdapi.AuthInfo{ClientCertificateData: crt.CrtPEM, ClientKeyData: crt.KeyPEM}
	kc.Contexts["admin@lab"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: "admin@lab"}
	kc.CurrentContext = "admin@lab"
	kubeconfig, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}

	tokenOnly := strings.Replace(string(kubeconfig), "client-certificate-data: "+base64.StdEncoding.EncodeToString(crt.CrtPEM), "token: abc", 1)

	tests := []struct {
		name    string
		read    func([]byte) (time.Time, error)
		data    string
		want    time.Time
		wantErr string
	}{
		{name: "talosconfig", read: machineconfig.TalosconfigExpiry, data: string(talosconfig), want: notAfter},
		{name: "kubeconfig", read: bootstrap.KubeconfigExpiry, data: string(kubeconfig), want: notAfter},
		{name: "kubeconfig with a token", read: bootstrap.KubeconfigExpiry, data: tokenOnly, wantErr: `user "admin@lab" has no client certificate`},
		{name: "not a talosconfig", read: machineconfig.TalosconfigExpiry, data: "contexts: [", wantErr: "talosconfig:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.read([]byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) {
				t.Errorf("expiry = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
