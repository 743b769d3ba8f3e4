package webhook

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/pullgate/pullgate/internal/testnodes"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/registrycache"
	"github.com/pullgate/pullgate/pkg/validate"
)

const testNS = "apps"

type world struct {
	public, private, limited, broken *testregistry.Registry
	deadHost                         string
	reader                           client.Reader
}

func newWorld(t *testing.T) *world {
	w := &world{
		public:  testregistry.New(t),
		private: testregistry.New(t, testregistry.WithBasicAuth("puller", "hunter2")),
		limited: testregistry.New(t),
		broken:  testregistry.New(t),
	}
	dead := testregistry.New(t)
	w.deadHost = dead.Host
	dead.Close()
	w.public.PushImage(t, "app", "v1", "linux", "amd64")
	w.public.PushImage(t, "app", "latest", "linux", "amd64")
	w.public.PushIndex(t, "multi", "v1", "linux/amd64", "linux/arm64")
	w.public.PushImage(t, "armonly", "v1", "linux", "arm64")
	w.public.PutManifest(t, "legacy", "v1", "application/vnd.docker.distribution.manifest.v1+prettyjws",
		[]byte(`{"schemaVersion":1,"name":"legacy","tag":"v1","architecture":"amd64","fsLayers":[],"history":[],"signatures":[]}`))
	w.private.PushImage(t, "app", "v1", "linux", "amd64")
	w.limited.SetFault(func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Retry-After", "60")
		rw.WriteHeader(http.StatusTooManyRequests)
	})
	w.broken.SetFault(func(rw http.ResponseWriter, _ *http.Request) { rw.WriteHeader(http.StatusBadGateway) })

	secret := func(name, pass string) *corev1.Secret {
		return testregistry.PullSecret(testNS, name, w.private.Host, "puller", pass)
	}
	w.reader = fake.NewClientBuilder().WithObjects(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "relaxed", Labels: map[string]string{"pullgate.io/mode": "warn"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "legacy", Labels: map[string]string{"pullgate.io/mode": "off"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "infra"}},
		secret("regcred", "hunter2"), secret("stale", "wrong"),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "opaque"}, Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{"x": []byte("y")}},
	).Build()
	return w
}

// amd64Nodes is a cluster of one linux/amd64 containerd 2 node.
var (
	amd64Nodes = testnodes.Platforms(validate.Platform{OS: "linux", Architecture: "amd64"})
)

func (w *world) validator(pol *policy.Policy, opts ...registrycache.Option) *Validator {
	opts = append([]registrycache.Option{registrycache.WithDialPolicy(registrycache.DialPolicy{AllowLoopback: true})}, opts...)
	return &Validator{
		Checker: &validate.Checker{
			Registry: registrycache.New(opts...),
			Nodes:    func() *validate.Nodes { return amd64Nodes },
		},
		Policy: policy.NewStore(pol),
		Reader: w.reader,
	}
}

func basePolicy() *policy.Policy {
	p := policy.Default()
	p.Registries.AllowLoopback = true
	p.LookupTimeout = metav1.Duration{Duration: 3 * time.Second}
	p.ExemptNamespaces = []string{"infra"}
	return p
}

func podObject(namespace string, spec corev1.PodSpec) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "web"},
		Spec:       spec,
	}
}

func request(t testing.TB, op admissionv1.Operation, gvk metav1.GroupVersionKind, namespace string, obj, old runtime.Object) admission.Request {
	t.Helper()
	raw := func(o runtime.Object) runtime.RawExtension {
		if o == nil {
			return runtime.RawExtension{}
		}
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatalf("encoding object: %v", err)
		}
		return runtime.RawExtension{Raw: b}
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "uid-1", Kind: gvk, Operation: op, Namespace: namespace, Name: "web",
		Object: raw(obj), OldObject: raw(old),
	}}
}

var podKind = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}

func containers(images ...string) corev1.PodSpec {
	var s corev1.PodSpec
	for i, img := range images {
		s.Containers = append(s.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: img})
	}
	return s
}

// TestEveryReasonBothModes drives each reason code from a real registry answer through the
// handler, in enforce mode (denied, the reason in the message) and warn mode (admitted, the
// reason in a warning).
func TestEveryReasonBothModes(t *testing.T) {
	w := newWorld(t)
	pub, priv := w.public, w.private
	secrets := func(s corev1.PodSpec, names ...string) corev1.PodSpec {
		for _, n := range names {
			s.ImagePullSecrets = append(s.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
		}
		return s
	}
	cases := []struct {
		reason validate.Reason
		spec   corev1.PodSpec
		pol    func(*policy.Policy)
	}{
		{validate.InvalidReference, containers("bad image name"), nil},
		{validate.RegistryNotAllowed, containers(pub.Ref("app", ":v1")), func(p *policy.Policy) { p.Registries.Denied = []string{pub.Host} }},
		{validate.ImageNotFound, containers(pub.Ref("nope", ":v1")), nil},
		{validate.TagNotFound, containers(pub.Ref("app", ":v2")), nil},
		{validate.DigestNotFound, containers(pub.Ref("app", "@sha256:"+strings.Repeat("a", 64))), nil},
		{validate.PlatformMismatch, containers(pub.Ref("armonly", ":v1")), nil},
		{validate.PullSecretMissing, secrets(containers(priv.Ref("app", ":v1")), "absent"), nil},
		{validate.PullSecretInvalid, secrets(containers(priv.Ref("app", ":v1")), "opaque"), nil},
		{validate.NoCredentials, containers(priv.Ref("app", ":v1")), nil},
		{validate.CredentialsRejected, secrets(containers(priv.Ref("app", ":v1")), "stale"), nil},
		{validate.RegistryUnreachable, containers(w.deadHost + "/app:v1"), nil},
		{validate.RegistryRateLimited, containers(w.limited.Ref("app", ":v1")), nil},
		{validate.RegistryError, containers(w.broken.Ref("app", ":v1")), nil},
		{validate.UnpinnedTag, containers(pub.Ref("app", ":latest")), nil},
		{validate.UnsupportedManifest, containers(pub.Ref("legacy", ":v1")), nil},
	}
	for _, tc := range cases {
		for _, mode := range []policy.Mode{policy.Enforce, policy.Warn} {
			t.Run(fmt.Sprintf("%s/%s", tc.reason, mode), func(t *testing.T) {
				pol := basePolicy()
				for c := range pol.Checks {
					pol.Checks[c] = mode
				}
				pol.OnRegistryError = mode
				if tc.pol != nil {
					tc.pol(pol)
				}
				v := w.validator(pol)
				resp := v.Handle(t.Context(), request(t, admissionv1.Create, podKind, testNS, podObject(testNS, tc.spec), nil))
				warnings := strings.Join(resp.Warnings, "\n")
				if mode == policy.Enforce {
					if resp.Allowed {
						t.Fatalf("admitted; want denied with %s (warnings: %q)", tc.reason, warnings)
					}
					if msg := resp.Result.Message; !strings.Contains(msg, "["+string(tc.reason)+"]") || !strings.Contains(msg, "Fix:") {
						t.Fatalf("denial message lacks reason %s or a fix:\n%s", tc.reason, msg)
					}
					return
				}
				if !resp.Allowed {
					t.Fatalf("denied in warn mode: %s", resp.Result.Message)
				}
				if !strings.Contains(warnings, "["+string(tc.reason)+"]") {
					t.Fatalf("warnings lack %s: %q", tc.reason, warnings)
				}
				for _, wn := range resp.Warnings {
					if n := len([]rune(wn)); n > 256 {
						t.Errorf("warning of %d runes would be truncated by the API server: %q", n, wn)
					}
				}
			})
		}
	}
}

// TestDaemonSetTemplateTolerations: a DaemonSet's pods get the DaemonSet controller's
// tolerations, so a cordoned arm64 node is one of their nodes and not a Deployment's; a
// workload update that only changes tolerations is looked up again.
func TestDaemonSetTemplateTolerations(t *testing.T) {
	w := newWorld(t)
	nodes := testnodes.Snapshot(
		testnodes.Ready("amd", "linux", "amd64"),
		testnodes.Ready("arm", "linux", "arm64", testnodes.Cordoned()),
	)
	v := w.validator(basePolicy())
	v.Checker.Nodes = func() *validate.Nodes { return nodes }
	template := func(kind string, spec corev1.PodSpec) runtime.Object {
		tmpl := corev1.PodTemplateSpec{Spec: spec}
		if kind == "DaemonSet" {
			return &appsv1.DaemonSet{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: kind}, ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "web"}, Spec: appsv1.DaemonSetSpec{Template: tmpl}}
		}
		return &appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: kind}, ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "web"}, Spec: appsv1.DeploymentSpec{Template: tmpl}}
	}
	armonly := containers(w.public.Ref("armonly", ":v1"))
	for _, tc := range []struct {
		kind        string
		wantAllowed bool
	}{{"Deployment", false}, {"DaemonSet", true}} {
		t.Run(tc.kind, func(t *testing.T) {
			gvk := metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: tc.kind}
			resp := v.Handle(t.Context(), request(t, admissionv1.Create, gvk, testNS, template(tc.kind, armonly), nil))
			if resp.Allowed != tc.wantAllowed {
				t.Fatalf("allowed = %v, want %v: %s %q", resp.Allowed, tc.wantAllowed, resp.Result.Message, resp.Warnings)
			}
			if tc.wantAllowed && !strings.Contains(strings.Join(resp.Warnings, "\n"), "[PlatformMismatch]") {
				t.Errorf("want a PlatformMismatch warning for the amd64 node, got %q", resp.Warnings)
			}
		})
	}
	t.Run("an update of tolerations only is checked", func(t *testing.T) {
		gvk := metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
		tolerating := armonly
		tolerating.Tolerations = []corev1.Toleration{{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists}}
		resp := v.Handle(t.Context(), request(t, admissionv1.Update, gvk, testNS, template("Deployment", armonly), template("Deployment", tolerating)))
		if resp.Allowed {
			t.Fatalf("admitted an update that moves the pods off the only arm64 node: %q", resp.Warnings)
		}
	})
}

func TestDenialListsEveryFailingContainer(t *testing.T) {
	w := newWorld(t)
	v := w.validator(basePolicy())
	spec := containers(w.public.Ref("nope", ":v1"), w.public.Ref("app", ":v9"), w.public.Ref("app", ":v1"))
	resp := v.Handle(t.Context(), request(t, admissionv1.Create, podKind, testNS, podObject(testNS, spec), nil))
	if resp.Allowed {
		t.Fatal("admitted a pod with two unpullable images")
	}
	msg := resp.Result.Message
	for _, want := range []string{`[ImageNotFound] container "c0"`, `[TagNotFound] container "c1"`, "closest: v1", "Fix:"} {
		if !strings.Contains(msg, want) {
			t.Errorf("denial message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, `"c2"`) {
		t.Errorf("denial names the good container:\n%s", msg)
	}
	if resp.Result.Code != http.StatusForbidden {
		t.Errorf("code = %d, want 403", resp.Result.Code)
	}
}

func TestRequestRouting(t *testing.T) {
	w := newWorld(t)
	bad := w.public.Ref("nope", ":v1")
	good := w.public.Ref("app", ":v1")
	deployment := func(image string, replicas int32) *appsv1.Deployment {
		return &appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "web"},
			Spec:       appsv1.DeploymentSpec{Replicas: &replicas, Template: corev1.PodTemplateSpec{Spec: containers(image)}},
		}
	}
	cronJob := &batchv1.CronJob{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "CronJob"},
		ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "nightly"},
		Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
			Template: corev1.PodTemplateSpec{Spec: containers(bad)}}}},
	}
	withEphemeral := func(image string) *corev1.Pod {
		p := podObject(testNS, containers(good))
		p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: image}}}
		return p
	}
	deployKind := metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	tests := []struct {
		desc        string
		req         admission.Request
		wantAllowed bool
	}{
		{"pod with a bad image", request(t, admissionv1.Create, podKind, testNS, podObject(testNS, containers(bad)), nil), false},
		{"pod in an exempt namespace", request(t, admissionv1.Create, podKind, "infra", podObject("infra", containers(bad)), nil), true},
		{"pod in a warn-labelled namespace", request(t, admissionv1.Create, podKind, "relaxed", podObject("relaxed", containers(bad)), nil), true},
		{"deployment with a bad image", request(t, admissionv1.Create, deployKind, testNS, deployment(bad, 1), nil), false},
		{"cronjob with a bad image", request(t, admissionv1.Create, metav1.GroupVersionKind{Group: "batch", Version: "v1", Kind: "CronJob"}, testNS, cronJob, nil), false},
		{"deployment update to a bad image", request(t, admissionv1.Update, deployKind, testNS, deployment(bad, 1), deployment(good, 1)), false},
		{"deployment update of replicas only is not looked up", request(t, admissionv1.Update, deployKind, testNS, deployment(bad, 3), deployment(bad, 1)), true},
		{"pod update to a bad image", request(t, admissionv1.Update, podKind, testNS, podObject(testNS, containers(bad)), podObject(testNS, containers(good))), false},
		{"pod update that changes no image", request(t, admissionv1.Update, podKind, testNS, podObject(testNS, containers(bad)), podObject(testNS, containers(bad))), true},
		{"deletion", request(t, admissionv1.Delete, podKind, testNS, nil, podObject(testNS, containers(bad))), true},
		{"unknown kind", request(t, admissionv1.Create, metav1.GroupVersionKind{Version: "v1", Kind: "Service"}, testNS, podObject(testNS, containers(bad)), nil), true},
	}
	ephemeral := request(t, admissionv1.Update, podKind, testNS, withEphemeral(bad), podObject(testNS, containers(good)))
	ephemeral.SubResource = "ephemeralcontainers"
	tests = append(tests, struct {
		desc        string
		req         admission.Request
		wantAllowed bool
	}{"new ephemeral container with a bad image", ephemeral, false})
	dryRun := request(t, admissionv1.Create, podKind, testNS, podObject(testNS, containers(bad)), nil)
	dryRun.DryRun = new(true)
	tests = append(tests, struct {
		desc        string
		req         admission.Request
		wantAllowed bool
	}{"dry run gets the same verdict", dryRun, false})

	v := w.validator(basePolicy())
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			resp := v.Handle(t.Context(), tc.req)
			if resp.Allowed != tc.wantAllowed {
				t.Fatalf("allowed = %v, want %v (%v)", resp.Allowed, tc.wantAllowed, resp.Result)
			}
		})
	}
}

func TestMalformedObjectIsABadRequest(t *testing.T) {
	w := newWorld(t)
	v := w.validator(basePolicy())
	req := request(t, admissionv1.Create, podKind, testNS, nil, nil)
	req.Object.Raw = []byte(`{"spec": {"containers": "not a list"}}`)
	resp := v.Handle(t.Context(), req)
	if resp.Allowed || resp.Result.Code != http.StatusBadRequest {
		t.Fatalf("got allowed=%v code=%d, want a 400 error", resp.Allowed, resp.Result.Code)
	}
}

// TestBurstMakesOneManifestRequest: 200 concurrent admissions of one new image cost the
// registry one manifest request: a HEAD with the platform check off (Docker Hub does not
// count HEADs), a GET with it on, whose body leaves only the config blob to fetch.
func TestBurstMakesOneManifestRequest(t *testing.T) {
	for _, tc := range []struct {
		desc                          string
		platform                      policy.Mode
		wantHeads, wantGets, wantBlob int
	}{
		{"platform check on", policy.Enforce, 0, 1, 1},
		{"platform check off", policy.Off, 1, 0, 0},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			w := newWorld(t)
			pol := basePolicy()
			pol.Checks[policy.CheckPlatform] = tc.platform
			v := w.validator(pol)
			w.public.PushImage(t, "fresh", "v1", "linux", "amd64")
			w.public.Reset()
			req := request(t, admissionv1.Create, podKind, testNS, podObject(testNS, containers(w.public.Ref("fresh", ":v1"))), nil)
			var wg sync.WaitGroup
			denied := make(chan string, 200)
			for range 200 {
				wg.Go(func() {
					if resp := v.Handle(t.Context(), req); !resp.Allowed {
						denied <- resp.Result.Message
					}
				})
			}
			wg.Wait()
			close(denied)
			for msg := range denied {
				t.Fatalf("a burst admission was denied: %s", msg)
			}
			got := [3]int{
				w.public.Requests(http.MethodHead, "manifests"),
				w.public.Requests(http.MethodGet, "manifests"),
				w.public.Requests(http.MethodGet, "blobs"),
			}
			if want := [3]int{tc.wantHeads, tc.wantGets, tc.wantBlob}; got != want {
				t.Errorf("manifest HEADs, manifest GETs, blob GETs = %v, want %v", got, want)
			}
		})
	}
}

func TestManyFindingsStayWithinKubectlLimits(t *testing.T) {
	w := newWorld(t)
	pol := basePolicy()
	pol.Checks[policy.CheckExistence] = policy.Warn
	v := w.validator(pol)
	var images []string
	for i := range 300 {
		images = append(images, w.public.Ref(fmt.Sprintf("missing%d", i), ":v1"))
	}
	resp := v.Handle(t.Context(), request(t, admissionv1.Create, podKind, testNS, podObject(testNS, containers(images...)), nil))
	if !resp.Allowed {
		t.Fatalf("denied in warn mode: %s", resp.Result.Message)
	}
	total := 0
	for _, wn := range resp.Warnings {
		total += len([]rune(wn))
	}
	if len(resp.Warnings) > maxWarnings || total > 4096 {
		t.Errorf("%d warnings totalling %d runes; the API server would truncate them", len(resp.Warnings), total)
	}
	if last := resp.Warnings[len(resp.Warnings)-1]; !strings.Contains(last, "more warnings not shown") {
		t.Errorf("no summary warning: %q", last)
	}
}

// A pull secret created together with the workload (helm install, an Argo CD sync) may not
// be in the informer yet: it is read again from the API server, and one still missing only
// warns on a workload, whose pods are created later, unless the policy says enforce.
func TestSecretCreatedWithTheWorkload(t *testing.T) {
	w := newWorld(t)
	image := w.private.Ref("app", ":v1")
	withSecret := func(name string) corev1.PodSpec {
		s := containers(image)
		s.ImagePullSecrets = []corev1.LocalObjectReference{{Name: name}}
		return s
	}
	deployment := func(spec corev1.PodSpec) *appsv1.Deployment {
		return &appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "web"},
			Spec:       appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: spec}},
		}
	}
	deployKind := metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	// The API server has the secret "fresh"; the cache (w.reader) does not.
	api := fake.NewClientBuilder().WithObjects(testregistry.PullSecret(testNS, "fresh", w.private.Host, "puller", "hunter2")).Build()
	enforce := basePolicy()
	enforce.OnMissingSecretInTemplate = policy.Enforce

	tests := []struct {
		desc        string
		req         admission.Request
		pol         *policy.Policy
		api         client.Reader
		wantAllowed bool
		wantWarning string
	}{
		{desc: "a Pod whose secret only the API server has yet is admitted",
			req: request(t, admissionv1.Create, podKind, testNS, podObject(testNS, withSecret("fresh")), nil), api: api, wantAllowed: true},
		{desc: "a Pod whose secret exists nowhere is denied",
			req: request(t, admissionv1.Create, podKind, testNS, podObject(testNS, withSecret("later")), nil), api: api},
		{desc: "a Deployment whose secret exists nowhere yet is admitted with a warning",
			req: request(t, admissionv1.Create, deployKind, testNS, deployment(withSecret("later")), nil), api: api,
			wantAllowed: true, wantWarning: `pull secret "later" does not exist`},
		{desc: "a Deployment whose secret exists nowhere is denied under onMissingSecretInTemplate: enforce",
			req: request(t, admissionv1.Create, deployKind, testNS, deployment(withSecret("later")), nil), api: api, pol: enforce},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			pol := tc.pol
			if pol == nil {
				pol = basePolicy()
			}
			v := w.validator(pol)
			v.APIReader = tc.api
			resp := v.Handle(t.Context(), tc.req)
			if resp.Allowed != tc.wantAllowed {
				t.Fatalf("allowed = %v, want %v (%v)", resp.Allowed, tc.wantAllowed, resp.Result)
			}
			warnings := strings.Join(resp.Warnings, "\n")
			if tc.wantWarning != "" && !strings.Contains(warnings, tc.wantWarning) {
				t.Errorf("warnings %q do not contain %q", warnings, tc.wantWarning)
			}
			if tc.wantAllowed && tc.wantWarning == "" && len(resp.Warnings) > 0 {
				t.Errorf("unexpected warnings: %q", warnings)
			}
		})
	}
}

// TestNoLookupsWhenNothingCanBeReported: where every finding a look-up could give would be
// dropped — a namespace labelled off, or a policy with existence, pullSecrets and platform
// off — no registry is asked, whatever the images, and what needs no registry is still
// reported.
func TestNoLookupsWhenNothingCanBeReported(t *testing.T) {
	w := newWorld(t)
	bad := []string{w.public.Ref("nope", ":v1"), w.public.Ref("app", ":v9"), w.private.Ref("app", ":v1"), w.limited.Ref("app", ":v1")}
	withSecret := func(s corev1.PodSpec) corev1.PodSpec {
		s.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "absent"}}
		return s
	}
	registryChecksOff := func(p *policy.Policy) {
		p.Checks[policy.CheckExistence] = policy.Off
		p.Checks[policy.CheckPullSecrets] = policy.Off
		p.Checks[policy.CheckPlatform] = policy.Off
	}
	deployKind := metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	deployment := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "legacy", Name: "web"},
		Spec:       appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: containers(bad...)}},
	}
	tests := []struct {
		desc         string
		pol          func(*policy.Policy)
		req          admission.Request
		wantWarnings []string
		wantLookups  bool
	}{{
		desc: "a pod in a namespace labelled off",
		req:  request(t, admissionv1.Create, podKind, "legacy", podObject("legacy", withSecret(containers(bad...))), nil),
	}, {
		desc: "a Deployment in a namespace labelled off",
		req:  request(t, admissionv1.Create, deployKind, "legacy", deployment, nil),
	}, {
		desc: "existence, pullSecrets and platform off in the policy",
		pol:  registryChecksOff,
		req:  request(t, admissionv1.Create, podKind, testNS, podObject(testNS, containers(bad...)), nil),
	}, {
		desc:         "with those off an unpinned tag still warns, without a look-up",
		pol:          registryChecksOff,
		req:          request(t, admissionv1.Create, podKind, testNS, podObject(testNS, containers(w.public.Ref("nope", ":latest"))), nil),
		wantWarnings: []string{"[UnpinnedTag]"},
	}, {
		desc:         "existence alone on looks up",
		pol:          func(p *policy.Policy) { registryChecksOff(p); p.Checks[policy.CheckExistence] = policy.Warn },
		req:          request(t, admissionv1.Create, podKind, testNS, podObject(testNS, containers(w.public.Ref("nope", ":v1"))), nil),
		wantWarnings: []string{"[ImageNotFound]"},
		wantLookups:  true,
	}}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			pol := basePolicy()
			if tc.pol != nil {
				tc.pol(pol)
			}
			v := w.validator(pol)
			for _, r := range []*testregistry.Registry{w.public, w.private, w.limited} {
				r.Reset()
			}
			resp := v.Handle(t.Context(), tc.req)
			if !resp.Allowed {
				t.Fatalf("denied: %s", resp.Result.Message)
			}
			if len(resp.Warnings) != len(tc.wantWarnings) {
				t.Errorf("warnings %q, want %d containing %q", resp.Warnings, len(tc.wantWarnings), tc.wantWarnings)
			}
			for i, want := range tc.wantWarnings {
				if i < len(resp.Warnings) && !strings.Contains(resp.Warnings[i], want) {
					t.Errorf("warning %q lacks %q", resp.Warnings[i], want)
				}
			}
			n := w.public.TotalRequests() + w.private.TotalRequests() + w.limited.TotalRequests()
			if tc.wantLookups != (n > 0) {
				t.Errorf("%d registry requests; want look-ups: %v", n, tc.wantLookups)
			}
		})
	}
}
