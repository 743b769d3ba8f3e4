package clientauth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// Reasons a caller is refused: the values of the metric's reason label.
const (
	ReasonNoCertificate      = "no_certificate"
	ReasonUnknownCA          = "unknown_ca"
	ReasonInvalidCertificate = "invalid_certificate"
	ReasonNameNotAllowed     = "name_not_allowed"
)

// RefusedError is why a caller was refused.
type RefusedError struct {
	// Reason is one of the Reason constants.
	Reason string
	// Err is the certificate verification's error, for unknown_ca and invalid_certificate.
	Err error
}

func (e *RefusedError) Error() string {
	if e.Err != nil {
		return "client certificate refused: " + e.Reason + ": " + e.Err.Error()
	}
	return "client certificate refused: " + e.Reason
}

func (e *RefusedError) Unwrap() error { return e.Err }

// RefusedCallers counts the callers refused during the TLS handshake, by reason.
var RefusedCallers = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "pullgate_webhook_refused_callers_total",
	Help: "Connections to the webhook server refused during the TLS handshake by client authentication, by reason (no_certificate, unknown_ca, invalid_certificate, name_not_allowed).",
}, []string{"reason"})

// Authenticator verifies callers' client certificates. Make one with New.
type Authenticator struct {
	caFile  string
	allowed []string
	pool    atomic.Pointer[x509.CertPool]
	// caPEM is the bundle the pool was built from, to tell whether the file changed.
	caPEM atomic.Pointer[[]byte]
	probe tls.Certificate
	// refused counts refusals; RefusedCallers unless a test gives its own.
	refused *prometheus.CounterVec
	now     func() time.Time
}

// Option configures an Authenticator.
type Option func(*Authenticator)

// WithCounter counts refusals in c instead of RefusedCallers (default).
func WithCounter(c *prometheus.CounterVec) Option { return func(a *Authenticator) { a.refused = c } }

// New reads the PEM bundle at caFile and returns an Authenticator that accepts client
// certificates chaining to one of its CAs and, when allowedNames is not empty, naming one of
// them (common name, DNS or URI subject alternative name, compared exactly).
func New(caFile string, allowedNames []string, opts ...Option) (*Authenticator, error) {
	a := &Authenticator{caFile: caFile, refused: RefusedCallers, now: time.Now}
	for _, n := range allowedNames {
		if n = strings.TrimSpace(n); n != "" {
			a.allowed = append(a.allowed, n)
		}
	}
	for _, o := range opts {
		o(a)
	}
	if _, err := a.reload(); err != nil {
		return nil, err
	}
	probe, err := newProbeCertificate()
	if err != nil {
		return nil, fmt.Errorf("making the readiness probe's certificate: %w", err)
	}
	a.probe = probe
	// Make every reason appear at 0, so a scrape shows the metric before the first refusal.
	for _, r := range []string{ReasonNoCertificate, ReasonUnknownCA, ReasonInvalidCertificate, ReasonNameNotAllowed} {
		a.refused.WithLabelValues(r)
	}
	return a, nil
}

// reload reads the CA file again and replaces the pool if the bundle changed and parses; it
// reports whether it changed. On an error the pool in force stays.
func (a *Authenticator) reload() (bool, error) {
	data, err := os.ReadFile(a.caFile)
	if err != nil {
		return false, fmt.Errorf("reading client CA file: %w", err)
	}
	if old := a.caPEM.Load(); old != nil && bytes.Equal(*old, data) {
		return false, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return false, fmt.Errorf("client CA file %s holds no PEM certificate", a.caFile)
	}
	a.pool.Store(pool)
	a.caPEM.Store(&data)
	return true, nil
}

// Start re-reads the CA file every interval until ctx ends: a bundle rotated in a mounted
// Secret applies to the next handshake. A file that cannot be read or parsed keeps the last
// good bundle, and is logged.
func (a *Authenticator) Start(ctx context.Context, interval time.Duration) {
	log := logf.FromContext(ctx).WithName("clientauth")
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			changed, err := a.reload()
			if err != nil {
				log.Error(err, "Keeping the client CA bundle in force", "file", a.caFile)
			} else if changed {
				log.Info("Client CA bundle reloaded", "file", a.caFile)
			}
		}
	}
}

// Configure sets cfg up to verify client certificates: a controller-runtime
// webhook.Options.TLSOpts entry.
func (a *Authenticator) Configure(cfg *tls.Config) {
	// The caller is asked for a certificate; whether it must have one, and which, is decided
	// in VerifyConnection (see the package documentation for why not RequireAndVerifyClientCert).
	cfg.ClientAuth = tls.RequestClientCert
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		err := a.Verify(cs.PeerCertificates)
		var refused *RefusedError
		if errors.As(err, &refused) {
			a.refused.WithLabelValues(refused.Reason).Inc()
		}
		return err
	}
}

// Verify decides on the certificates a caller presented (leaf first); nil accepts.
func (a *Authenticator) Verify(certs []*x509.Certificate) error {
	if len(certs) == 0 {
		return &RefusedError{Reason: ReasonNoCertificate}
	}
	leaf := certs[0]
	if len(a.probe.Certificate) > 0 && bytes.Equal(leaf.Raw, a.probe.Certificate[0]) {
		return nil
	}
	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         a.pool.Load(),
		Intermediates: intermediates,
		CurrentTime:   a.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		var unknown x509.UnknownAuthorityError
		if errors.As(err, &unknown) {
			return &RefusedError{Reason: ReasonUnknownCA, Err: err}
		}
		return &RefusedError{Reason: ReasonInvalidCertificate, Err: err}
	}
	if len(a.allowed) == 0 || slices.ContainsFunc(certNames(leaf), func(n string) bool { return slices.Contains(a.allowed, n) }) {
		return nil
	}
	return &RefusedError{Reason: ReasonNameNotAllowed}
}

// certNames are the names a certificate is known by: its common name and its DNS and URI
// subject alternative names.
func certNames(c *x509.Certificate) []string {
	names := append([]string{}, c.DNSNames...)
	if c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName)
	}
	for _, u := range c.URIs {
		names = append(names, u.String())
	}
	return names
}

// ProbeTLSConfig is the client configuration of the process's own readiness check: it
// presents the probe certificate, which Verify accepts without counting.
func (a *Authenticator) ProbeTLSConfig() *tls.Config {
	//nolint:gosec // The probe checks that the server completes handshakes, not who it is.
	return &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{a.probe}}
}

// ProbeHandshake dials addr and completes a TLS handshake with the probe certificate: a
// readiness check for a webhook server that verifies its callers.
func (a *Authenticator) ProbeHandshake(ctx context.Context, addr string) error {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: a.ProbeTLSConfig()}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("webhook server is not reachable: %w", err)
	}
	return conn.Close()
}

// newProbeCertificate makes a self-signed client certificate whose key only this process holds.
func newProbeCertificate() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "pullgate readiness probe"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(100 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
