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
