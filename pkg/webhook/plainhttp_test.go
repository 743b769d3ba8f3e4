package webhook

import (
	"context"
	"encoding/base64"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/registrycache"
	"github.com/pullgate/pullgate/pkg/validate"
)

// TestNoCredentialOverPlainHTTP watches from the outside: a registry that speaks only plain
// HTTP and asks for Basic credentials, reached (every dial, whatever the name or address, is
// sent to it) under the spellings an image may give its host, each with a pull secret for
// that very host, through the real handler and registry cache. It records every
// Authorization header and query it receives. A credential may arrive only where containerd
// itself would speak plain HTTP with it: a host the policy lists as insecure, or one
// containerd's docker.IsLocalhost accepts (exactly "localhost", or a loopback IP). For
// localhost without a port or on 443 the two containerd lines differ: containerd 2 speaks
// HTTPS only (core/remotes/docker/config/hosts.go ConfigureHosts: "If port is default or 443,
// only use https"), containerd 1.6's CRI plain HTTP (pkg/cri/server/image_pull.go
// defaultScheme: IsLocalhost → "http"); pullgate follows 1.6 there, and a loopback connection
// never crosses the network.
func TestNoCredentialOverPlainHTTP(t *testing.T) {
	const user, password = "puller", "pl41n-s3cret"
	reg := testregistry.New(t, testregistry.WithBasicAuth(user, password))
	reg.PushImage(t, "app", "v1", "linux", "amd64")
	_, port, _ := net.SplitHostPort(reg.Host)

	type seen struct{ requests, authorized, leakedInQuery int }
	var (
		mu  sync.Mutex
		got seen
	)
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	reg.SetMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			got.requests++
			if r.Header.Get("Authorization") != "" {
				got.authorized++
			}
			if q := r.URL.RawQuery; strings.Contains(q, password) || strings.Contains(q, basic) || strings.Contains(q, user) {
				got.leakedInQuery++
			}
			mu.Unlock()
			next.ServeHTTP(w, r)
		})
	})
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, reg.Host)
	}

	for _, tc := range []struct {
		desc, host string
		insecure   bool
		// plain says containerd would speak plain HTTP to it with the credential: the
		// positive control that shows the recorder sees a credential when one is sent.
		plain bool
	}{
		{desc: "127.0.0.1 with a port", host: "127.0.0.1:" + port, plain: true},
		{desc: "localhost with a port", host: "localhost:" + port, plain: true},
		{desc: "another loopback address", host: "127.0.0.2:" + port, plain: true},
		{desc: "IPv6 loopback", host: "[::1]:" + port, plain: true},
		{desc: "localhost without a port: plain HTTP on containerd 1.6", host: "localhost", plain: true},
		{desc: "localhost:443: plain HTTP on containerd 1.6", host: "localhost:443", plain: true},
		{desc: "LOCALHOST in capitals is not localhost to containerd", host: "LOCALHOST:" + port},
		{desc: "127.1 is not an IP to containerd", host: "127.1:" + port},
		{desc: "RFC 1918 address", host: "10.1.2.3:" + port},
		{desc: "RFC 1918 address without a port", host: "192.168.1.10"},
		{desc: "RFC 1918 address listed insecure", host: "10.1.2.3:" + port, insecure: true, plain: true},
		{desc: "another RFC 1918 address than the one listed insecure", host: "10.1.2.4:" + port},
		{desc: "the insecure address with another port", host: "10.1.2.3:1" + port},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			mu.Lock()
			got = seen{}
			mu.Unlock()
			pol := basePolicy()
			pol.Registries.AllowPrivateNetworks = true
			if tc.insecure {
				pol.Registries.Insecure = []string{"10.1.2.3:" + port}
			}
			v := &Validator{
				Policy: policy.NewStore(pol),
				Reader: fake.NewClientBuilder().WithObjects(
					&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS}},
					testregistry.PullSecret(testNS, "regcred", tc.host, user, password),
				).Build(),
				Checker: &validate.Checker{
					Registry: registrycache.New(registrycache.WithTransport(tr), registrycache.WithBreaker(0, 0),
						registrycache.WithDialPolicy(registrycache.DialPolicy{AllowLoopback: true, AllowPrivateNetworks: true})),
					Nodes: func() *validate.Nodes { return amd64Nodes },
				},
			}
			spec := containers(tc.host + "/app:v1")
			spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred"}}
			resp := v.Handle(t.Context(), request(t, admissionv1.Create, podKind, testNS, podObject(testNS, spec), nil))
			answer := strings.Join(resp.Warnings, "\n")
			if resp.Result != nil {
				answer = resp.Result.Message + "\n" + answer
			}
			mu.Lock()
			defer mu.Unlock()
			t.Logf("allowed=%v, %d plain-HTTP requests, %d with Authorization: %s", resp.Allowed, got.requests, got.authorized, answer)
			if got.leakedInQuery > 0 {
				t.Errorf("%d requests carried the credential in their query", got.leakedInQuery)
			}
			if tc.plain {
				if got.authorized == 0 || !resp.Allowed {
					t.Errorf("containerd would pull over plain HTTP with the credential: want it sent and the pod admitted (allowed=%v, %d authorized)", resp.Allowed, got.authorized)
				}
				return
			}
			if got.authorized > 0 {
				t.Errorf("%d requests with an Authorization header over plain HTTP to %s, which containerd would speak HTTPS to", got.authorized, tc.host)
			}
			if strings.Contains(answer, password) || strings.Contains(answer, basic) {
				t.Error("the answer names the credential")
			}
		})
	}
}
