package talosnode

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"gopkg.in/yaml.v3"
)

// kubeconfigArchive packs a kubeconfig the way apid streams it: gzip'ed tar with one file "kubeconfig".
func kubeconfigArchive(kubeconfig []byte) ([]byte, error) {
	var buf bytes.Buffer

	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)

	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     "kubeconfig",
		Mode:     0o600,
		Size:     int64(len(kubeconfig)),
		ModTime:  time.Now(),
	}); err != nil {
		return nil, err
	}

	if _, err := tw.Write(kubeconfig); err != nil {
		return nil, err
	}

	if err := tw.Close(); err != nil {
		return nil, err
	}

	if err := gz.Close(); err != nil {
		return nil, err
	}

	return buf.Bytes(), nil
}

// adminKubeconfig builds what a control plane generates when no test kubeconfig was set: the cluster
// endpoint, the Kubernetes CA and a fresh system:masters client certificate signed by that CA.
func adminKubeconfig(cfg config.Config) ([]byte, error) {
	cluster := cfg.K8sClusterConfig()
	if cluster == nil || cluster.ClusterEndpoint() == nil {
		return nil, errors.New("config has no cluster endpoint")
	}

	caConfig := cfg.K8sAPIServerCAConfig()
	if caConfig == nil || caConfig.IssuingCA() == nil || len(caConfig.IssuingCA().Key) == 0 {
		return nil, errors.New("config has no Kubernetes CA key")
	}

	ca, err := x509.NewCertificateAuthorityFromCertificateAndKey(caConfig.IssuingCA())
	if err != nil {
		return nil, fmt.Errorf("parse Kubernetes CA: %w", err)
	}

	client, err := x509.NewKeyPair(ca,
		x509.CommonName("admin"),
		x509.Organization("system:masters"),
		x509.NotAfter(time.Now().Add(certValidity)),
	)
	if err != nil {
		return nil, fmt.Errorf("admin certificate: %w", err)
	}

	name := cluster.ClusterName()
	user := "admin@" + name
	enc := base64.StdEncoding.EncodeToString

	doc := map[string]any{
		"apiVersion": "v1",
		"kind":       "Config",
		"clusters": []any{map[string]any{
			"name": name,
			"cluster": map[string]any{
				"server":                     cluster.ClusterEndpoint().String(),
				"certificate-authority-data": enc(caConfig.IssuingCA().Crt),
			},
		}},
		"users": []any{map[string]any{
			"name": user,
			"user": map[string]any{
				"client-certificate-data": enc(client.CrtPEM),
				"client-key-data":         enc(client.KeyPEM),
			},
		}},
		"contexts": []any{map[string]any{
			"name":    user,
			"context": map[string]any{"cluster": name, "user": user, "namespace": "default"},
		}},
		"current-context": user,
	}

	return yaml.Marshal(doc)
}
