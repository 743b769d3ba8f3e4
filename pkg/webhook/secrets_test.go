package webhook

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/common/expfmt"
	"go.uber.org/zap/zapcore"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/pullgate/pullgate/internal/testregistry"
)

// TestCredentialsNeverLeave admits pods that use a namespace's pull secrets, right and
// wrong, against their registry and another one, with debug logging on, and then searches
// everything pullgate produced — responses, warnings, logs, metrics, and the headers the
// other registry received — for the secrets.
func TestCredentialsNeverLeave(t *testing.T) {
	w := newWorld(t)
	other := testregistry.New(t)
	other.PushImage(t, "app", "v1", "linux", "amd64")
	var mu sync.Mutex
	var otherAuth []string
	other.SetMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
			if a := req.Header.Get("Authorization"); a != "" {
				mu.Lock()
				otherAuth = append(otherAuth, a)
				mu.Unlock()
			}
			next.ServeHTTP(rw, req)
		})
	})

	var logs bytes.Buffer
	ctx := logf.IntoContext(t.Context(), zap.New(zap.WriteTo(&logs), zap.Level(zapcore.DebugLevel)))
	v := w.validator(basePolicy())
	withSecret := func(secret string, images ...string) corev1.PodSpec {
		s := containers(images...)
		s.ImagePullSecrets = []corev1.LocalObjectReference{{Name: secret}}
		return s
	}
	var produced strings.Builder
	for _, spec := range []corev1.PodSpec{
		withSecret("regcred", w.private.Ref("app", ":v1"), other.Ref("app", ":v1")),
		withSecret("stale", w.private.Ref("app", ":v1"), other.Ref("app", ":v1")),
		withSecret("regcred", w.private.Ref("nope", ":v1"), w.private.Ref("app", ":v9")),
		containers(w.private.Ref("app", ":v1")), // no secret: must not be served regcred's answer
	} {
		resp := v.Handle(ctx, request(t, admissionv1.Create, podKind, testNS, podObject(testNS, spec), nil))
		produced.WriteString(resp.Result.Message)
		produced.WriteString(strings.Join(resp.Warnings, "\n"))
	}
	// The pod without a secret asked after the one with it: it must still be refused.
	if !strings.Contains(produced.String(), "[NoCredentials]") {
		t.Errorf("a pod without pull secrets was not refused after one with them was admitted:\n%s", produced.String())
	}

	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var metricsText bytes.Buffer
	enc := expfmt.NewEncoder(&metricsText, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}

	secrets := []string{"hunter2", "puller:wrong",
		base64.StdEncoding.EncodeToString([]byte("puller:hunter2")),
		base64.StdEncoding.EncodeToString([]byte("puller:wrong"))}
	for where, text := range map[string]string{
		"admission responses": produced.String(),
		"logs":                logs.String(),
		"metrics":             metricsText.String(),
	} {
		if text == "" && where != "logs" {
			t.Errorf("nothing captured from %s; the search would prove nothing", where)
		}
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s contain a credential (%q)", where, s)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(otherAuth) > 0 {
		t.Errorf("a registry the secrets do not name received Authorization headers: %d", len(otherAuth))
	}
	t.Logf("searched %d bytes of responses, %d of logs, %d of metrics", produced.Len(), logs.Len(), metricsText.Len())
}
