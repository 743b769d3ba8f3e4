package validate_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/pullgate/pullgate/internal/testnodes"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/pullsecrets"
	"github.com/pullgate/pullgate/pkg/registrycache"
	"github.com/pullgate/pullgate/pkg/validate"
)

const ns = "team-a"

// fixture is the world one table of checks runs against: a public and a private registry
// with real images, a few failing registries, and a namespace's secrets.
type fixture struct {
	public, private, limited, broken, dead *testregistry.Registry
	appDigest, multiDigest                 string
	reader                                 client.Reader
}

func dockerConfigSecret(name, host, user, pass string) *corev1.Secret {
	return testregistry.PullSecret(ns, name, host, user, pass)
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{
		public:  testregistry.New(t),
		private: testregistry.New(t, testregistry.WithBasicAuth("puller", "s3cret")),
		limited: testregistry.New(t),
		broken:  testregistry.New(t),
		dead:    testregistry.New(t),
	}
	f.appDigest = f.public.PushImage(t, "team/app", "v1.0.0", "linux", "amd64").String()
	f.public.PushImage(t, "team/app", "v1.1.0", "linux", "amd64")
	f.public.PushImage(t, "team/app", "v2.0.0", "linux", "amd64")
	f.public.PushImage(t, "team/app", "latest", "linux", "amd64")
	f.multiDigest = f.public.PushIndex(t, "team/multi", "v1", "linux/amd64", "linux/arm64").String()
	f.public.PushImage(t, "team/armonly", "v1", "linux", "arm64")
	f.private.PushImage(t, "secret/app", "v1", "linux", "amd64")

	f.limited.SetFault(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}`)
	})
	f.broken.SetFault(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	f.dead.Close()

	opaque := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "opaque"},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{"token": []byte("x")},
	}
	garbled := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "garbled"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte("{not json")},
	}
	f.reader = fake.NewClientBuilder().WithObjects(
		dockerConfigSecret("good", f.private.Host, "puller", "s3cret"),
		dockerConfigSecret("wrong", f.private.Host, "puller", "guess"),
		dockerConfigSecret("elsewhere", "other.example.com", "puller", "s3cret"),
		opaque, garbled,
		&corev1.ServiceAccount{
			ObjectMeta:       metav1.ObjectMeta{Namespace: ns, Name: "builder"},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "good"}},
		},
	).Build()
	return f
}

func testPolicy() *policy.Policy {
	p := policy.Default()
	p.Registries.AllowLoopback = true
	p.LookupTimeout = metav1.Duration{Duration: 2 * time.Second}
	return p
}

func pod(images ...string) corev1.PodSpec {
	var spec corev1.PodSpec
	for i, img := range images {
		spec.Containers = append(spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: img})
	}
	return spec
}

// brief is the part of a finding a table compares; messages are checked for key words.
type brief struct {
	Reason    validate.Reason
	Container string
	Severity  validate.Severity
}

func TestCheck(t *testing.T) {
	f := newFixture(t)
	pub, priv := f.public, f.private
	withSecrets := func(spec corev1.PodSpec, names ...string) corev1.PodSpec {
		for _, n := range names {
			spec.ImagePullSecrets = append(spec.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
		}
		return spec
	}
	warnPolicy := testPolicy()
	warnPolicy.Checks[policy.CheckExistence] = policy.Warn
	offPolicy := testPolicy()
	offPolicy.Checks[policy.CheckExistence] = policy.Off
	enforceRegistryErrors := testPolicy()
	enforceRegistryErrors.OnRegistryError = policy.Enforce
	allowList := testPolicy()
	allowList.Registries.Allowed = []string{"registry.example.com"}

	tests := []struct {
		desc     string
		spec     corev1.PodSpec
		pol      *policy.Policy
		nsLabels map[string]string
		nodes    []validate.Platform
		want     []brief
		// wantText are words the first finding's message and fix must contain.
		wantText []string
	}{{
		desc: "pinned tag on every node platform is admitted",
		spec: pod(pub.Ref("team/multi", ":v1")),
	}, {
		desc:  "digest that exists is admitted",
		spec:  pod(pub.Ref("team/app", "@"+f.appDigest)),
		nodes: []validate.Platform{{OS: "linux", Architecture: "amd64"}},
	}, {
		desc:     "unparseable reference",
		spec:     pod("Not A Valid/Image:!!"),
		want:     []brief{{validate.InvalidReference, "c0", validate.Deny}},
		wantText: []string{"not a valid reference"},
	}, {
		desc:     "repository that does not exist",
		spec:     pod(pub.Ref("team/nope", ":v1")),
		want:     []brief{{validate.ImageNotFound, "c0", validate.Deny}},
		wantText: []string{"team/nope does not exist", "typos"},
	}, {
		desc:     "tag that does not exist suggests the closest tags",
		spec:     pod(pub.Ref("team/app", ":v1.0.1")),
		want:     []brief{{validate.TagNotFound, "c0", validate.Deny}},
		wantText: []string{`tag "v1.0.1" does not exist`, "v1.0.0", "v1.1.0"},
	}, {
		desc:     "tag close to no existing one suggests the newest versions",
		spec:     pod(pub.Ref("team/app", ":v999")),
		want:     []brief{{validate.TagNotFound, "c0", validate.Deny}},
		wantText: []string{`tag "v999" does not exist`, "(newest: v2.0.0, v1.1.0, v1.0.0)"},
	}, {
		desc:     "digest that does not exist",
		spec:     pod(pub.Ref("team/app", "@sha256:"+strings.Repeat("0", 64))),
		want:     []brief{{validate.DigestNotFound, "c0", validate.Deny}},
		wantText: []string{"sha256:000000000000", "does not exist"},
	}, {
		desc: "image built only for arm64, pod pinned to amd64 nodes",
		spec: func() corev1.PodSpec {
			s := pod(pub.Ref("team/armonly", ":v1"))
			s.NodeSelector = map[string]string{corev1.LabelArchStable: "amd64"}
			return s
		}(),
		want:     []brief{{validate.PlatformMismatch, "c0", validate.Deny}},
		wantText: []string{"linux/arm64", "linux/amd64"},
	}, {
		desc: "image for arm64 with required affinity to arm64 is admitted",
		spec: func() corev1.PodSpec {
			s := pod(pub.Ref("team/armonly", ":v1"))
			s.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
					{Key: corev1.LabelArchStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"arm64"}},
					{Key: "pool", Operator: corev1.NodeSelectorOpIn, Values: []string{"batch"}},
				}}},
			}}}
			return s
		}(),
	}, {
		desc:     "image that runs on some of the nodes warns",
		spec:     pod(pub.Ref("team/app", ":v1.0.0")),
		want:     []brief{{validate.PlatformMismatch, "c0", validate.Warn}},
		wantText: []string{"lacks linux/arm64", "nodeSelector"},
	}, {
		desc:  "no nodes known skips the platform check",
		spec:  pod(pub.Ref("team/armonly", ":v1")),
		nodes: []validate.Platform{},
	}, {
		desc:     "latest tag warns",
		spec:     pod(pub.Ref("team/app", ":latest")),
		nodes:    []validate.Platform{{OS: "linux", Architecture: "amd64"}},
		want:     []brief{{validate.UnpinnedTag, "c0", validate.Warn}},
		wantText: []string{":latest", "pin"},
	}, {
		desc:  "private image with the right pull secret is admitted",
		spec:  withSecrets(pod(priv.Ref("secret/app", ":v1")), "good"),
		nodes: []validate.Platform{{OS: "linux", Architecture: "amd64"}},
	}, {
		desc: "private image with the ServiceAccount's pull secret is admitted",
		spec: func() corev1.PodSpec {
			s := pod(priv.Ref("secret/app", ":v1"))
			s.ServiceAccountName = "builder"
			return s
		}(),
		nodes: []validate.Platform{{OS: "linux", Architecture: "amd64"}},
	}, {
		desc:     "private image without pull secrets",
		spec:     pod(priv.Ref("secret/app", ":v1")),
		want:     []brief{{validate.NoCredentials, "c0", validate.Deny}},
		wantText: []string{"needs credentials", "kubectl create secret docker-registry"},
	}, {
		desc:     "private image with a pull secret for another registry",
		spec:     withSecrets(pod(priv.Ref("secret/app", ":v1")), "elsewhere"),
		want:     []brief{{validate.NoCredentials, "c0", validate.Deny}},
		wantText: []string{"no pull secret (elsewhere) has an entry"},
	}, {
		desc:     "private image whose pull secret does not exist",
		spec:     withSecrets(pod(priv.Ref("secret/app", ":v1")), "missing"),
		want:     []brief{{validate.PullSecretMissing, "c0", validate.Deny}},
		wantText: []string{`"missing" does not exist`},
	}, {
		desc:     "private image whose pull secret has the wrong type",
		spec:     withSecrets(pod(priv.Ref("secret/app", ":v1")), "opaque"),
		want:     []brief{{validate.PullSecretInvalid, "c0", validate.Deny}},
		wantText: []string{`"kubernetes.io/dockerconfigjson"`},
	}, {
		desc: "private image whose pull secret is unparseable",
		spec: withSecrets(pod(priv.Ref("secret/app", ":v1")), "garbled"),
		want: []brief{{validate.PullSecretInvalid, "c0", validate.Deny}},
	}, {
		desc:     "private image whose credentials are wrong",
		spec:     withSecrets(pod(priv.Ref("secret/app", ":v1")), "wrong"),
		want:     []brief{{validate.CredentialsRejected, "c0", validate.Deny}},
		wantText: []string{`rejected the credentials in pull secret "wrong"`},
	}, {
		desc: "a missing secret the pull does not need only warns",
		spec: withSecrets(pod(pub.Ref("team/multi", ":v1")), "missing"),
		want: []brief{{validate.PullSecretMissing, "", validate.Warn}},
	}, {
		desc:     "rate limited registry warns by default",
		spec:     pod(f.limited.Ref("team/app", ":v1")),
		want:     []brief{{validate.RegistryRateLimited, "c0", validate.Warn}},
		wantText: []string{"429"},
	}, {
		desc: "rate limited registry denies when onRegistryError is enforce",
		spec: pod(f.limited.Ref("team/app", ":v1")),
		pol:  enforceRegistryErrors,
		want: []brief{{validate.RegistryRateLimited, "c0", validate.Deny}},
	}, {
		desc: "registry answering 500",
		spec: pod(f.broken.Ref("team/app", ":v1")),
		want: []brief{{validate.RegistryError, "c0", validate.Warn}},
	}, {
		desc:     "registry that refuses connections",
		spec:     pod(f.dead.Ref("team/app", ":v1")),
		want:     []brief{{validate.RegistryUnreachable, "c0", validate.Warn}},
		wantText: []string{"could not be reached"},
	}, {
		desc:     "registry outside the allow list",
		spec:     pod(pub.Ref("team/app", ":v1.0.0")),
		pol:      allowList,
		want:     []brief{{validate.RegistryNotAllowed, "c0", validate.Deny}},
		wantText: []string{"not allowed"},
	}, {
		desc: "existence in warn mode warns",
		spec: pod(pub.Ref("team/nope", ":v1")),
		pol:  warnPolicy,
		want: []brief{{validate.ImageNotFound, "c0", validate.Warn}},
	}, {
		desc: "existence off drops the finding",
		spec: pod(pub.Ref("team/nope", ":v1")),
		pol:  offPolicy,
	}, {
		desc:     "namespace label turns every check to warn",
		spec:     pod(pub.Ref("team/nope", ":v1")),
		nsLabels: map[string]string{"pullgate.io/mode": "warn"},
		want:     []brief{{validate.ImageNotFound, "c0", validate.Warn}},
	}, {
		desc: "imagePullPolicy Never skips the registry",
		spec: func() corev1.PodSpec {
			s := pod(pub.Ref("team/nope", ":v1"))
			s.Containers[0].ImagePullPolicy = corev1.PullNever
			return s
		}(),
	}, {
		desc: "init and ephemeral containers are checked too",
		spec: func() corev1.PodSpec {
			s := pod(pub.Ref("team/multi", ":v1"))
			s.InitContainers = []corev1.Container{{Name: "init", Image: pub.Ref("team/nope", ":v1")}}
			s.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: "debug", Image: pub.Ref("team/app", ":v9"),
			}}}
			return s
		}(),
		want: []brief{
			{validate.ImageNotFound, "init", validate.Deny},
			{validate.TagNotFound, "debug", validate.Deny},
		},
	}, {
		desc: "containers sharing a bad image each get a finding",
		spec: pod(pub.Ref("team/nope", ":v1"), pub.Ref("team/nope", ":v1")),
		want: []brief{
			{validate.ImageNotFound, "c0", validate.Deny},
			{validate.ImageNotFound, "c1", validate.Deny},
		},
	}}

	allNodes := []validate.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			pol := tc.pol
			if pol == nil {
				pol = testPolicy()
			}
			nodes := tc.nodes
			if nodes == nil {
				nodes = allNodes
			}
			snapshot := testnodes.Platforms(nodes...)
			// A fresh cache per case: no case may pass on another's cached answer.
			checker := &validate.Checker{
				Registry: registrycache.New(
					registrycache.WithDialPolicy(registrycache.DialPolicy{AllowLoopback: true}),
					registrycache.WithBreaker(0, 0),
				),
				Nodes: func() *validate.Nodes { return snapshot },
			}
			spec := tc.spec
			kr, err := pullsecrets.ForPod(t.Context(), f.reader, ns, &spec)
			if err != nil {
				t.Fatalf("ForPod: %v", err)
			}
			got := checker.Check(t.Context(), pol, validate.Pod{
				Namespace: ns, NamespaceLabels: tc.nsLabels, Spec: &spec, Keyring: kr,
			})
			var briefs []brief
			for _, g := range got {
				briefs = append(briefs, brief{g.Reason, g.Container, g.Severity})
			}
			if diff := cmp.Diff(tc.want, briefs, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("findings (-want +got):\n%s\nall: %+v", diff, got)
			}
			for _, g := range got {
				if g.Message == "" || g.Fix == "" {
					t.Errorf("finding %s has no message or fix: %+v", g.Reason, g)
				}
				if strings.Contains(g.Message+g.Fix, "s3cret") || strings.Contains(g.Message+g.Fix, "guess") {
					t.Errorf("finding leaks a credential: %+v", g)
				}
			}
			if len(tc.wantText) > 0 {
				text := got[0].Message + " " + got[0].Fix
				for _, w := range tc.wantText {
					if !strings.Contains(text, w) {
						t.Errorf("finding text %q does not contain %q", text, w)
					}
				}
			}
		})
	}
}

// credentialGate makes a registry answer as one that knows the user "puller" (password
// "s3cret"), answers the user "other" with fault, and refuses anyone else: a registry that
// hides repositories from accounts without access (404), or fails for some (5xx).
func credentialGate(fault func(w http.ResponseWriter)) func(next http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			switch u, p, ok := req.BasicAuth(); {
			case ok && u == "puller" && p == "s3cret":
				next.ServeHTTP(w, req)
			case ok && u == "other":
				fault(w)
			default:
				w.Header().Set("WWW-Authenticate", `Basic realm="gate"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			}
		})
	}
}

// TestCheckAsTheKubeletsKeyring covers what the kubelet's keyring and pull do with a pod's
// secrets (issue 12, items 2-5 and 17): every matching entry tried, most specific first, on
// any error; a secret that does not parse fails every pull; one bad entry is skipped, not the
// secret; an identity token is not a credential; a secret missing for a workload's template
// warns.
func TestCheckAsTheKubeletsKeyring(t *testing.T) {
	f := newFixture(t)
	priv := f.private
	hiding := testregistry.New(t)
	hiding.PushImage(t, "secret/app", "v1", "linux", "amd64")
	hiding.SetMiddleware(credentialGate(func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}`)
	}))
	flaky := testregistry.New(t)
	flaky.PushImage(t, "secret/app", "v1", "linux", "amd64")
	flaky.SetMiddleware(credentialGate(func(w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) }))
	throttled := testregistry.New(t)
	throttled.PushImage(t, "secret/app", "v1", "linux", "amd64")
	throttled.SetMiddleware(credentialGate(func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}`)
	}))

	config := func(name, cfg string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(cfg)}}
	}
	entry := func(user, pass string) string {
		return fmt.Sprintf(`{"username":%q,"password":%q}`, user, pass)
	}
	reader := fake.NewClientBuilder().WithObjects(
		dockerConfigSecret("good", priv.Host, "puller", "s3cret"),
		dockerConfigSecret("wrong", priv.Host, "puller", "guess"),
		config("layered", fmt.Sprintf(`{"auths":{%q:%s,%q:%s}}`,
			priv.Host+"/secret", entry("puller", "guess"), priv.Host, entry("puller", "s3cret"))),
		config("partial", fmt.Sprintf(`{"auths":{%q:%s,%q:%s}}`,
			priv.Host+":port", entry("x", "y"), priv.Host, entry("puller", "s3cret"))),
		config("token", fmt.Sprintf(`{"auths":{%q:{"identitytoken":"s3cret"}}}`, priv.Host)),
		config("garbled", `{"auths":{"x.example.com":{"auth":"%%%"}}}`),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mistyped"}, Type: corev1.SecretTypeDockercfg,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"other.example.com":{"username":"u","password":"p"}}}`)}},
		dockerConfigSecret("other-hiding", hiding.Host, "other", "x"),
		dockerConfigSecret("good-hiding", hiding.Host, "puller", "s3cret"),
		dockerConfigSecret("wrong-hiding", hiding.Host, "puller", "guess"),
		dockerConfigSecret("stale-hiding", hiding.Host, "puller", "guess-again"),
		dockerConfigSecret("other-flaky", flaky.Host, "other", "x"),
		dockerConfigSecret("good-flaky", flaky.Host, "puller", "s3cret"),
		dockerConfigSecret("wrong-flaky", flaky.Host, "puller", "guess"),
		dockerConfigSecret("other-throttled", throttled.Host, "other", "x"),
		dockerConfigSecret("wrong-throttled", throttled.Host, "puller", "guess"),
	).Build()
	withSecrets := func(spec corev1.PodSpec, names ...string) corev1.PodSpec {
		for _, n := range names {
			spec.ImagePullSecrets = append(spec.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
		}
		return spec
	}
	enforceMissing := testPolicy()
	enforceMissing.OnMissingSecretInTemplate = policy.Enforce

	tests := []struct {
		desc     string
		spec     corev1.PodSpec
		template bool
		pol      *policy.Policy
		want     []brief
		wantText []string
	}{{
		desc: "item 2: the second matching entry of a secret is tried when the first is refused",
		spec: withSecrets(pod(priv.Ref("secret/app", ":v1")), "layered"),
	}, {
		desc: "item 3: a 404 for one credential does not stop the next",
		spec: withSecrets(pod(hiding.Ref("secret/app", ":v1")), "other-hiding", "good-hiding"),
	}, {
		desc: "item 3: a 503 for one credential does not stop the next",
		spec: withSecrets(pod(flaky.Ref("secret/app", ":v1")), "other-flaky", "good-flaky"),
	}, {
		desc:     "item 3: a 503 for one credential and a refusal for the other is not a verdict",
		spec:     withSecrets(pod(flaky.Ref("secret/app", ":v1")), "wrong-flaky", "other-flaky"),
		want:     []brief{{validate.RegistryError, "c0", validate.Warn}},
		wantText: []string{"503"},
	}, {
		desc: "item 3: a 429 for one credential and a refusal for the other is not a verdict",
		spec: withSecrets(pod(throttled.Ref("secret/app", ":v1")), "other-throttled", "wrong-throttled"),
		want: []brief{{validate.RegistryRateLimited, "c0", validate.Warn}},
	}, {
		desc:     "item 3: a refusal and a 404 are both definite: not found",
		spec:     withSecrets(pod(hiding.Ref("secret/app", ":v1")), "wrong-hiding", "other-hiding"),
		want:     []brief{{validate.ImageNotFound, "c0", validate.Deny}},
		wantText: []string{"secret/app does not exist"},
	}, {
		desc:     "every credential refused names every secret",
		spec:     withSecrets(pod(hiding.Ref("secret/app", ":v1")), "wrong-hiding", "good", "stale-hiding"),
		want:     []brief{{validate.CredentialsRejected, "c0", validate.Deny}},
		wantText: []string{`rejected the credentials in pull secrets "wrong-hiding", "stale-hiding"`},
	}, {
		desc:     "item 4: a secret that does not parse fails every pull, even a public image's",
		spec:     withSecrets(pod(f.public.Ref("team/multi", ":v1"), priv.Ref("secret/app", ":v1")), "good", "garbled"),
		want:     []brief{{validate.PullSecretInvalid, "c0", validate.Deny}, {validate.PullSecretInvalid, "c1", validate.Deny}},
		wantText: []string{`secret "garbled"`, "pulls none of the pod's images", "base64", `secret "garbled"`},
	}, {
		desc: "item 4: an entry that is not a URL is skipped, the secret's other entry is used",
		spec: withSecrets(pod(priv.Ref("secret/app", ":v1")), "partial"),
		want: []brief{{validate.PullSecretInvalid, "", validate.Warn}},
	}, {
		desc:     "item 4: an entry with only an identity token is an anonymous pull",
		spec:     withSecrets(pod(priv.Ref("secret/app", ":v1")), "token"),
		want:     []brief{{validate.PullSecretInvalid, "c0", validate.Deny}},
		wantText: []string{`pull secret "token" has no username`, "identity tokens"},
	}, {
		desc:     "item 5: a secret missing for a workload's template warns",
		spec:     withSecrets(pod(priv.Ref("secret/app", ":v1")), "later"),
		template: true,
		want:     []brief{{validate.PullSecretMissing, "c0", validate.Warn}},
		wantText: []string{`pull secret "later" does not exist`},
	}, {
		desc:     "item 5: a secret missing for a workload's template denies under onMissingSecretInTemplate: enforce",
		spec:     withSecrets(pod(priv.Ref("secret/app", ":v1")), "later"),
		template: true,
		pol:      enforceMissing,
		want:     []brief{{validate.PullSecretMissing, "c0", validate.Deny}},
	}, {
		desc: "item 5: a secret missing for a Pod denies",
		spec: withSecrets(pod(priv.Ref("secret/app", ":v1")), "later"),
		want: []brief{{validate.PullSecretMissing, "c0", validate.Deny}},
	}, {
		desc: "item 5: a ServiceAccount missing for a workload's template warns",
		spec: func() corev1.PodSpec {
			s := pod(priv.Ref("secret/app", ":v1"))
			s.ServiceAccountName = "deployer"
			return s
		}(),
		template: true,
		want:     []brief{{validate.PullSecretMissing, "c0", validate.Warn}},
		wantText: []string{`service account "deployer"`},
	}, {
		desc: "item 5: a ServiceAccount missing for a Pod is no finding of its own",
		spec: func() corev1.PodSpec {
			s := pod(priv.Ref("secret/app", ":v1"))
			s.ServiceAccountName = "deployer"
			return s
		}(),
		want: []brief{{validate.NoCredentials, "c0", validate.Deny}},
	}, {
		desc:     "item 17: a listed secret that parsed without an entry for the registry is not blamed",
		spec:     withSecrets(pod(priv.Ref("secret/app", ":v1")), "mistyped"),
		want:     []brief{{validate.NoCredentials, "c0", validate.Deny}, {validate.PullSecretInvalid, "", validate.Warn}},
		wantText: []string{"no pull secret (mistyped) has an entry"},
	}}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			pol := tc.pol
			if pol == nil {
				pol = testPolicy()
			}
			checker := &validate.Checker{Registry: registrycache.New(
				registrycache.WithDialPolicy(registrycache.DialPolicy{AllowLoopback: true}),
				registrycache.WithBreaker(0, 0),
			)}
			spec := tc.spec
			kr, err := pullsecrets.ForPod(t.Context(), reader, ns, &spec)
			if err != nil {
				t.Fatalf("ForPod: %v", err)
			}
			got := checker.Check(t.Context(), pol, validate.Pod{Namespace: ns, Spec: &spec, Keyring: kr, Template: tc.template})
			var briefs []brief
			for _, g := range got {
				briefs = append(briefs, brief{g.Reason, g.Container, g.Severity})
				if g.Message == "" || g.Fix == "" {
					t.Errorf("finding %s has no message or fix: %+v", g.Reason, g)
				}
				if strings.Contains(g.Message+g.Fix, "s3cret") || strings.Contains(g.Message+g.Fix, "guess") {
					t.Errorf("finding leaks a credential: %+v", g)
				}
			}
			if diff := cmp.Diff(tc.want, briefs, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("findings (-want +got):\n%s\nall: %+v", diff, got)
			}
			if len(tc.wantText) > 0 {
				text := got[0].Message + " " + got[0].Fix
				for _, w := range tc.wantText {
					if !strings.Contains(text, w) {
						t.Errorf("finding text %q does not contain %q", text, w)
					}
				}
			}
		})
	}
}

// TestCheckImageVolumes: the image of an image volume is checked like a container's, with
// the pod's pull secrets and the volume's pull policy, when a container mounts it; its
// findings name the volume, not a container.
func TestCheckImageVolumes(t *testing.T) {
	f := newFixture(t)
	pub, priv := f.public, f.private
	type target struct {
		Reason            validate.Reason
		Container, Volume string
	}
	volume := func(name, image string, policy corev1.PullPolicy) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: image, PullPolicy: policy}}}
	}
	mount := func(names ...string) []corev1.VolumeMount {
		var out []corev1.VolumeMount
		for _, n := range names {
			out = append(out, corev1.VolumeMount{Name: n, MountPath: "/" + n})
		}
		return out
	}
	good := pub.Ref("team/multi", ":v1")
	tests := []struct {
		desc string
		spec corev1.PodSpec
		want []target
	}{{
		desc: "a mounted image volume whose repository does not exist",
		spec: corev1.PodSpec{
			Volumes:    []corev1.Volume{volume("models", pub.Ref("team/nope", ":v1"), "")},
			Containers: []corev1.Container{{Name: "app", Image: good, VolumeMounts: mount("models")}},
		},
		want: []target{{validate.ImageNotFound, "", "models"}},
	}, {
		desc: "a volume and a container of the same bad image get a finding each",
		spec: corev1.PodSpec{
			Volumes:    []corev1.Volume{volume("models", pub.Ref("team/app", ":v9"), corev1.PullIfNotPresent)},
			Containers: []corev1.Container{{Name: "app", Image: pub.Ref("team/app", ":v9"), VolumeMounts: mount("models")}},
		},
		want: []target{{validate.TagNotFound, "app", ""}, {validate.TagNotFound, "", "models"}},
	}, {
		desc: "pull policy Never skips the registry",
		spec: corev1.PodSpec{
			Volumes:    []corev1.Volume{volume("models", pub.Ref("team/nope", ":v1"), corev1.PullNever)},
			Containers: []corev1.Container{{Name: "app", Image: good, VolumeMounts: mount("models")}},
		},
	}, {
		desc: "a volume no container mounts is not checked",
		spec: corev1.PodSpec{
			Volumes:    []corev1.Volume{volume("models", pub.Ref("team/nope", ":v1"), "")},
			Containers: []corev1.Container{{Name: "app", Image: good}},
		},
	}, {
		desc: "an ephemeral container's mount counts",
		spec: corev1.PodSpec{
			Volumes: []corev1.Volume{volume("models", pub.Ref("team/nope", ":v1"), "")},
			EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name: "debug", Image: good, VolumeMounts: mount("models")}}},
		},
		want: []target{{validate.ImageNotFound, "", "models"}},
	}, {
		desc: "a private volume image with the pod's pull secret",
		spec: corev1.PodSpec{
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "good"}},
			Volumes:          []corev1.Volume{volume("models", priv.Ref("secret/app", ":v1"), "")},
			Containers:       []corev1.Container{{Name: "app", Image: good, VolumeMounts: mount("models")}},
		},
	}, {
		desc: "a private volume image without pull secrets",
		spec: corev1.PodSpec{
			Volumes:    []corev1.Volume{volume("models", priv.Ref("secret/app", ":v1"), "")},
			Containers: []corev1.Container{{Name: "app", Image: good, VolumeMounts: mount("models")}},
		},
		want: []target{{validate.NoCredentials, "", "models"}},
	}, {
		desc: "a volume image built for another platform than the nodes'",
		spec: corev1.PodSpec{
			Volumes:    []corev1.Volume{volume("models", pub.Ref("team/armonly", ":v1"), "")},
			Containers: []corev1.Container{{Name: "app", Image: good, VolumeMounts: mount("models")}},
		},
		want: []target{{validate.PlatformMismatch, "", "models"}},
	}, {
		desc: "an unpinned volume image",
		spec: corev1.PodSpec{
			Volumes:    []corev1.Volume{volume("models", pub.Ref("team/multi", ""), "")},
			Containers: []corev1.Container{{Name: "app", Image: good, VolumeMounts: mount("models")}},
		},
		want: []target{{validate.UnpinnedTag, "", "models"}, {validate.TagNotFound, "", "models"}},
	}}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			checker := &validate.Checker{
				Registry: registrycache.New(
					registrycache.WithDialPolicy(registrycache.DialPolicy{AllowLoopback: true}),
					registrycache.WithBreaker(0, 0),
				),
				Nodes: func() *validate.Nodes {
					return testnodes.Platforms(validate.Platform{OS: "linux", Architecture: "amd64"})
				},
			}
			spec := tc.spec
			kr, err := pullsecrets.ForPod(t.Context(), f.reader, ns, &spec)
			if err != nil {
				t.Fatalf("ForPod: %v", err)
			}
			var got []target
			for _, g := range checker.Check(t.Context(), testPolicy(), validate.Pod{Namespace: ns, Spec: &spec, Keyring: kr}) {
				got = append(got, target{g.Reason, g.Container, g.Volume})
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}
