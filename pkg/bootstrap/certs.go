package bootstrap

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

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

	block, _ := pem.Decode(auth.ClientCertificateData)
	if block == nil {
		return time.Time{}, errors.New("kubeconfig: client certificate: no PEM block")
	}

	crt, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return time.Time{}, fmt.Errorf("kubeconfig: client certificate: %w", err)
	}

	return crt.NotAfter, nil
}
