//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// TestClientAuth: the API server presents its client certificate (AdmissionConfiguration),
// so admissions go on as before; any other caller of pullgate's address is refused during the
// TLS handshake, and counted.
func TestClientAuth(t *testing.T) {
	certs := env.ClientCerts()
	if certs == nil {
		t.Skip("the environment runs without client authentication")
	}
	setupNamespaces(t)

	t.Run("admissions through the API server as before", func(t *testing.T) {
		check(t, apply(t, "tag-not-found.yaml", "--dry-run=server"),
			expect{1, []string{denied, "[TagNotFound]"}, nil})
		check(t, apply(t, "good-deployment.yaml", "--dry-run=server"),
			expect{0, []string{"deployment.apps/web", "(server dry run)"}, nil})
	})

	// A forged review of a pod in "shop" naming its private registry's pull secret: what a
	// stranger inside the cluster would post to learn about that registry.
	pod := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "forged", Namespace: "shop"},
		Spec: corev1.PodSpec{
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "billing-pull"}},
			Containers:       []corev1.Container{{Name: "c", Image: env.Private + "/internal/billing:3.2"}},
		},
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	review, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID("forged-1"), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: "shop", Name: "forged", Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: raw},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	post := func(t *testing.T, cert []tls.Certificate) (*admissionv1.AdmissionReview, error) {
		t.Helper()
		c, err := env.WebhookClient(cert...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseIdleConnections()
		resp, err := c.Post(env.WebhookURL(), "application/json", bytes.NewReader(review))
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("HTTP %s, not an AdmissionReview: %v\n%s", resp.Status, err, body)
		}
		return &out, nil
	}

	before := refusedCallers(t)
	for _, tc := range []struct {
		name   string
		certs  []tls.Certificate
		reason string
	}{
		{"no client certificate", nil, "no_certificate"},
		{"a certificate from another CA", []tls.Certificate{certs.OtherCA}, "unknown_ca"},
		{"the API server's CA, another name", []tls.Certificate{certs.WrongName}, "name_not_allowed"},
	} {
		t.Run("direct POST with "+tc.name+" is refused during the handshake", func(t *testing.T) {
			out, err := post(t, tc.certs)
			if err == nil {
				t.Fatalf("answered: %+v", out.Response)
			}
			t.Logf("refused: %v", err)
			if !strings.Contains(err.Error(), "tls: ") && !strings.Contains(err.Error(), "remote error") {
				t.Errorf("error %q is not a TLS refusal", err)
			}
		})
	}
	t.Run("the API server's certificate is answered", func(t *testing.T) {
		out, err := post(t, []tls.Certificate{certs.APIServer})
		if err != nil {
			t.Fatal(err)
		}
		if out.Response == nil || out.Response.UID != "forged-1" {
			t.Fatalf("no answer for the review: %+v", out)
		}
		t.Logf("allowed=%v result=%+v", out.Response.Allowed, out.Response.Result)
	})
	after := refusedCallers(t)
	for _, reason := range []string{"no_certificate", "unknown_ca", "name_not_allowed", "invalid_certificate"} {
		want := 1.0
		if reason == "invalid_certificate" {
			want = 0
		}
		if got := after[reason] - before[reason]; got != want {
			t.Errorf("pullgate_webhook_refused_callers_total{reason=%q} rose by %v, want %v (before %v, after %v)", reason, got, want, before, after)
		}
	}
}

// refusedCallers scrapes pullgate_webhook_refused_callers_total by reason.
func refusedCallers(t *testing.T) map[string]float64 {
	t.Helper()
	text, err := env.WebhookMetrics(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	const prefix = `pullgate_webhook_refused_callers_total{reason="`
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		reason, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		got[reason] = v
	}
	if len(got) == 0 {
		t.Fatalf("no pullgate_webhook_refused_callers_total in the metrics:\n%.2000s", text)
	}
	return got
}
