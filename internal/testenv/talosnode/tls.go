package talosnode

import (
	"crypto/tls"
	stdx509 "crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/talos/pkg/machinery/config"
)

// certValidity is long enough for any test run; real apid certificates are rotated, which tests do not need.
const certValidity = 24 * time.Hour

// maintenanceTLS is what a node without a config serves: a throwaway self-signed CA and a serving certificate
// from it, no client authentication (every client is os:reader).
func maintenanceTLS(ip net.IP, hostname string) (*tls.Config, error) {
	ca, err := x509.NewSelfSignedCertificateAuthority(x509.ECDSA(true), x509.NotAfter(time.Now().Add(certValidity)))
	if err != nil {
		return nil, fmt.Errorf("maintenance CA: %w", err)
	}

	serving, err := x509.NewKeyPair(ca,
		x509.CommonName(hostname),
		x509.IPAddresses([]net.IP{ip}),
		x509.DNSNames([]string{hostname}),
		x509.NotAfter(time.Now().Add(certValidity)),
		x509.ExtKeyUsage([]stdx509.ExtKeyUsage{stdx509.ExtKeyUsageServerAuth}),
	)
	if err != nil {
		return nil, fmt.Errorf("maintenance serving certificate: %w", err)
	}

	return &tls.Config{
		Certificates: []tls.Certificate{*serving.Certificate},
		ClientAuth:   tls.NoClientCert,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2"},
	}, nil
}

// configuredTLS is what apid serves once the node runs its config: a serving certificate signed by the OS CA
// (machine.ca; a worker's config carries only the certificate, so the key comes from trustd) and mandatory
// client certificates verified against the CA and any accepted CAs.
func configuredTLS(cfg config.Config, trustd *x509.PEMEncodedCertificateAndKey, ip net.IP, hostname string) (*tls.Config, error) {
	security := cfg.Machine().Security()

	issuing := security.IssuingCA()
	if issuing == nil || len(issuing.Crt) == 0 {
		return nil, errors.New("machine.ca.crt is empty")
	}

	signer := issuing
	if len(signer.Key) == 0 {
		if trustd == nil {
			return nil, errNoTrustd
		}

		signer = trustd
	}

	ca, err := x509.NewCertificateAuthorityFromCertificateAndKey(signer)
	if err != nil {
		return nil, fmt.Errorf("parse OS CA: %w", err)
	}

	ips := []net.IP{ip}
	dnsNames := []string{hostname}

	for _, san := range security.CertSANs() {
		if sanIP := net.ParseIP(san); sanIP != nil {
			ips = append(ips, sanIP)
		} else {
			dnsNames = append(dnsNames, san)
		}
	}

	serving, err := x509.NewKeyPair(ca,
		x509.CommonName(hostname),
		x509.IPAddresses(ips),
		x509.DNSNames(dnsNames),
		x509.NotAfter(time.Now().Add(certValidity)),
		x509.ExtKeyUsage([]stdx509.ExtKeyUsage{stdx509.ExtKeyUsageServerAuth}),
	)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}

	clientCAs := stdx509.NewCertPool()
	if !clientCAs.AppendCertsFromPEM(issuing.Crt) {
		return nil, errors.New("machine.ca.crt is not a PEM certificate")
	}

	for _, accepted := range security.AcceptedCAs() {
		clientCAs.AppendCertsFromPEM(accepted.Crt)
	}

	return &tls.Config{
		Certificates: []tls.Certificate{*serving.Certificate},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCAs,
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{"h2"},
	}, nil
}

var errNoTrustd = errors.New("worker config has no OS CA key and no control plane published one yet (trustd unavailable)")
