package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/pullgate/pullgate/pkg/lookup"
	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/validate"
)

// unknownRegistry answers every look-up "manifest unknown" without I/O, so the fuzzer spends
// its time in decoding and the checks, not on the network.
type unknownRegistry struct{}

func (unknownRegistry) Resolve(_ context.Context, ref name.Reference, _ authn.Authenticator) (lookup.Descriptor, error) {
	return lookup.Descriptor{}, &lookup.Error{Kind: lookup.KindManifestUnknown, Host: ref.Context().RegistryStr(), StatusCode: 404}
}

func (unknownRegistry) Platforms(context.Context, name.Digest, authn.Authenticator) ([]v1.Platform, error) {
	return nil, nil
}

func (unknownRegistry) Children(context.Context, name.Digest, authn.Authenticator) ([]v1.Descriptor, error) {
	return nil, nil
}

func (unknownRegistry) Tags(_ context.Context, repo name.Repository, _ authn.Authenticator, _ int) ([]string, error) {
	return []string{"v1", "v2"}, nil
}

// FuzzAdmissionReview sends arbitrary bodies through controller-runtime's admission
// plumbing into the validator: it must never panic, and must always answer a well-formed
// AdmissionReview.
func FuzzAdmissionReview(f *testing.F) {
	for _, seed := range []string{
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"a","object":{"spec":{"containers":[{"name":"c","image":"example.com/app:v1"}]}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"2","kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"UPDATE","namespace":"a","object":{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"x"}]}}}},"oldObject":{"spec":{}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"3","kind":{"version":"v1","kind":"Pod"},"operation":"UPDATE","subResource":"ephemeralcontainers","namespace":"a","object":{"spec":{"ephemeralContainers":[{"name":"d","image":"UPPER"}]}},"oldObject":{}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"4","kind":{"group":"batch","version":"v1","kind":"CronJob"},"operation":"CREATE","object":{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"initContainers":[{"name":"i","image":"a@sha256:zz"}]}}}}}}}}`,
		`{"request":{"uid":"5","kind":{"version":"v1","kind":"ReplicationController"},"operation":"CREATE","object":{"spec":{}}}}`,
		`{"request":null}`,
		`not json`,
		``,
	} {
		f.Add([]byte(seed))
	}
	pol := policy.Default()
	v := &Validator{
		Checker: &validate.Checker{Registry: unknownRegistry{}, Nodes: func() *validate.Nodes { return amd64Nodes }},
		Policy:  policy.NewStore(pol),
		Reader:  fake.NewClientBuilder().Build(),
	}
	hook := &admission.Webhook{Handler: v}
	f.Fuzz(func(t *testing.T, body []byte) {
		serveReview(t, hook, ValidatePath, body)
	})
}

// serveReview posts body to hook at path and returns the response of the AdmissionReview it
// answers; anything else fails t.
func serveReview(t *testing.T, hook http.Handler, path string, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	hook.ServeHTTP(rec, req)
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &review); err != nil {
		t.Fatalf("answer is not an AdmissionReview: %v: %q", err, rec.Body.String())
	}
	if review.Response == nil {
		t.Fatalf("answer has no response: %q", rec.Body.String())
	}
	return review.Response
}
