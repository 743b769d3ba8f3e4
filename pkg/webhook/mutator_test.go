package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/pkg/lookup"
	"github.com/pullgate/pullgate/pkg/mutate"
	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/registrycache"
	"github.com/pullgate/pullgate/pkg/validate"
)

// mutWorld is what the mutating handler's tests run against: an origin, a mirror and a
// private registry, real, and a cluster's namespaces, secrets and ServiceAccounts.
type mutWorld struct {
	origin, mirror, private  *testregistry.Registry
	mirrorDigest, toolDigest string
	objects                  []client.Object
}

func newMutWorld(t *testing.T) *mutWorld {
	w := &mutWorld{
		origin:  testregistry.New(t),
		mirror:  testregistry.New(t),
		private: testregistry.New(t, testregistry.WithBasicAuth("puller", "hunter2")),
	}
	// The mirror has caught up with the origin: same image, same digest.
	app := testregistry.Image(t, "linux", "amd64")
	w.origin.Write(t, "app", "v1", app)
	w.mirrorDigest = w.mirror.Write(t, "origin/app", "v1", app).String()
	w.toolDigest = w.private.PushImage(t, "tool", "v1", "linux", "amd64").String()

	w.objects = []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "infra"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "quiet", Labels: map[string]string{"pullgate.io/mode": "off"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "default"}},
		testregistry.PullSecret(testNS, "regcred", w.private.Host, "puller", "hunter2"),
	}
	return w
}

func (w *mutWorld) policy() *policy.Policy {
	p := policy.Default()
	p.Registries.AllowLoopback = true
	p.LookupTimeout = metav1.Duration{Duration: 3 * time.Second}
	p.ExemptNamespaces = []string{"infra"}
	p.Mutations = policy.MutationPolicy{
		Enabled:     true,
		Mirrors:     []policy.MirrorRule{{Registry: w.origin.Host, Mirrors: []string{w.mirror.Host + "/origin"}}},
		PullSecrets: []policy.PullSecretRule{{Registry: w.private.Host, SecretName: "regcred"}},
		PinDigests:  true,
	}
	return p
}

func (w *mutWorld) handler(pol *policy.Policy, reader client.Reader) *Mutator {
	if reader == nil {
		reader = fake.NewClientBuilder().WithObjects(w.objects...).Build()
	}
	return &Mutator{
		Mutations: &mutate.Mutator{
			Registry: registrycache.New(registrycache.WithDialPolicy(registrycache.DialPolicy{AllowLoopback: true})),
			Reader:   reader,
			Nodes:    func() *validate.Nodes { return amd64Nodes },
		},
		Policy: policy.NewStore(pol),
		Reader: reader,
	}
}

var mutPodGVK = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}

// mutRequest is an admission request for obj, encoded as the API server sends it.
func mutRequest(t *testing.T, op admissionv1.Operation, gvk metav1.GroupVersionKind, namespace string, raw []byte) admission.Request {
	t.Helper()
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "uid-m", Kind: gvk, Operation: op, Namespace: namespace,
		Object: runtime.RawExtension{Raw: raw},
	}}
}

func mutPodRaw(t *testing.T, namespace string, spec corev1.PodSpec) []byte {
	t.Helper()
	b, err := json.Marshal(&corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, GenerateName: "web-"},
		Spec:       spec,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// applyPatch applies a response's JSON patch to raw, as the API server does.
func applyPatch(t *testing.T, raw []byte, resp admission.Response) []byte {
	t.Helper()
	ops, err := json.Marshal(resp.Patches)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatch.DecodePatch(ops)
	if err != nil {
		t.Fatalf("decoding the patch: %v", err)
	}
	out, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("applying the patch %s: %v", ops, err)
	}
	return out
}

// TestMutatorPatch drives a pod through the handler: mirror rewrite, pull-secret injection
// and pinning come back as a JSON patch that, applied to the request's object, gives the
// mutated pod, leaves fields this build does not know alone, and a second pass over the
// result (reinvocationPolicy: IfNeeded) yields no patch.
func TestMutatorPatch(t *testing.T) {
	w := newMutWorld(t)
	m := w.handler(w.policy(), nil)
	app, tool := w.origin.Ref("app", ":v1"), w.private.Ref("tool", ":v1")
	raw := mutPodRaw(t, testNS, containers(app, tool))
	// A field of a newer API server, unknown to this build's Pod type, must survive.
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc["spec"].(map[string]any)["futureField"] = map[string]any{"x": "y"}
	raw, _ = json.Marshal(doc)

	resp := m.Handle(t.Context(), mutRequest(t, admissionv1.Create, mutPodGVK, testNS, raw))
	if !resp.Allowed {
		t.Fatalf("denied: %v", resp.Result)
	}
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch || len(resp.Patches) == 0 {
		t.Fatalf("no JSON patch: type %v, %d operations", resp.PatchType, len(resp.Patches))
	}
	if len(resp.Warnings) != 0 {
		t.Errorf("warnings: %q", resp.Warnings)
	}
	for _, op := range resp.Patches {
		if op.Operation == "remove" {
			t.Errorf("the patch removes %s", op.Path)
		}
	}
	mutated := applyPatch(t, raw, resp)

	var got corev1.Pod
	if err := json.Unmarshal(mutated, &got); err != nil {
		t.Fatal(err)
	}
	wantImages := []string{w.mirror.Ref("origin/app", ":v1@"+w.mirrorDigest), w.private.Ref("tool", ":v1@"+w.toolDigest)}
	gotImages := []string{got.Spec.Containers[0].Image, got.Spec.Containers[1].Image}
	if diff := cmp.Diff(wantImages, gotImages); diff != "" {
		t.Errorf("images mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]corev1.LocalObjectReference{{Name: "regcred"}}, got.Spec.ImagePullSecrets); diff != "" {
		t.Errorf("imagePullSecrets mismatch (-want +got):\n%s", diff)
	}
	var originals map[string]string
	if err := json.Unmarshal([]byte(got.Annotations[mutate.OriginalImagesAnnotation]), &originals); err != nil {
		t.Fatalf("annotation: %v", err)
	}
	if diff := cmp.Diff(map[string]string{"c0": app, "c1": tool}, originals); diff != "" {
		t.Errorf("original images mismatch (-want +got):\n%s", diff)
	}
	var after map[string]any
	if err := json.Unmarshal(mutated, &after); err != nil {
		t.Fatal(err)
	}
	if _, ok := after["spec"].(map[string]any)["futureField"]; !ok {
		t.Errorf("the patch dropped a field unknown to this build: %s", mutated)
	}

	again := m.Handle(t.Context(), mutRequest(t, admissionv1.Create, mutPodGVK, testNS, mutated))
	if !again.Allowed || len(again.Patches) != 0 || again.PatchType != nil {
		t.Errorf("a second pass over the mutated pod patched it again: allowed=%v %+v", again.Allowed, again.Patches)
	}
}

// TestMutatorLeavesAlone: every request but the CREATE of a Pod where mutations apply is
// admitted without a patch.
func TestMutatorLeavesAlone(t *testing.T) {
	w := newMutWorld(t)
	spec := containers(w.origin.Ref("app", ":v1"))
	deployment, _ := json.Marshal(&appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "web"},
		Spec:       appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: spec}},
	})
	off := w.policy()
	off.Mutations.Enabled = false
	ephemeral := mutRequest(t, admissionv1.Update, mutPodGVK, testNS, mutPodRaw(t, testNS, spec))
	ephemeral.SubResource = "ephemeralcontainers"
	tests := map[string]struct {
		pol *policy.Policy
		req admission.Request
	}{
		"mutations off (the master switch)": {off, mutRequest(t, admissionv1.Create, mutPodGVK, testNS, mutPodRaw(t, testNS, spec))},
		"exempt namespace":                  {w.policy(), mutRequest(t, admissionv1.Create, mutPodGVK, "infra", mutPodRaw(t, "infra", spec))},
		"namespace labelled off":            {w.policy(), mutRequest(t, admissionv1.Create, mutPodGVK, "quiet", mutPodRaw(t, "quiet", spec))},
		"pod update":                        {w.policy(), mutRequest(t, admissionv1.Update, mutPodGVK, testNS, mutPodRaw(t, testNS, spec))},
		"ephemeral containers":              {w.policy(), ephemeral},
		"pod deletion":                      {w.policy(), mutRequest(t, admissionv1.Delete, mutPodGVK, testNS, nil)},
		"deployment (templates are never mutated)": {w.policy(),
			mutRequest(t, admissionv1.Create, metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, testNS, deployment)},
	}
	for desc, tc := range tests {
		t.Run(desc, func(t *testing.T) {
			resp := w.handler(tc.pol, nil).Handle(t.Context(), tc.req)
			if !resp.Allowed || len(resp.Patches) != 0 || resp.PatchType != nil {
				t.Errorf("got allowed=%v patches=%+v, want allowed without a patch", resp.Allowed, resp.Patches)
			}
		})
	}
}

// TestMutatorNeverDeniesOnLookupErrors: registries that fail or cannot be read leave the pod
// as it is, admitted with a short warning.
func TestMutatorNeverDeniesOnLookupErrors(t *testing.T) {
	tests := map[string]struct {
		setup       func(w *mutWorld)
		reader      func(w *mutWorld) client.Reader
		wantWarning string
	}{
		"mirror failing": {
			setup: func(w *mutWorld) {
				w.mirror.SetFault(func(rw http.ResponseWriter, _ *http.Request) { rw.WriteHeader(http.StatusBadGateway) })
			},
			wantWarning: "no mirror qualifies",
		},
		"mirror closed": {
			setup:       func(w *mutWorld) { w.mirror.Close() },
			wantWarning: "unreachable",
		},
		"pull secrets cannot be read": {
			reader: func(w *mutWorld) client.Reader {
				return fake.NewClientBuilder().WithObjects(w.objects...).WithInterceptorFuncs(interceptor.Funcs{
					Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
						if _, ok := obj.(*corev1.ServiceAccount); ok {
							return errors.New("the cache is not synced")
						}
						return c.Get(ctx, key, obj, opts...)
					},
				}).Build()
			},
			wantWarning: "could not read the pod's pull secrets",
		},
	}
	for desc, tc := range tests {
		t.Run(desc, func(t *testing.T) {
			w := newMutWorld(t)
			pol := w.policy()
			pol.Mutations.PinDigests = false
			if tc.setup != nil {
				tc.setup(w)
			}
			var reader client.Reader
			if tc.reader != nil {
				reader = tc.reader(w)
			}
			raw := mutPodRaw(t, testNS, containers(w.origin.Ref("app", ":v1")))
			resp := w.handler(pol, reader).Handle(t.Context(), mutRequest(t, admissionv1.Create, mutPodGVK, testNS, raw))
			if !resp.Allowed || len(resp.Patches) != 0 {
				t.Fatalf("got allowed=%v patches=%+v, want allowed without a patch", resp.Allowed, resp.Patches)
			}
			if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], tc.wantWarning) {
				t.Fatalf("warnings = %q, want one containing %q", resp.Warnings, tc.wantWarning)
			}
			if n := len([]rune(resp.Warnings[0])); n > 256 {
				t.Errorf("warning of %d runes would be truncated by the API server", n)
			}
		})
	}
}

// TestMutatorDeadline: a mirror that does not answer costs the policy's lookupTimeout, not
// the registry client's own timeout, and the pod is admitted unchanged.
func TestMutatorDeadline(t *testing.T) {
	w := newMutWorld(t)
	w.mirror.SetFault(func(rw http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		rw.WriteHeader(http.StatusBadGateway)
	})
	pol := w.policy()
	pol.LookupTimeout = metav1.Duration{Duration: 300 * time.Millisecond}
	pol.Mutations.PinDigests = false
	raw := mutPodRaw(t, testNS, containers(w.origin.Ref("app", ":v1")))
	start := time.Now()
	resp := w.handler(pol, nil).Handle(t.Context(), mutRequest(t, admissionv1.Create, mutPodGVK, testNS, raw))
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %s with a lookupTimeout of 300ms", took)
	}
	if !resp.Allowed || len(resp.Patches) != 0 {
		t.Fatalf("got allowed=%v patches=%+v, want allowed without a patch", resp.Allowed, resp.Patches)
	}
	if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "timeout") {
		t.Errorf("warnings = %q, want one saying timeout", resp.Warnings)
	}
}

func TestMutatorWarningsStayWithinKubectlLimits(t *testing.T) {
	w := newMutWorld(t)
	pol := w.policy()
	pol.Mutations.PinDigests = false
	var images []string
	for i := range 40 {
		images = append(images, w.origin.Ref(fmt.Sprintf("missing-%d-%s", i, strings.Repeat("x", 60)), ":v1"))
	}
	raw := mutPodRaw(t, testNS, containers(images...))
	resp := w.handler(pol, nil).Handle(t.Context(), mutRequest(t, admissionv1.Create, mutPodGVK, testNS, raw))
	if !resp.Allowed {
		t.Fatalf("denied: %v", resp.Result)
	}
	total := 0
	for _, wn := range resp.Warnings {
		n := len([]rune(wn))
		total += n
		if n > 256 {
			t.Errorf("warning of %d runes: %q", n, wn)
		}
	}
	if len(resp.Warnings) > maxWarnings || total > 4096 {
		t.Errorf("%d warnings totalling %d runes; the API server would truncate them", len(resp.Warnings), total)
	}
	if last := resp.Warnings[len(resp.Warnings)-1]; !strings.Contains(last, "more mutation warnings not shown") {
		t.Errorf("no summary warning: %q", last)
	}
}

func TestMutatorMalformedPodIsABadRequest(t *testing.T) {
	w := newMutWorld(t)
	req := mutRequest(t, admissionv1.Create, mutPodGVK, testNS, []byte(`{"spec": {"containers": "not a list"}}`))
	resp := w.handler(w.policy(), nil).Handle(t.Context(), req)
	if resp.Allowed || resp.Result.Code != http.StatusBadRequest {
		t.Fatalf("got allowed=%v code=%d, want a 400 error", resp.Allowed, resp.Result.Code)
	}
}

// TestMutationWarnings checks the wording of a warning.
func TestMutationWarnings(t *testing.T) {
	got := mutationWarnings([]mutate.Warning{
		{Kind: mutate.Mirror, Container: "app", Image: "nginx:1.27", Message: "kept, no mirror qualifies (m: manifest unknown)"},
		{Kind: mutate.PullSecret, Container: "app", Image: "r.example/x", Message: strings.Repeat("long ", 100)},
	})
	want := []string{`pullgate mirror: container "app" (image "nginx:1.27"): kept, no mirror qualifies (m: manifest unknown)`}
	if diff := cmp.Diff(want, got[:1], cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("warning mismatch (-want +got):\n%s", diff)
	}
	if n := len([]rune(got[1])); n > warningRunes {
		t.Errorf("long warning has %d runes, more than %d", n, warningRunes)
	}
}

// everythingRegistry has every image, as one single-platform manifest, without I/O.
type everythingRegistry struct{}

func (everythingRegistry) Resolve(context.Context, name.Reference, authn.Authenticator) (lookup.Descriptor, error) {
	return lookup.Descriptor{
		Digest:    v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)},
		MediaType: types.DockerManifestSchema2,
	}, nil
}

func (everythingRegistry) Platforms(context.Context, name.Digest, authn.Authenticator) ([]v1.Platform, error) {
	return nil, nil
}

// FuzzMutatorAdmissionReview sends arbitrary bodies through controller-runtime's admission
// plumbing into the mutator, with a registry that has every image: it must never panic,
// always answer a well-formed AdmissionReview, and a patch it returns must apply to the
// request's object and leave nothing to patch on a second pass.
func FuzzMutatorAdmissionReview(f *testing.F) {
	for _, seed := range []string{
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"a","object":{"spec":{"containers":[{"name":"c","image":"example.com/app:v1"},{"name":"d","image":"nginx"}]}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"2","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"a","object":{"metadata":{"annotations":{"pullgate.io/original-images":"not json"}},"spec":{"imagePullSecrets":[],"initContainers":[{"name":"i","image":"example.com/a:b@sha256:abababababababababababababababababababababababababababababababab"}],"future":[1]}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"3","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"a","object":{"spec":{"containers":[{"name":"c","image":"UPPER"},{"name":"c","image":"example.com/x"}]}}}}`,
		`{"request":{"uid":"4","kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"CREATE","object":{"spec":{}}}}`,
		`{"request":null}`,
		`not json`,
		// Field names differing only in case: the pod must be read as the API server reads it.
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"a","object":{"speC":{"ContAiners":[{"name":"0","imAge":"00000"}]}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"a","object":{"speC":{"containers":[{"name":"0","image":"a"}]},"spec":{"containers":[{"name":"0","image":"b"}]}}}}`,
		`{"request":{"uid":"2","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","nAmespACe":"a","object":{"spec":{"containers":[{"x":"0"},{"image":"00000"}]}}}}`,
	} {
		f.Add([]byte(seed))
	}
	pol := policy.Default()
	pol.Mutations = policy.MutationPolicy{
		Enabled: true,
		Mirrors: []policy.MirrorRule{
			{Registry: "example.com", Mirrors: []string{"mirror.example.com/ex"}},
			{Registry: "docker.io", Mirrors: []string{"mirror.example.com/hub"}},
		},
		PullSecrets: []policy.PullSecretRule{{Registry: "mirror.example.com", SecretName: "regcred"}},
		PinDigests:  true,
	}
	reader := fake.NewClientBuilder().WithObjects(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}},
		testregistry.PullSecret("a", "regcred", "mirror.example.com", "u", "p"),
	).Build()
	hook := &admission.Webhook{Handler: &Mutator{
		Mutations: &mutate.Mutator{Registry: everythingRegistry{}, Reader: reader, Nodes: func() *validate.Nodes { return amd64Nodes }},
		Policy:    policy.NewStore(pol),
		Reader:    reader,
	}}
	f.Fuzz(func(t *testing.T, body []byte) {
		resp := serveReview(t, hook, MutatePath, body)
		if len(resp.Patch) == 0 {
			return
		}
		// Read as controller-runtime's deserializer reads it: field names are case-sensitive.
		var review admissionv1.AdmissionReview
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(body, &review); err != nil || review.Request == nil {
			t.Fatalf("a patch for a body that is not an AdmissionReview: %q", body)
		}
		patch, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("the patch does not decode: %v: %s", err, resp.Patch)
		}
		mutated, err := patch.Apply(review.Request.Object.Raw)
		if err != nil {
			t.Fatalf("the patch does not apply to the request's object: %v\npatch: %s\nobject: %s", err, resp.Patch, review.Request.Object.Raw)
		}
		review.Request.Object.Raw = mutated
		again, err := json.Marshal(&review)
		if err != nil {
			t.Fatal(err)
		}
		if resp2 := serveReview(t, hook, MutatePath, again); len(resp2.Patch) != 0 {
			t.Fatalf("a second pass patched again: %s\nobject: %s", resp2.Patch, mutated)
		}
	})
}
