package clientauth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pullgate/pullgate/internal/testcerts"
)

// server is a real TLS server configured by the Authenticator, counting the requests that
// reached its handler.
type server struct {
	url     string
	served  atomic.Int64
	refused *prometheus.CounterVec
	auth    *Authenticator
	roots   *x509.CertPool
}

func newServer(t *testing.T, caFile string, allowed []string) *server {
	t.Helper()
	s := &server{refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "refused_total"}, []string{"reason"})}
	auth, err := New(caFile, allowed, WithCounter(s.refused))
	if err != nil {
		t.Fatal(err)
	}
	s.auth = auth
	serving, err := testcerts.NewCA("serving")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := serving.WriteServing(dir); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.served.Add(1)
		_, _ = w.Write([]byte("ok"))
	}))
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	auth.Configure(ts.TLS)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	s.url = ts.URL
	s.roots = serving.Pool()
	return s
}

// call makes one request presenting certs; nil error means the handler answered.
func (s *server) call(t *testing.T, certs []tls.Certificate, maxVersion uint16) error {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.roots, Certificates: certs, MaxVersion: maxVersion}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(s.url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

func writeCA(t *testing.T, cas ...*testcerts.CA) string {
	t.Helper()
	var pem []byte
	for _, ca := range cas {
		pem = append(pem, ca.PEM()...)
	}
	f := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(f, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func TestHandshake(t *testing.T) {
	trusted := must[*testcerts.CA](t)(testcerts.NewCA("apiserver client CA"))
	other := must[*testcerts.CA](t)(testcerts.NewCA("another CA"))
	caFile := writeCA(t, trusted)
	issue := func(ca *testcerts.CA, cn string, dns []string, uris []*url.URL) []tls.Certificate {
		return []tls.Certificate{must[*testcerts.ClientCert](t)(ca.IssueClient(cn, dns, uris)).TLS}
	}
	spiffe := must[*url.URL](t)(url.Parse("spiffe://cluster.local/kube-apiserver"))
	apiserver := issue(trusted, "kube-apiserver", nil, nil)
	now := time.Now()
	expired := []tls.Certificate{must[*testcerts.ClientCert](t)(trusted.IssueClientWith("kube-apiserver", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, now.Add(-2*time.Hour), now.Add(-time.Hour))).TLS}
	serverOnly := []tls.Certificate{must[*testcerts.ClientCert](t)(trusted.IssueClientWith("kube-apiserver", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, now.Add(-time.Hour), now.Add(time.Hour))).TLS}

	for _, tc := range []struct {
		name    string
		allowed []string
		certs   []tls.Certificate
		// refused is the reason counted, "" when the caller is served.
		refused string
	}{
		{name: "no certificate", certs: nil, refused: ReasonNoCertificate},
		{name: "no certificate, names allowed", allowed: []string{"kube-apiserver"}, refused: ReasonNoCertificate},
		{name: "certificate from another CA", certs: issue(other, "kube-apiserver", nil, nil), refused: ReasonUnknownCA},
		{name: "self-signed certificate naming an allowed name", allowed: []string{"kube-apiserver"}, certs: issue(other, "kube-apiserver", nil, nil), refused: ReasonUnknownCA},
		{name: "expired certificate from the CA", certs: expired, refused: ReasonInvalidCertificate},
		{name: "certificate from the CA for server auth only", certs: serverOnly, refused: ReasonInvalidCertificate},
		{name: "any certificate from the CA when no names are listed", certs: issue(trusted, "anyone", nil, nil)},
		{name: "allowed by common name", allowed: []string{"kube-apiserver"}, certs: apiserver},
		{name: "allowed by DNS name", allowed: []string{"apiserver.example"}, certs: issue(trusted, "x", []string{"apiserver.example"}, nil)},
		{name: "allowed by URI", allowed: []string{spiffe.String()}, certs: issue(trusted, "x", nil, []*url.URL{spiffe})},
		{name: "from the CA, name not allowed", allowed: []string{"kube-apiserver"}, certs: issue(trusted, "kube-apiserver-impostor", []string{"kube-apiserver.example"}, nil), refused: ReasonNameNotAllowed},
		{name: "name compared exactly, not as a prefix or case-insensitively", allowed: []string{"kube-apiserver"}, certs: issue(trusted, "Kube-Apiserver", []string{"kube-apiserver.evil"}, nil), refused: ReasonNameNotAllowed},
	} {
		for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(tc.name+"/"+tls.VersionName(version), func(t *testing.T) {
				s := newServer(t, caFile, tc.allowed)
				err := s.call(t, tc.certs, version)
				if tc.refused == "" {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
				} else if err == nil {
					t.Fatal("served, want refused during the handshake")
				}
				wantServed := int64(0)
				if tc.refused == "" {
					wantServed = 1
				}
				if got := s.served.Load(); got != wantServed {
					t.Errorf("handler ran %d times, want %d", got, wantServed)
				}
				for _, r := range []string{ReasonNoCertificate, ReasonUnknownCA, ReasonInvalidCertificate, ReasonNameNotAllowed} {
					want := 0.0
					if r == tc.refused {
						want = 1
					}
					if got := counterValue(t, s.refused.WithLabelValues(r)); got != want {
						t.Errorf("refused{reason=%q} = %v, want %v", r, got, want)
					}
				}
			})
		}
	}
}

func TestProbeIsAcceptedAndNotCounted(t *testing.T) {
	trusted := must[*testcerts.CA](t)(testcerts.NewCA("apiserver client CA"))
	s := newServer(t, writeCA(t, trusted), []string{"kube-apiserver"})
	if err := s.auth.ProbeHandshake(t.Context(), s.url[len("https://"):]); err != nil {
		t.Fatal(err)
	}
	// A request with the probe's configuration reaches the handler, so the handshake above
	// was accepted by the server, not only completed on the client's side.
	tr := &http.Transport{TLSClientConfig: s.auth.ProbeTLSConfig()}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(s.url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, r := range []string{ReasonNoCertificate, ReasonUnknownCA, ReasonInvalidCertificate, ReasonNameNotAllowed} {
		if got := counterValue(t, s.refused.WithLabelValues(r)); got != 0 {
			t.Errorf("refused{reason=%q} = %v, want 0", r, got)
		}
	}
	// Another Authenticator's probe certificate is a stranger's self-signed certificate.
	other, err := New(writeCA(t, trusted), nil, WithCounter(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x"}, []string{"reason"})))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.call(t, other.ProbeTLSConfig().Certificates, 0); err == nil {
		t.Error("another process's probe certificate was served")
	}
}

func TestReload(t *testing.T) {
	first := must[*testcerts.CA](t)(testcerts.NewCA("first"))
	second := must[*testcerts.CA](t)(testcerts.NewCA("second"))
	caFile := writeCA(t, first)
	s := newServer(t, caFile, nil)
	fromFirst := []tls.Certificate{must[*testcerts.ClientCert](t)(first.IssueClient("a", nil, nil)).TLS}
	fromSecond := []tls.Certificate{must[*testcerts.ClientCert](t)(second.IssueClient("a", nil, nil)).TLS}

	step := func(name string, certs []tls.Certificate, wantServed bool) {
		t.Helper()
		err := s.call(t, certs, 0)
		if wantServed && err != nil {
			t.Errorf("%s: refused: %v", name, err)
		}
		if !wantServed && err == nil {
			t.Errorf("%s: served", name)
		}
	}
	step("first CA before rotation", fromFirst, true)
	step("second CA before rotation", fromSecond, false)

	// A bundle holding both (the rotation's overlap), then the second alone.
	for _, tc := range []struct {
		pem          []byte
		first, secnd bool
		wantErr      bool
	}{
		{pem: append(first.PEM(), second.PEM()...), first: true, secnd: true},
		{pem: second.PEM(), first: false, secnd: true},
		// Not a bundle: the last good one stays.
		{pem: []byte("not PEM"), first: false, secnd: true, wantErr: true},
	} {
		if err := os.WriteFile(caFile, tc.pem, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := s.auth.reload(); (err != nil) != tc.wantErr {
			t.Fatalf("reload: %v, want error %v", err, tc.wantErr)
		}
		step("first CA", fromFirst, tc.first)
		step("second CA", fromSecond, tc.secnd)
	}
}

func TestNewRefusesABadBundle(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.crt")
	if err := os.WriteFile(bad, []byte("-----BEGIN NOTHING-----"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]string{"missing file": filepath.Join(dir, "none"), "no certificate in it": bad} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(f, nil); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
