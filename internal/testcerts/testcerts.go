// Package testcerts makes throwaway certificates for the tests and the benchmark that serve
// TLS on loopback: a CA, and serving certificates it signs for 127.0.0.1 and localhost,
// written as tls.crt and tls.key (what controller-runtime's webhook server reads).
package testcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// CA is a throwaway certificate authority, valid for a day.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA makes a CA named name.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("creating the CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, key: key}, nil
}

// PEM is the CA's certificate, PEM-encoded (a webhook configuration's caBundle).
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// Pool is a certificate pool that trusts the CA alone.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

// WriteServing writes a serving certificate for 127.0.0.1 and localhost, signed by the CA,
// into dir as tls.crt and tls.key.
func (ca *CA) WriteServing(dir string) error {
	return ca.WriteServingFor(dir, "tls.crt", "tls.key", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
}

// WriteServingFor writes a serving certificate for the names and addresses, signed by the CA,
// into dir as certFile and keyFile.
func (ca *CA) WriteServingFor(dir, certFile, keyFile string, dnsNames []string, ips []net.IP) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    ca.Cert.NotBefore,
		NotAfter:     ca.Cert.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  ips,
		DNSNames:     dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return fmt.Errorf("creating the serving certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, block := range map[string]*pem.Block{
		certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// WriteKeyPair writes the CA's own certificate and key into dir as certFile and keyFile: a
// signing key pair (a service account token signer's, say).
func (ca *CA) WriteKeyPair(dir, certFile, keyFile string) error {
	keyDER, err := x509.MarshalECPrivateKey(ca.key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, certFile), ca.PEM(), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, keyFile), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// ClientCert is a client certificate the CA signed, with its key, ready for a tls.Config.
type ClientCert struct {
	TLS tls.Certificate
	// CertPEM and KeyPEM are the same certificate and key, PEM-encoded (a kubeconfig's
	// client-certificate-data and client-key-data).
	CertPEM, KeyPEM []byte
}

// IssueClient makes a client certificate (extended key usage client auth) with common name
// cn and the DNS and URI subject alternative names given.
func (ca *CA) IssueClient(cn string, dnsNames []string, uris []*url.URL) (*ClientCert, error) {
	return ca.issueClient(cn, dnsNames, uris, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, ca.Cert.NotBefore, ca.Cert.NotAfter)
}

// IssueClientWith makes a client certificate as IssueClient does, with the extended key
// usages and validity given (to make an expired or a server-only certificate).
func (ca *CA) IssueClientWith(cn string, usages []x509.ExtKeyUsage, notBefore, notAfter time.Time) (*ClientCert, error) {
	return ca.issueClient(cn, nil, nil, usages, notBefore, notAfter)
}

func (ca *CA) issueClient(cn string, dnsNames []string, uris []*url.URL, usages []x509.ExtKeyUsage, notBefore, notAfter time.Time) (*ClientCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usages,
		DNSNames:     dnsNames,
		URIs:         uris,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("creating the client certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &ClientCert{TLS: pair, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}
