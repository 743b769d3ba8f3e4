package harness

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/pullgate/pullgate/internal/testcerts"
)

// ClientAuthName is the common name of the client certificate the API server presents to
// pullgate when Options.ClientAuth is on, and the one name pullgate allows.
const ClientAuthName = "kube-apiserver"

// clientAuth is the API server's client authentication to pullgate (Options.ClientAuth): a
// CA of its own, the certificate the API server presents (through its
// --admission-control-config-file), and certificates for callers that must be refused.
type clientAuth struct {
	caFile string
	// apiserver is what the API server presents; wrongName is from the same CA under another
	// name; otherCA is kube-apiserver's name from a CA pullgate does not trust.
	apiserver, wrongName, otherCA *testcerts.ClientCert
}

// ClientCerts are client certificates for direct calls to pullgate (CallWebhook).
type ClientCerts struct {
	// APIServer is the API server's own certificate.
	APIServer tls.Certificate
	// WrongName comes from the CA pullgate trusts, for a name it does not allow.
	WrongName tls.Certificate
	// OtherCA names the API server but comes from a CA pullgate does not trust.
	OtherCA tls.Certificate
}

// setupClientAuth issues the certificates, and writes the AdmissionConfiguration the API
// server starts with: its webhook admission plugins present the client certificate to
// pullgate's address. The kubeconfig's user is keyed by the host:port the webhook's URL names
// (envtest turns the chart's service reference into https://127.0.0.1:PORT/...): k8s.io/apiserver
// pkg/util/webhook/authentication.go clientConfig matches the exact host:port first. In a
// cluster the key is the service's DNS name (pullgate.pullgate.svc, port 443 dropped).
func (e *Env) setupClientAuth(dir string) error {
	ca, err := testcerts.NewCA("pullgate-e2e apiserver client CA")
	if err != nil {
		return err
	}
	other, err := testcerts.NewCA("pullgate-e2e stranger CA")
	if err != nil {
		return err
	}
	a := &clientAuth{caFile: filepath.Join(dir, "pki", "webhook-client-ca.crt")}
	if a.apiserver, err = ca.IssueClient(ClientAuthName, nil, nil); err != nil {
		return err
	}
	if a.wrongName, err = ca.IssueClient("intruder", []string{"intruder.pullgate.svc"}, nil); err != nil {
		return err
	}
	if a.otherCA, err = other.IssueClient(ClientAuthName, nil, nil); err != nil {
		return err
	}
	if err := os.WriteFile(a.caFile, ca.PEM(), 0o600); err != nil {
		return err
	}

	port, err := freePort()
	if err != nil {
		return err
	}
	wh := &e.env.WebhookInstallOptions
	wh.LocalServingHost, wh.LocalServingPort = "127.0.0.1", port
	kubeconfig := filepath.Join(dir, "pki", "admission.kubeconfig")
	b64 := base64.StdEncoding.EncodeToString
	if err := os.WriteFile(kubeconfig, fmt.Appendf(nil, `apiVersion: v1
kind: Config
users:
- name: "127.0.0.1:%d"
  user:
    client-certificate-data: %s
    client-key-data: %s
`, port, b64(a.apiserver.CertPEM), b64(a.apiserver.KeyPEM)), 0o600); err != nil {
		return err
	}
	admission := filepath.Join(dir, "pki", "admission-config.yaml")
	var cfg strings.Builder
	cfg.WriteString("apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n")
	for _, plugin := range []string{"ValidatingAdmissionWebhook", "MutatingAdmissionWebhook"} {
		fmt.Fprintf(&cfg, "- name: %s\n  configuration:\n    apiVersion: apiserver.config.k8s.io/v1\n    kind: WebhookAdmissionConfiguration\n    kubeConfigFile: %q\n", plugin, kubeconfig)
	}
	if err := os.WriteFile(admission, []byte(cfg.String()), 0o600); err != nil {
		return err
	}
	e.env.ControlPlane.GetAPIServer().Configure().Set("admission-control-config-file", admission)
	e.clientAuth = a
	return nil
}

// clientAuthFlags are pullgate's flags for client authentication, none when it is off.
func (e *Env) clientAuthFlags() []string {
	if e.clientAuth == nil {
		return nil
	}
	return []string{"--client-ca-file", e.clientAuth.caFile, "--client-allowed-names", ClientAuthName}
}

// ClientCerts returns the certificates of Options.ClientAuth, nil when it is off.
func (e *Env) ClientCerts() *ClientCerts {
	if e.clientAuth == nil {
		return nil
	}
	return &ClientCerts{APIServer: e.clientAuth.apiserver.TLS, WrongName: e.clientAuth.wrongName.TLS, OtherCA: e.clientAuth.otherCA.TLS}
}

// WebhookURL is where the local pullgate serves its validating webhook.
func (e *Env) WebhookURL() string {
	return fmt.Sprintf("https://127.0.0.1:%d/validate", e.port)
}

// WebhookClient is an HTTP client that trusts pullgate's serving certificate and presents
// certs (none when empty), as a caller inside the cluster would, without the API server.
func (e *Env) WebhookClient(certs ...tls.Certificate) (*http.Client, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(e.env.WebhookInstallOptions.LocalServingCAData) {
		return nil, fmt.Errorf("no serving CA from envtest")
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}, nil
}
