package webhook

import (
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/pkg/policy"
)

// TestForgedReviewsLearnLess posts the reviews a stranger would forge (a namespace's private
// repository with its pull secret; internal addresses that refuse or hang) to a discreet
// Validator, the one serving callers pullgate cannot authenticate, and to a full one, the
// one behind client authentication. The verdicts are the same; the discreet answers name no
// tag listed with the secret and no cause of a failure, so a refused and a hanging address
// read alike.
func TestForgedReviewsLearnLess(t *testing.T) {
	w := newWorld(t)
	w.private.PushImage(t, "app", "v1.2.3", "linux", "amd64")
	w.public.PushImage(t, "app", "v1.2.3", "linux", "amd64")
	hanging := testregistry.New(t)
	hanging.SetFault(func(_ http.ResponseWriter, req *http.Request) { <-req.Context().Done() })

	pol := basePolicy()
	pol.LookupTimeout = metav1.Duration{Duration: 300 * time.Millisecond}
	pol.OnRegistryError = policy.Enforce
	withSecret := func(image string) corev1.PodSpec {
		s := containers(image)
		s.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "regcred"}}
		return s
	}
	answer := func(discreet bool, spec corev1.PodSpec) (bool, string) {
		v := w.validator(pol)
		v.Discreet = discreet
		resp := v.Handle(t.Context(), request(t, admissionv1.Create, podKind, testNS, podObject(testNS, spec), nil))
		text := strings.Join(resp.Warnings, "\n")
		if resp.Result != nil {
			text = resp.Result.Message + "\n" + text
		}
		return resp.Allowed, text
	}

	for _, tc := range []struct {
		desc string
		spec corev1.PodSpec
		// both must appear in either answer; fullOnly only in the full one.
		both, fullOnly []string
	}{
		{
			desc:     "a missing tag of a private repository, listed with the namespace's secret",
			spec:     withSecret(w.private.Ref("app", ":v1.2.4")),
			both:     []string{"[TagNotFound]", `tag "v1.2.4" does not exist`, "use an existing tag"},
			fullOnly: []string{"v1.2.3"},
		},
		{
			desc: "a missing tag of a public repository, listed anonymously: anyone may list it",
			spec: containers(w.public.Ref("app", ":v1.2.4")),
			both: []string{"[TagNotFound]", "closest: v1.2.3"},
		},
		{
			desc:     "an address that refuses connections",
			spec:     containers(w.deadHost + "/app:v1"),
			both:     []string{"[RegistryUnreachable]", "could not be reached"},
			fullOnly: []string{"connection refuse"},
		},
		{
			desc:     "an address that accepts and never answers",
			spec:     containers(hanging.Ref("app", ":v1")),
			both:     []string{"[RegistryUnreachable]", "could not be reached"},
			fullOnly: []string{"timeout"},
		},
		{
			desc:     "a registry failing with 502",
			spec:     containers(w.broken.Ref("app", ":v1")),
			both:     []string{"[RegistryError]", "failed"},
			fullOnly: []string{"server error"},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			fullAllowed, full := answer(false, tc.spec)
			discreetAllowed, discreet := answer(true, tc.spec)
			if fullAllowed || discreetAllowed {
				t.Fatalf("admitted (full %v, discreet %v), want both denied:\n%s\n%s", fullAllowed, discreetAllowed, full, discreet)
			}
			for _, s := range tc.both {
				for name, text := range map[string]string{"full": full, "discreet": discreet} {
					if !strings.Contains(text, s) {
						t.Errorf("%s answer lacks %q:\n%s", name, s, text)
					}
				}
			}
			for _, s := range tc.fullOnly {
				if !strings.Contains(full, s) {
					t.Errorf("full answer lacks %q:\n%s", s, full)
				}
				if strings.Contains(discreet, s) {
					t.Errorf("discreet answer tells %q:\n%s", s, discreet)
				}
			}
		})
	}

	t.Run("a refused and a hanging address read alike", func(t *testing.T) {
		_, refused := answer(true, containers(w.deadHost+"/app:v1"))
		_, hangs := answer(true, containers(hanging.Ref("app", ":v1")))
		refused = strings.ReplaceAll(refused, w.deadHost, "HOST")
		hangs = strings.ReplaceAll(hangs, hanging.Host, "HOST")
		if refused != hangs {
			t.Errorf("discreet answers differ:\nrefused: %s\nhangs:   %s", refused, hangs)
		}
	})
}

// TestForgedMutationReviewsLearnLess: the mutating webhook's warnings for a mirror that
// cannot be asked name the kind of failure only for an authenticated caller.
func TestForgedMutationReviewsLearnLess(t *testing.T) {
	for _, discreet := range []bool{false, true} {
		w := newMutWorld(t)
		w.mirror.Close()
		pol := w.policy()
		pol.Mutations.PinDigests = false
		h := w.handler(pol, nil)
		h.Mutations.Discreet = discreet
		raw := mutPodRaw(t, testNS, containers(w.origin.Ref("app", ":v1")))
		resp := h.Handle(t.Context(), mutRequest(t, admissionv1.Create, mutPodGVK, testNS, raw))
		if !resp.Allowed || len(resp.Patches) != 0 || len(resp.Warnings) != 1 {
			t.Fatalf("discreet=%v: allowed=%v patches=%d warnings=%q, want one warning and no patch", discreet, resp.Allowed, len(resp.Patches), resp.Warnings)
		}
		named := strings.Contains(resp.Warnings[0], "unreachable")
		if named == discreet {
			t.Errorf("discreet=%v: warning %q names the failure: %v", discreet, resp.Warnings[0], named)
		}
	}
}
