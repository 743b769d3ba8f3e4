//go:build e2e

package realnode

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullgate/pullgate/test/e2e/harness"
)

// TestInstallWithClientAuth installs the chart with clientAuth on and cert-manager issuing
// the client CA and the API server's certificate. This cluster's API server is not
// configured to present it (the AdmissionConfiguration is read at its start, before the
// certificate exists), which is what an operator sees who turns clientAuth on first: the
// replicas become Ready, admissions go unchecked (failurePolicy Ignore), and the refusals are
// counted. Called directly at a replica's address, the certificate cert-manager issued is
// answered and no certificate is refused.
func TestInstallWithClientAuth(t *testing.T) {
	uninstall(t)
	ctx := t.Context()
	if _, err := env.BuildImage(ctx, "v0.1.0"); err != nil {
		t.Fatal(err)
	}
	if err := env.StartCertManager(ctx); err != nil {
		t.Fatal(err)
	}
	helm(t, append([]string{"install", "pullgate", harness.RepoRoot() + "/charts/pullgate",
		"-n", "pullgate", "--create-namespace", "--wait", "--timeout", "5m",
		"--set", "clientAuth.enabled=true", "--set", "clientAuth.allowedNames={kube-apiserver}"}, chartValues("v0.1.0")...)...)
	t.Cleanup(func() { uninstall(t) })
	mustKubectl(t, "", "get", "pods,certificate", "-n", "pullgate", "-o", "wide")

	if env.Kubectl(ctx, "", "get", "namespace", "shop").ExitCode != 0 {
		mustKubectl(t, "", "create", "namespace", "shop")
	}
	if err := env.WaitServiceAccount(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	t.Run("an API server without the certificate is refused: admissions go unchecked", func(t *testing.T) {
		r := kubectl(t, deployment("web-unchecked", env.InClusterRegistry()+"/shop/web:0.0-missing"), "apply", "-f", "-", "--dry-run=server")
		if r.ExitCode != 0 || strings.Contains(r.Output(), denied) {
			t.Errorf("exit %d: want admitted unchecked (failurePolicy Ignore)", r.ExitCode)
		}
	})

	pods, err := env.Client.CoreV1().Pods("pullgate").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=pullgate"})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("no pullgate pods: %v", err)
	}
	secret := func(name string) map[string][]byte {
		s, err := env.Client.CoreV1().Secrets("pullgate").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s.Data
	}
	serving := x509.NewCertPool()
	if !serving.AppendCertsFromPEM(secret("pullgate-ca")["ca.crt"]) {
		t.Fatal("no serving CA in pullgate-ca")
	}
	issued := secret("pullgate-apiserver-client")
	cert, err := tls.X509KeyPair(issued["tls.crt"], issued["tls.key"])
	if err != nil {
		t.Fatalf("the client certificate cert-manager issued: %v", err)
	}
	podIP := pods.Items[0].Status.PodIP
	post := func(certs ...tls.Certificate) error {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: serving, ServerName: "pullgate.pullgate.svc", Certificates: certs}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Post("https://"+net.JoinHostPort(podIP, "9443")+"/validate", "application/json", bytes.NewReader([]byte(`{}`)))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		t.Logf("answered: %s", resp.Status)
		return nil
	}
	t.Run("a direct call without a certificate is refused", func(t *testing.T) {
		err := post()
		if err == nil {
			t.Fatal("answered")
		}
		t.Logf("refused: %v", err)
	})
	t.Run("a direct call with the certificate cert-manager issued is answered", func(t *testing.T) {
		if err := post(cert); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("the replicas count the refusals", func(t *testing.T) {
		total := 0.0
		for _, p := range pods.Items {
			resp, err := http.Get("http://" + net.JoinHostPort(p.Status.PodIP, "8080") + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), `pullgate_webhook_refused_callers_total{reason="no_certificate"} `); ok {
					f, _ := strconv.ParseFloat(v, 64)
					t.Logf("%s: no_certificate %v", p.Name, f)
					total += f
				}
			}
			resp.Body.Close()
		}
		// The API server's call (to one replica or the other) and the direct one.
		if total < 2 {
			t.Errorf("no_certificate refusals counted: %v, want at least 2", total)
		}
	})
}
