package bootstrap

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"k8s.io/client-go/tools/clientcmd"
)

// RenewBefore is how long before its client certificate expires a stored talosconfig or
// kubeconfig is replaced: the talosconfig by generate, the kubeconfig by the next command
// that needs it.
const RenewBefore = 30 * 24 * time.Hour

// TalosconfigExpiry is when the client certificate of the talosconfig's current context
// expires.
func TalosconfigExpiry(data []byte) (time.Time, error) {
	cfg, err := clientconfig.FromBytes(data)
	if err != nil {
		return time.Time{}, fmt.Errorf("talosconfig: %w", err)
	}

	ctx := cfg.Contexts[cfg.Context]
	if ctx == nil || ctx.Crt == "" {
		return time.Time{}, fmt.Errorf("talosconfig: context %q has no client certificate", cfg.Context)
	}

	pemData, err := base64.StdEncoding.DecodeString(ctx.Crt)
	if err != nil {
		return time.Time{}, fmt.Errorf("talosconfig: client certificate: %w", err)
	}

	return notAfter(pemData)
}

// KubeconfigExpiry is when the client certificate of the kubeconfig's current context
// expires.
func KubeconfigExpiry(data []byte) (time.Time, error) {
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return time.Time{}, fmt.Errorf("kubeconfig: %w", err)
	}

	kctx := cfg.Contexts[cfg.CurrentContext]
	if kctx == nil {
		return time.Time{}, fmt.Errorf("kubeconfig: no context %q", cfg.CurrentContext)
	}

	auth := cfg.AuthInfos[kctx.AuthInfo]
	if auth == nil || len(auth.ClientCertificateData) == 0 {
		return time.Time{}, fmt.Errorf("kubeconfig: user %q has no client certificate", kctx.AuthInfo)
	}

	return notAfter(auth.ClientCertificateData)
}

func notAfter(pemData []byte) (time.Time, error) {
	block, _ := pem.Decode(pemData)
	if block == nil {
		return time.Time{}, errors.New("client certificate: no PEM block")
	}

	crt, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return time.Time{}, fmt.Errorf("client certificate: %w", err)
	}

	return crt.NotAfter, nil
}
