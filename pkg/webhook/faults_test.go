package webhook

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/registrycache"
)

// faultDeadline is the lookupTimeout of the fault tests: every admission must be answered
// within it (plus scheduling slack), whatever the registry does.
const faultDeadline = 1500 * time.Millisecond

// faults are registries that misbehave in the ways real ones do. Each is installed on a
// fresh registry holding app:v1.
var faults = []struct {
	desc string
	// install makes r misbehave; it returns the image reference to admit.
	install func(t *testing.T, r *testregistry.Registry) string
	// reason is the finding the admission must report.
	reason string
	// text must appear in the warning, so the user knows what happened.
	text string
}{{
	desc: "hangs past the deadline",
	install: func(_ *testing.T, r *testregistry.Registry) string {
		r.SetFault(func(_ http.ResponseWriter, req *http.Request) { <-req.Context().Done() })
		return r.Ref("app", ":v1")
	},
	reason: "RegistryUnreachable", text: "could not be reached",
}, {
	desc: "answers each request after 1s",
	install: func(_ *testing.T, r *testregistry.Registry) string {
		r.SetMiddleware(func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				select {
				case <-time.After(time.Second):
					next.ServeHTTP(w, req)
				case <-req.Context().Done():
				}
			})
		})
		return r.Ref("app", ":v1")
	},
	reason: "RegistryUnreachable", text: "timeout",
}, {
	desc: "resets the connection",
	install: func(_ *testing.T, r *testregistry.Registry) string {
		r.SetFault(func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.(*net.TCPConn).SetLinger(0)
				conn.Close()
			}
		})
		return r.Ref("app", ":v1")
	},
	reason: "RegistryUnreachable", text: "could not be reached",
}, {
	desc: "answers 500",
	install: func(_ *testing.T, r *testregistry.Registry) string {
		r.SetFault(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
		return r.Ref("app", ":v1")
	},
	reason: "RegistryError", text: "server error",
}, {
	desc: "answers 429 with Retry-After",
	install: func(_ *testing.T, r *testregistry.Registry) string {
		r.SetFault(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusTooManyRequests)
		})
		return r.Ref("app", ":v1")
	},
	reason: "RegistryRateLimited", text: "429",
}, {
	desc: "answers 429 without Retry-After",
	install: func(_ *testing.T, r *testregistry.Registry) string {
		r.SetFault(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTooManyRequests) })
		return r.Ref("app", ":v1")
	},
	reason: "RegistryRateLimited", text: "429",
}, {
	desc: "serves a malformed manifest",
	install: func(_ *testing.T, r *testregistry.Registry) string {
		r.SetMiddleware(func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				// Every manifest GET: the first look-up of a tag fetches the manifest by tag
				// when the platform check is on, the platform look-up by digest otherwise.
				if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/manifests/") {
					w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
					fmt.Fprint(w, `{"schemaVersion": 2, "config": {"digest": "not-a-digest"`)
					return
				}
				next.ServeHTTP(w, req)
			})
		})
		return r.Ref("app", ":v1")
	},
	reason: "RegistryError", text: "failed",
}, {
	desc: "serves a manifest of an unknown media type",
	install: func(_ *testing.T, r *testregistry.Registry) string {
		r.SetMiddleware(func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if strings.Contains(req.URL.Path, "/manifests/") {
					w.Header().Set("Content-Type", "application/vnd.example.unknown+json")
					w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("ab", 32))
					if req.Method == http.MethodGet {
						fmt.Fprint(w, `{"whatever": true}`)
					}
					return
				}
				next.ServeHTTP(w, req)
			})
		})
		return r.Ref("app", ":v1")
	},
	reason: "", // no platform can be read from it: admitted without a finding
}, {
	desc: "lists 100,000 tags for a missing tag",
	install: func(_ *testing.T, r *testregistry.Registry) string {
		var b strings.Builder
		b.WriteString(`{"name":"app","tags":[`)
		for i := range 100_000 {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"build-%06d"`, i)
		}
		b.WriteString(`]}`)
		page := b.String()
		r.SetMiddleware(func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if strings.HasSuffix(req.URL.Path, "/tags/list") {
					w.Header().Set("Content-Type", "application/json")
					fmt.Fprint(w, page)
					return
				}
				next.ServeHTTP(w, req)
			})
		})
		return r.Ref("app", ":build-1000000")
	},
	reason: "TagNotFound", text: "build-100000",
}}

// TestRegistryFaults: for every fault, the admission is answered within the deadline, the
// verdict follows onRegistryError (warn admits, enforce denies), and the finding says what
// happened.
func TestRegistryFaults(t *testing.T) {
	for _, f := range faults {
		for _, mode := range []policy.Mode{policy.Warn, policy.Enforce} {
			t.Run(fmt.Sprintf("%s/onRegistryError=%s", f.desc, mode), func(t *testing.T) {
				w := newWorld(t)
				r := testregistry.New(t)
				r.PushImage(t, "app", "v1", "linux", "amd64")
				image := f.install(t, r)
				pol := basePolicy()
				pol.LookupTimeout = metav1.Duration{Duration: faultDeadline}
				pol.OnRegistryError = mode
				pol.Checks[policy.CheckExistence] = mode
				v := w.validator(pol)

				start := time.Now()
				resp := v.Handle(t.Context(), request(t, admissionv1.Create, podKind, testNS, podObject(testNS, containers(image)), nil))
				elapsed := time.Since(start)
				if elapsed > faultDeadline+500*time.Millisecond {
					t.Errorf("answered after %s; the deadline is %s", elapsed, faultDeadline)
				}
				t.Logf("answered in %s: allowed=%v warnings=%q message=%q", elapsed.Round(time.Millisecond), resp.Allowed, resp.Warnings, resp.Result.Message)
				text := strings.Join(resp.Warnings, "\n") + resp.Result.Message
				if f.reason == "" {
					if !resp.Allowed || strings.Contains(text, "[") {
						t.Fatalf("want admitted without findings, got allowed=%v %q", resp.Allowed, text)
					}
					return
				}
				if wantAllowed := mode == policy.Warn; resp.Allowed != wantAllowed {
					t.Errorf("allowed = %v, want %v", resp.Allowed, wantAllowed)
				}
				if !strings.Contains(text, "["+f.reason+"]") || !strings.Contains(text, f.text) {
					t.Errorf("response does not say [%s] … %q: %q", f.reason, f.text, text)
				}
			})
		}
	}
}

// TestBreakerBoundsAHangingRegistry: once the circuit for a hanging host is open, admissions
// are answered at once instead of after the deadline, and the registry sees no more requests
// until the window ends.
func TestBreakerBoundsAHangingRegistry(t *testing.T) {
	w := newWorld(t)
	r := testregistry.New(t)
	r.SetFault(func(_ http.ResponseWriter, req *http.Request) { <-req.Context().Done() })
	pol := basePolicy()
	pol.LookupTimeout = metav1.Duration{Duration: 300 * time.Millisecond}
	// As cmd/webhook does: a shared lookup lives as long as one admission may wait for it.
	v := w.validator(pol, registrycache.WithBreaker(2, time.Minute), registrycache.WithRequestTimeout(pol.LookupTimeout.Duration))
	admit := func(i int) (time.Duration, []string) {
		start := time.Now()
		resp := v.Handle(t.Context(), request(t, admissionv1.Create, podKind, testNS,
			podObject(testNS, containers(r.Ref(fmt.Sprintf("app%d", i), ":v1"))), nil))
		if !resp.Allowed {
			t.Fatalf("admission %d denied under onRegistryError=warn: %s", i, resp.Result.Message)
		}
		return time.Since(start), resp.Warnings
	}
	// The failures that open the circuit are recorded as their lookups end, about when the
	// admissions waiting on them give up; one admission more may start before that.
	const threshold = 2
	slow := 0
	for i := range 50 {
		elapsed, warnings := admit(i)
		if elapsed > 200*time.Millisecond {
			slow++
			continue
		}
		if !strings.Contains(strings.Join(warnings, " "), "circuit") {
			t.Fatalf("admission %d was fast but its warning does not say the circuit is open: %q", i, warnings)
		}
	}
	t.Logf("%d of 50 admissions waited for the deadline; the registry got %d requests", slow, r.TotalRequests())
	if slow > threshold+1 {
		t.Errorf("%d admissions waited for the deadline; want at most %d", slow, threshold+1)
	}
	if got := r.Requests(http.MethodHead, "manifests"); got > threshold+1 {
		t.Errorf("the hanging registry got %d manifest requests; want at most %d", got, threshold+1)
	}
}

// TestTLSHandshakeFailure: a registry whose certificate nobody trusts is a registry error,
// not a verdict.
func TestTLSHandshakeFailure(t *testing.T) {
	w := newWorld(t)
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	pol := basePolicy()
	pol.LookupTimeout = metav1.Duration{Duration: faultDeadline}
	v := w.validator(pol)
	resp := v.Handle(t.Context(), request(t, admissionv1.Create, podKind, testNS, podObject(testNS, containers(host+"/app:v1")), nil))
	t.Logf("allowed=%v warnings=%q", resp.Allowed, resp.Warnings)
	if !resp.Allowed {
		t.Fatalf("denied under onRegistryError=warn: %s", resp.Result.Message)
	}
	text := strings.Join(resp.Warnings, " ")
	if !strings.Contains(text, "[RegistryUnreachable]") && !strings.Contains(text, "[RegistryError]") {
		t.Fatalf("warning is not a registry failure: %q", text)
	}
}
