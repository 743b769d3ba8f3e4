package mutate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/pullgate/pullgate/internal/testnodes"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/pkg/lookup"
	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/registrycache"
	"github.com/pullgate/pullgate/pkg/validate"
)

var _ Registry = (*registrycache.Cache)(nil)

const testNS = "apps"

var (
	amd64 = validate.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = validate.Platform{OS: "linux", Architecture: "arm64"}
)

// fixture is the world one test case runs against: an origin and mirrors that are real
// registries, private ones among them, and a namespace's secrets and ServiceAccounts.
type fixture struct {
	origin, mirror, mirror2 *testregistry.Registry
	// private is an origin, privMirror a mirror, both wanting basic auth.
	private, privMirror *testregistry.Registry
	reader              client.Reader
	// clock is the registry cache's; tests move it past the cache's burst window.
	clock *fakeClock
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// offline is a Registry that reaches only the tests' registries (on 127.0.0.1): a lookup
// elsewhere (Docker Hub, for short names) fails at once as unreachable, as it would from a
// cluster without Internet access, instead of leaving the machine.
type offline struct{ Registry }

func (o offline) Resolve(ctx context.Context, ref name.Reference, auth authn.Authenticator) (lookup.Descriptor, error) {
	if host := ref.Context().RegistryStr(); !strings.HasPrefix(host, "127.0.0.1:") {
		return lookup.Descriptor{}, &lookup.Error{Kind: lookup.KindUnreachable, Host: host, Err: errors.New("tests do not leave the machine")}
	}
	return o.Registry.Resolve(ctx, ref, auth)
}

// mirrorOrigin makes pol mirror the origin registry to the mirror's "origin/" prefix.
func (f *fixture) mirrorOrigin(pol *policy.Policy) {
	pol.Mutations.Mirrors = []policy.MirrorRule{{Registry: f.origin.Host, Mirrors: []string{f.mirror.Host + "/origin"}}}
}

func dockerSecret(name, host, user, pass string) *corev1.Secret {
	return testregistry.PullSecret(testNS, name, host, user, pass)
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{
		origin:     testregistry.New(t),
		mirror:     testregistry.New(t),
		mirror2:    testregistry.New(t),
		private:    testregistry.New(t, testregistry.WithBasicAuth("puller", "hunter2")),
		privMirror: testregistry.New(t, testregistry.WithBasicAuth("mirror", "s3cret")),
		clock:      &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
	}
	sa := func(name string, secrets ...string) *corev1.ServiceAccount {
		s := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: name}}
		for _, n := range secrets {
			s.ImagePullSecrets = append(s.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
		}
		return s
	}
	f.reader = fake.NewClientBuilder().WithObjects(
		sa("default"),
		sa("robot", "othercred"),
		sa("builder", "regcred2"),
		dockerSecret("regcred", f.private.Host, "puller", "hunter2"),
		dockerSecret("regcred2", f.private.Host, "puller", "hunter2"),
		dockerSecret("mirrorcred", f.privMirror.Host, "mirror", "s3cret"),
		dockerSecret("othercred", "other.example.com", "x", "y"),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "opaque"}, Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{"token": []byte("x")}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "partial"}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: fmt.Appendf(nil,
				`{"auths":{"bad host":{"username":"x"},%q:{"username":"puller","password":"hunter2"}}}`, f.private.Host)}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "garbled"}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: fmt.Appendf(nil, `{"auths":{%q:{"auth":"%%%%%%"}}}`, f.private.Host)}},
	).Build()
	return f
}

// mutator returns a Mutator with a fresh cache; nodes nil means the nodes are not known.
func (f *fixture) mutator(nodes []validate.Platform) *Mutator {
	m := &Mutator{
		Registry: offline{registrycache.New(
			registrycache.WithDialPolicy(registrycache.DialPolicy{AllowLoopback: true}),
			registrycache.WithClock(f.clock.Now),
		)},
		Reader: f.reader,
	}
	if nodes != nil {
		snapshot := testnodes.Platforms(nodes...)
		m.Nodes = func() *validate.Nodes { return snapshot }
	}
	return m
}

func enabledPolicy() *policy.Policy {
	p := policy.Default()
	p.Registries.AllowLoopback = true
	p.Mutations.Enabled = true
	return p
}

// copyImage copies the image or index at src to dst, as a mirror's sync would; opts are
// used for reading src and writing dst.
func copyImage(t *testing.T, src, dst string, opts ...remote.Option) {
	t.Helper()
	srcRef, err := name.ParseReference(src)
	if err != nil {
		t.Fatal(err)
	}
	dstRef, err := name.ParseReference(dst)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(srcRef, opts...)
	if err != nil {
		t.Fatalf("reading %s: %v", src, err)
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err == nil {
			err = remote.WriteIndex(dstRef, idx, opts...)
		}
		if err != nil {
			t.Fatalf("copying index %s to %s: %v", src, dst, err)
		}
		return
	}
	img, err := desc.Image()
	if err == nil {
		err = remote.Write(dstRef, img, opts...)
	}
	if err != nil {
		t.Fatalf("copying %s to %s: %v", src, dst, err)
	}
}

func pod(spec corev1.PodSpec) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "web"}, Spec: spec}
}

func containers(images ...string) corev1.PodSpec {
	var s corev1.PodSpec
	for i, img := range images {
		s.Containers = append(s.Containers, corev1.Container{Name: "c" + string(rune('0'+i)), Image: img})
	}
	return s
}

func withSecrets(s corev1.PodSpec, names ...string) corev1.PodSpec {
	for _, n := range names {
		s.ImagePullSecrets = append(s.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
	}
	return s
}

// outcome is what a test compares: every container's image, the pull secrets and the
// recorded originals.
type podView struct {
	Images      map[string]string
	PullSecrets []string
	Originals   map[string]string
}

func viewOf(t *testing.T, p *corev1.Pod) podView {
	t.Helper()
	v := podView{Images: map[string]string{}}
	for _, c := range p.Spec.InitContainers {
		v.Images[c.Name] = c.Image
	}
	for _, c := range p.Spec.Containers {
		v.Images[c.Name] = c.Image
	}
	for _, c := range p.Spec.EphemeralContainers {
		v.Images[c.Name] = c.Image
	}
	for _, s := range p.Spec.ImagePullSecrets {
		v.PullSecrets = append(v.PullSecrets, s.Name)
	}
	if a, ok := p.Annotations[OriginalImagesAnnotation]; ok {
		if err := json.Unmarshal([]byte(a), &v.Originals); err != nil {
			t.Fatalf("annotation %s is not a JSON object of strings: %v", a, err)
		}
	}
	return v
}

// mutateTwice mutates a copy of in, checks that a second pass over the result changes
// nothing (reinvocationPolicy: IfNeeded), and returns the first pass's pod and result.
func mutateTwice(t *testing.T, m *Mutator, pol *policy.Policy, in *corev1.Pod) (*corev1.Pod, Result) {
	t.Helper()
	got := in.DeepCopy()
	res, err := m.Mutate(t.Context(), pol, testNS, got)
	if err != nil {
		t.Fatalf("Mutate: %v", err)
	}
	again := got.DeepCopy()
	res2, err := m.Mutate(t.Context(), pol, testNS, again)
	if err != nil {
		t.Fatalf("second Mutate: %v", err)
	}
	if len(res2.Changes) > 0 {
		t.Errorf("a second pass changed the pod again: %+v", res2.Changes)
	}
	if diff := cmp.Diff(got, again); diff != "" {
		t.Errorf("a second pass changed the pod (-first +second):\n%s", diff)
	}
	return got, res
}

// checkWarnings wants one warning per entry of want, each containing it.
func checkWarnings(t *testing.T, got []Warning, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("warnings = %+v, want %d containing %q", got, len(want), want)
	}
	for i, w := range want {
		if !strings.Contains(got[i].Message, w) {
			t.Errorf("warning %d = %q, want it to contain %q", i, got[i].Message, w)
		}
	}
}

func TestMirrorRewrite(t *testing.T) {
	type want struct {
		view     podView
		warnings []string
	}
	tests := map[string]struct {
		// setup pushes the images, returns the pod and what it should become.
		setup func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want)
		// nodes are the cluster's node platforms; nil means unknown.
		nodes []validate.Platform
	}{
		"mirror has the image: rewritten and the original recorded": {
			nodes: []validate.Platform{amd64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushImage(t, "app", "v1", "linux", "amd64")
				copyImage(t, f.origin.Ref("app", ":v1"), f.mirror.Ref("origin/app", ":v1"))
				f.mirrorOrigin(pol)
				orig := f.origin.Ref("app", ":v1")
				return pod(containers(orig)), want{view: podView{
					Images:    map[string]string{"c0": f.mirror.Ref("origin/app", ":v1")},
					Originals: map[string]string{"c0": orig},
				}}
			},
		},
		"first mirror lacks the image, the second has it": {
			nodes: []validate.Platform{amd64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushImage(t, "app", "v1", "linux", "amd64")
				copyImage(t, f.origin.Ref("app", ":v1"), f.mirror2.Ref("o/app", ":v1"))
				pol.Mutations.Mirrors = []policy.MirrorRule{{Registry: f.origin.Host,
					Mirrors: []string{f.mirror.Host + "/origin", f.mirror2.Host + "/o"}}}
				orig := f.origin.Ref("app", ":v1")
				return pod(containers(orig)), want{view: podView{
					Images:    map[string]string{"c0": f.mirror2.Ref("o/app", ":v1")},
					Originals: map[string]string{"c0": orig},
				}}
			},
		},
		"no mirror has the image: original kept with a warning": {
			nodes: []validate.Platform{amd64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushImage(t, "app", "v1", "linux", "amd64")
				f.mirrorOrigin(pol)
				orig := f.origin.Ref("app", ":v1")
				return pod(containers(orig)), want{
					view: podView{Images: map[string]string{"c0": orig}},
					// The look-up is a GET (the nodes' platforms are needed), whose body
					// tells a missing repository from a missing tag.
					warnings: []string{f.mirror.Host + "/origin: repository unknown"},
				}
			},
		},
		// A mirror that has not caught up with the origin would run other bytes than the pod
		// names: whatever its platforms, it is not used while the origin answers.
		"mirror's tag names another digest than the origin's: original kept": {
			nodes: []validate.Platform{amd64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushImage(t, "app", "v1", "linux", "amd64")
				f.mirror.PushImage(t, "origin/app", "v1", "linux", "amd64") // other bytes, same platform
				f.mirrorOrigin(pol)
				orig := f.origin.Ref("app", ":v1")
				return pod(containers(orig)), want{
					view:     podView{Images: map[string]string{"c0": orig}},
					warnings: []string{"stale, its tag names sha256:"},
				}
			},
		},
		"stale first mirror, the second has the origin's digest: the second": {
			nodes: []validate.Platform{amd64, arm64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushIndex(t, "multi", "v1", "linux/amd64", "linux/arm64")
				f.mirror.PushIndex(t, "origin/multi", "v1", "linux/amd64", "linux/arm64")
				copyImage(t, f.origin.Ref("multi", ":v1"), f.mirror2.Ref("o/multi", ":v1"))
				pol.Mutations.Mirrors = []policy.MirrorRule{{Registry: f.origin.Host,
					Mirrors: []string{f.mirror.Host + "/origin", f.mirror2.Host + "/o"}}}
				orig := f.origin.Ref("multi", ":v1")
				return pod(containers(orig)), want{view: podView{
					Images:    map[string]string{"c0": f.mirror2.Ref("o/multi", ":v1")},
					Originals: map[string]string{"c0": orig},
				}}
			},
		},
		"nodes unknown, stale multi-arch mirror: original kept": {
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushIndex(t, "multi", "v1", "linux/amd64", "linux/arm64", "linux/s390x")
				f.mirror.PushIndex(t, "origin/multi", "v1", "linux/amd64", "linux/arm64")
				f.mirrorOrigin(pol)
				orig := f.origin.Ref("multi", ":v1")
				return pod(containers(orig)), want{
					view:     podView{Images: map[string]string{"c0": orig}},
					warnings: []string{"stale"},
				}
			},
		},
		// When the origin gives no digest, the mirror must have what the pod needs.
		"origin rate limited, mirror has the nodes' platform: rewritten": {
			nodes: []validate.Platform{amd64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushImage(t, "app", "v1", "linux", "amd64")
				f.mirror.PushImage(t, "origin/app", "v1", "linux", "amd64")
				f.origin.SetFault(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTooManyRequests) })
				f.mirrorOrigin(pol)
				orig := f.origin.Ref("app", ":v1")
				return pod(containers(orig)), want{view: podView{
					Images:    map[string]string{"c0": f.mirror.Ref("origin/app", ":v1")},
					Originals: map[string]string{"c0": orig},
				}}
			},
		},
		"origin failing, mirror lacks a platform the nodes need: original kept": {
			nodes: []validate.Platform{amd64, arm64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushIndex(t, "multi", "v1", "linux/amd64", "linux/arm64")
				f.mirror.PushImage(t, "origin/multi", "v1", "linux", "amd64")
				f.origin.SetFault(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
				f.mirrorOrigin(pol)
				orig := f.origin.Ref("multi", ":v1")
				return pod(containers(orig)), want{
					view:     podView{Images: map[string]string{"c0": orig}},
					warnings: []string{"lacks linux/arm64"},
				}
			},
		},
		"origin failing, pod scheduled on arm64 only, mirror has amd64 only: original kept": {
			nodes: []validate.Platform{amd64, arm64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushIndex(t, "multi", "v1", "linux/amd64", "linux/arm64")
				f.mirror.PushImage(t, "origin/multi", "v1", "linux", "amd64")
				f.origin.SetFault(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
				f.mirrorOrigin(pol)
				orig := f.origin.Ref("multi", ":v1")
				spec := containers(orig)
				spec.NodeSelector = map[string]string{corev1.LabelArchStable: "arm64"}
				return pod(spec), want{
					view:     podView{Images: map[string]string{"c0": orig}},
					warnings: []string{"lacks linux/arm64"},
				}
			},
		},
		"origin failing, pod scheduled on amd64 only, mirror has amd64 only: rewritten": {
			nodes: []validate.Platform{amd64, arm64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushIndex(t, "multi", "v1", "linux/amd64", "linux/arm64")
				f.mirror.PushImage(t, "origin/multi", "v1", "linux", "amd64")
				f.origin.SetFault(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
				f.mirrorOrigin(pol)
				orig := f.origin.Ref("multi", ":v1")
				spec := containers(orig)
				spec.NodeSelector = map[string]string{corev1.LabelArchStable: "amd64"}
				return pod(spec), want{view: podView{
					Images:    map[string]string{"c0": f.mirror.Ref("origin/multi", ":v1")},
					Originals: map[string]string{"c0": orig},
				}}
			},
		},
		"origin failing, nodes unknown: the mirror that has the tag is used": {
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushIndex(t, "multi", "v1", "linux/amd64", "linux/arm64", "linux/s390x")
				f.mirror.PushIndex(t, "origin/multi", "v1", "linux/amd64", "linux/arm64")
				f.origin.SetFault(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
				f.mirrorOrigin(pol)
				orig := f.origin.Ref("multi", ":v1")
				return pod(containers(orig)), want{view: podView{
					Images:    map[string]string{"c0": f.mirror.Ref("origin/multi", ":v1")},
					Originals: map[string]string{"c0": orig},
				}}
			},
		},
		"origin lacks the tag, the mirror has it: rewritten": {
			nodes: []validate.Platform{amd64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.mirror.PushImage(t, "origin/app", "v1", "linux", "amd64")
				f.mirrorOrigin(pol)
				orig := f.origin.Ref("app", ":v1")
				return pod(containers(orig)), want{view: podView{
					Images:    map[string]string{"c0": f.mirror.Ref("origin/app", ":v1")},
					Originals: map[string]string{"c0": orig},
				}}
			},
		},
		"nodes unknown, multi-arch mirror is a copy of the original: rewritten": {
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushIndex(t, "multi", "v1", "linux/amd64", "linux/arm64")
				copyImage(t, f.origin.Ref("multi", ":v1"), f.mirror.Ref("origin/multi", ":v1"))
				f.mirrorOrigin(pol)
				orig := f.origin.Ref("multi", ":v1")
				return pod(containers(orig)), want{view: podView{
					Images:    map[string]string{"c0": f.mirror.Ref("origin/multi", ":v1")},
					Originals: map[string]string{"c0": orig},
				}}
			},
		},
		"digest reference stays a digest on the mirror": {
			nodes: []validate.Platform{amd64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				d := f.origin.PushIndex(t, "multi", "v1", "linux/amd64", "linux/arm64").String()
				copyImage(t, f.origin.Ref("multi", ":v1"), f.mirror.Ref("origin/multi", ":v1"))
				f.mirrorOrigin(pol)
				orig := f.origin.Ref("multi", "@"+d)
				return pod(containers(orig)), want{view: podView{
					Images:    map[string]string{"c0": f.mirror.Ref("origin/multi", "@"+d)},
					Originals: map[string]string{"c0": orig},
				}}
			},
		},
		"tag and digest reference keeps both on the mirror": {
			nodes: []validate.Platform{amd64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				d := f.origin.PushImage(t, "app", "v1", "linux", "amd64").String()
				copyImage(t, f.origin.Ref("app", ":v1"), f.mirror.Ref("origin/app", ":v1"))
				f.mirrorOrigin(pol)
				orig := f.origin.Ref("app", ":v1@"+d)
				return pod(containers(orig)), want{view: podView{
					Images:    map[string]string{"c0": f.mirror.Ref("origin/app", ":v1@"+d)},
					Originals: map[string]string{"c0": orig},
				}}
			},
		},
		"digest the mirror does not have: original kept": {
			nodes: []validate.Platform{amd64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				d := f.origin.PushImage(t, "app", "v1", "linux", "amd64").String()
				f.mirror.PushImage(t, "origin/app", "v1", "linux", "amd64") // same tag, other bytes
				f.mirrorOrigin(pol)
				orig := f.origin.Ref("app", "@"+d)
				return pod(containers(orig)), want{
					view:     podView{Images: map[string]string{"c0": orig}},
					warnings: []string{"manifest unknown"},
				}
			},
		},
		"short name through a docker.io rule": {
			nodes: []validate.Platform{amd64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				// Docker Hub is never asked: the mirror has the image and the platform.
				f.mirror.PushImage(t, "dockerhub/library/nginx", "1.27", "linux", "amd64")
				pol.Mutations.Mirrors = []policy.MirrorRule{{Registry: "docker.io", Mirrors: []string{f.mirror.Host + "/dockerhub"}}}
				return pod(containers("nginx:1.27")), want{view: podView{
					Images:    map[string]string{"c0": f.mirror.Ref("dockerhub/library/nginx", ":1.27")},
					Originals: map[string]string{"c0": "nginx:1.27"},
				}}
			},
		},
		"repository prefix limits the rule": {
			nodes: []validate.Platform{amd64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushImage(t, "team/app", "v1", "linux", "amd64")
				f.origin.PushImage(t, "teamx/app", "v1", "linux", "amd64")
				copyImage(t, f.origin.Ref("team/app", ":v1"), f.mirror.Ref("origin/team/app", ":v1"))
				copyImage(t, f.origin.Ref("teamx/app", ":v1"), f.mirror.Ref("origin/teamx/app", ":v1"))
				pol.Mutations.Mirrors = []policy.MirrorRule{{Registry: f.origin.Host, RepositoryPrefix: "team",
					Mirrors: []string{f.mirror.Host + "/origin"}}}
				in, out := f.origin.Ref("team/app", ":v1"), f.origin.Ref("teamx/app", ":v1")
				return pod(containers(in, out)), want{view: podView{
					Images:    map[string]string{"c0": f.mirror.Ref("origin/team/app", ":v1"), "c1": out},
					Originals: map[string]string{"c0": in},
				}}
			},
		},
		"the longest matching prefix wins": {
			nodes: []validate.Platform{amd64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushImage(t, "team/app", "v1", "linux", "amd64")
				copyImage(t, f.origin.Ref("team/app", ":v1"), f.mirror.Ref("all/team/app", ":v1"))
				copyImage(t, f.origin.Ref("team/app", ":v1"), f.mirror2.Ref("team/team/app", ":v1"))
				pol.Mutations.Mirrors = []policy.MirrorRule{
					{Registry: f.origin.Host, Mirrors: []string{f.mirror.Host + "/all"}},
					{Registry: f.origin.Host, RepositoryPrefix: "team", Mirrors: []string{f.mirror2.Host + "/team"}},
				}
				orig := f.origin.Ref("team/app", ":v1")
				return pod(containers(orig)), want{view: podView{
					Images:    map[string]string{"c0": f.mirror2.Ref("team/team/app", ":v1")},
					Originals: map[string]string{"c0": orig},
				}}
			},
		},
		"init, regular and ephemeral containers; never-pulled and exempt images left alone": {
			nodes: []validate.Platform{amd64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushImage(t, "app", "v1", "linux", "amd64")
				f.origin.PushImage(t, "tools", "v1", "linux", "amd64")
				copyImage(t, f.origin.Ref("app", ":v1"), f.mirror.Ref("origin/app", ":v1"))
				copyImage(t, f.origin.Ref("tools", ":v1"), f.mirror.Ref("origin/tools", ":v1"))
				f.mirrorOrigin(pol)
				pol.ExemptImages = []string{f.origin.Host + "/tools:*"}
				app, tools := f.origin.Ref("app", ":v1"), f.origin.Ref("tools", ":v1")
				spec := corev1.PodSpec{
					InitContainers: []corev1.Container{{Name: "init", Image: app}},
					Containers: []corev1.Container{
						{Name: "main", Image: app},
						{Name: "local", Image: app, ImagePullPolicy: corev1.PullNever},
						{Name: "exempt", Image: tools},
					},
					EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: app}}},
				}
				mirrored := f.mirror.Ref("origin/app", ":v1")
				return pod(spec), want{view: podView{
					Images:    map[string]string{"init": mirrored, "main": mirrored, "local": app, "exempt": tools, "debug": mirrored},
					Originals: map[string]string{"init": app, "main": app, "debug": app},
				}}
			},
		},
		"image already on the mirror is not rewritten again": {
			nodes: []validate.Platform{amd64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.mirror.PushImage(t, "origin/app", "v1", "linux", "amd64")
				// A mirror on the registry it mirrors must not nest.
				pol.Mutations.Mirrors = []policy.MirrorRule{{Registry: f.mirror.Host, Mirrors: []string{f.mirror.Host + "/origin"}}}
				img := f.mirror.Ref("origin/app", ":v1")
				return pod(containers(img)), want{view: podView{Images: map[string]string{"c0": img}}}
			},
		},
		"private mirror asked with the pod's own credentials": {
			nodes: []validate.Platform{amd64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushImage(t, "app", "v1", "linux", "amd64")
				copyImage(t, f.origin.Ref("app", ":v1"), f.privMirror.Ref("origin/app", ":v1"),
					remote.WithAuth(&authn.Basic{Username: "mirror", Password: "s3cret"}))
				pol.Mutations.Mirrors = []policy.MirrorRule{{Registry: f.origin.Host, Mirrors: []string{f.privMirror.Host + "/origin"}}}
				orig := f.origin.Ref("app", ":v1")
				return pod(withSecrets(containers(orig), "mirrorcred")), want{view: podView{
					Images:      map[string]string{"c0": f.privMirror.Ref("origin/app", ":v1")},
					PullSecrets: []string{"mirrorcred"},
					Originals:   map[string]string{"c0": orig},
				}}
			},
		},
		"private mirror without credentials: original kept": {
			nodes: []validate.Platform{amd64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushImage(t, "app", "v1", "linux", "amd64")
				copyImage(t, f.origin.Ref("app", ":v1"), f.privMirror.Ref("origin/app", ":v1"),
					remote.WithAuth(&authn.Basic{Username: "mirror", Password: "s3cret"}))
				pol.Mutations.Mirrors = []policy.MirrorRule{{Registry: f.origin.Host, Mirrors: []string{f.privMirror.Host + "/origin"}}}
				orig := f.origin.Ref("app", ":v1")
				return pod(containers(orig)), want{
					view:     podView{Images: map[string]string{"c0": orig}},
					warnings: []string{"unauthorized"},
				}
			},
		},
		"private mirror with the secret a pull-secret rule adds": {
			nodes: []validate.Platform{amd64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushImage(t, "app", "v1", "linux", "amd64")
				copyImage(t, f.origin.Ref("app", ":v1"), f.privMirror.Ref("origin/app", ":v1"),
					remote.WithAuth(&authn.Basic{Username: "mirror", Password: "s3cret"}))
				pol.Mutations.Mirrors = []policy.MirrorRule{{Registry: f.origin.Host, Mirrors: []string{f.privMirror.Host + "/origin"}}}
				pol.Mutations.PullSecrets = []policy.PullSecretRule{{Registry: f.privMirror.Host, SecretName: "mirrorcred"}}
				orig := f.origin.Ref("app", ":v1")
				return pod(containers(orig)), want{view: podView{
					Images:      map[string]string{"c0": f.privMirror.Ref("origin/app", ":v1")},
					PullSecrets: []string{"mirrorcred"},
					Originals:   map[string]string{"c0": orig},
				}}
			},
		},
		"mirror on a registry the policy does not allow: original kept": {
			nodes: []validate.Platform{amd64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushImage(t, "app", "v1", "linux", "amd64")
				copyImage(t, f.origin.Ref("app", ":v1"), f.mirror.Ref("origin/app", ":v1"))
				f.mirrorOrigin(pol)
				pol.Registries.Denied = []string{f.mirror.Host}
				orig := f.origin.Ref("app", ":v1")
				return pod(containers(orig)), want{
					view:     podView{Images: map[string]string{"c0": orig}},
					warnings: []string{"registry not allowed"},
				}
			},
		},
		"unreachable mirror: original kept": {
			nodes: []validate.Platform{amd64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushImage(t, "app", "v1", "linux", "amd64")
				f.mirror.SetFault(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) })
				f.mirrorOrigin(pol)
				orig := f.origin.Ref("app", ":v1")
				return pod(containers(orig)), want{
					view:     podView{Images: map[string]string{"c0": orig}},
					warnings: []string{"server error"},
				}
			},
		},
		"an earlier original in the annotation is kept": {
			nodes: []validate.Platform{amd64},
			setup: func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
				f.origin.PushImage(t, "app", "v1", "linux", "amd64")
				copyImage(t, f.origin.Ref("app", ":v1"), f.mirror.Ref("origin/app", ":v1"))
				f.mirrorOrigin(pol)
				p := pod(containers(f.origin.Ref("app", ":v1")))
				p.Annotations = map[string]string{OriginalImagesAnnotation: `{"c0":"first:v0","gone":"x:1"}`, "team": "a"}
				return p, want{view: podView{
					Images:    map[string]string{"c0": f.mirror.Ref("origin/app", ":v1")},
					Originals: map[string]string{"c0": "first:v0", "gone": "x:1"},
				}}
			},
		},
	}
	for desc, tc := range tests {
		t.Run(desc, func(t *testing.T) {
			f := newFixture(t)
			pol := enabledPolicy()
			in, want := tc.setup(t, f, pol)
			got, res := mutateTwice(t, f.mutator(tc.nodes), pol, in)
			if diff := cmp.Diff(want.view, viewOf(t, got), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("pod mismatch (-want +got):\n%s", diff)
			}
			checkWarnings(t, res.Warnings, want.warnings)
			if in.Annotations["team"] != "" && got.Annotations["team"] != in.Annotations["team"] {
				t.Errorf("other annotations were not kept: %v", got.Annotations)
			}
		})
	}
}

func TestPullSecretInjection(t *testing.T) {
	tests := map[string]struct {
		spec         func(f *fixture) corev1.PodSpec
		rules        func(f *fixture) []policy.PullSecretRule
		wantSecrets  []string
		wantWarnings []string
	}{
		"no credential and the secret exists: added": {
			spec:        func(f *fixture) corev1.PodSpec { return containers(f.private.Ref("app", ":v1")) },
			wantSecrets: []string{"regcred"},
		},
		"the secret does not exist: nothing added, nothing said": {
			spec: func(f *fixture) corev1.PodSpec { return containers(f.private.Ref("app", ":v1")) },
			rules: func(f *fixture) []policy.PullSecretRule {
				return []policy.PullSecretRule{{Registry: f.private.Host, SecretName: "absent"}}
			},
		},
		"the first existing secret of several rules": {
			spec: func(f *fixture) corev1.PodSpec { return containers(f.private.Ref("app", ":v1")) },
			rules: func(f *fixture) []policy.PullSecretRule {
				return []policy.PullSecretRule{
					{Registry: f.private.Host, SecretName: "absent"},
					{Registry: f.private.Host, SecretName: "regcred2"},
					{Registry: f.private.Host, SecretName: "regcred"},
				}
			},
			wantSecrets: []string{"regcred2"},
		},
		"the pod already has a credential for the registry": {
			spec: func(f *fixture) corev1.PodSpec {
				return withSecrets(containers(f.private.Ref("app", ":v1")), "regcred2")
			},
			wantSecrets: []string{"regcred2"},
		},
		"the pod lists a secret for another registry: appended": {
			spec: func(f *fixture) corev1.PodSpec {
				return withSecrets(containers(f.private.Ref("app", ":v1")), "othercred")
			},
			wantSecrets: []string{"othercred", "regcred"},
		},
		"the ServiceAccount's secrets are copied first": {
			spec: func(f *fixture) corev1.PodSpec {
				s := containers(f.private.Ref("app", ":v1"))
				s.ServiceAccountName = "robot"
				return s
			},
			wantSecrets: []string{"othercred", "regcred"},
		},
		"the ServiceAccount's secrets already hold a credential": {
			spec: func(f *fixture) corev1.PodSpec {
				s := containers(f.private.Ref("app", ":v1"))
				s.ServiceAccountName = "builder"
				return s
			},
		},
		"the secret has no credential for the registry": {
			spec: func(f *fixture) corev1.PodSpec { return containers(f.private.Ref("app", ":v1")) },
			rules: func(f *fixture) []policy.PullSecretRule {
				return []policy.PullSecretRule{{Registry: f.private.Host, SecretName: "othercred"}}
			},
			wantWarnings: []string{`"othercred" not added: it has no credential`},
		},
		"the secret is not a pull secret": {
			spec: func(f *fixture) corev1.PodSpec { return containers(f.private.Ref("app", ":v1")) },
			rules: func(f *fixture) []policy.PullSecretRule {
				return []policy.PullSecretRule{{Registry: f.private.Host, SecretName: "opaque"}}
			},
			wantWarnings: []string{`"opaque" has type "Opaque"`},
		},
		"the secret has an entry the kubelet skips and a good one: added": {
			spec: func(f *fixture) corev1.PodSpec { return containers(f.private.Ref("app", ":v1")) },
			rules: func(f *fixture) []policy.PullSecretRule {
				return []policy.PullSecretRule{{Registry: f.private.Host, SecretName: "partial"}}
			},
			wantSecrets: []string{"partial"},
		},
		"the secret does not parse: not added, it would fail every pull": {
			spec: func(f *fixture) corev1.PodSpec { return containers(f.private.Ref("app", ":v1")) },
			rules: func(f *fixture) []policy.PullSecretRule {
				return []policy.PullSecretRule{{Registry: f.private.Host, SecretName: "garbled"}}
			},
			wantWarnings: []string{`"garbled" does not hold a docker config the kubelet can parse`},
		},
		"no image on the registry": {
			spec: func(f *fixture) corev1.PodSpec { return containers(f.origin.Ref("app", ":v1")) },
		},
		"the image is never pulled": {
			spec: func(f *fixture) corev1.PodSpec {
				s := containers(f.private.Ref("app", ":v1"))
				s.Containers[0].ImagePullPolicy = corev1.PullNever
				return s
			},
		},
	}
	for desc, tc := range tests {
		t.Run(desc, func(t *testing.T) {
			f := newFixture(t)
			pol := enabledPolicy()
			pol.Mutations.PullSecrets = []policy.PullSecretRule{{Registry: f.private.Host, SecretName: "regcred"}}
			if tc.rules != nil {
				pol.Mutations.PullSecrets = tc.rules(f)
			}
			in := pod(tc.spec(f))
			got, res := mutateTwice(t, f.mutator([]validate.Platform{amd64}), pol, in)
			if diff := cmp.Diff(tc.wantSecrets, viewOf(t, got).PullSecrets, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("imagePullSecrets mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(in.Spec.Containers, got.Spec.Containers); diff != "" {
				t.Errorf("injection changed containers (-want +got):\n%s", diff)
			}
			checkWarnings(t, res.Warnings, tc.wantWarnings)
		})
	}
}

func TestPinDigests(t *testing.T) {
	type want struct {
		view     podView
		warnings []string
	}
	tests := map[string]func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want){
		"tag pinned to its digest": func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
			d := f.origin.PushImage(t, "app", "v1", "linux", "amd64").String()
			orig := f.origin.Ref("app", ":v1")
			return pod(containers(orig)), want{view: podView{
				Images:    map[string]string{"c0": f.origin.Ref("app", ":v1@"+d)},
				Originals: map[string]string{"c0": orig},
			}}
		},
		"implicit latest is written out": func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
			d := f.origin.PushImage(t, "app", "latest", "linux", "amd64").String()
			orig := f.origin.Ref("app", "")
			return pod(containers(orig)), want{view: podView{
				Images:    map[string]string{"c0": f.origin.Ref("app", ":latest@"+d)},
				Originals: map[string]string{"c0": orig},
			}}
		},
		"private image pinned with the pod's credentials": func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
			d := f.private.PushImage(t, "app", "v1", "linux", "amd64").String()
			orig := f.private.Ref("app", ":v1")
			return pod(withSecrets(containers(orig), "regcred")), want{view: podView{
				Images:      map[string]string{"c0": f.private.Ref("app", ":v1@"+d)},
				PullSecrets: []string{"regcred"},
				Originals:   map[string]string{"c0": orig},
			}}
		},
		"private image pinned with an added secret": func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
			d := f.private.PushImage(t, "app", "v1", "linux", "amd64").String()
			pol.Mutations.PullSecrets = []policy.PullSecretRule{{Registry: f.private.Host, SecretName: "regcred"}}
			orig := f.private.Ref("app", ":v1")
			return pod(containers(orig)), want{view: podView{
				Images:      map[string]string{"c0": f.private.Ref("app", ":v1@"+d)},
				PullSecrets: []string{"regcred"},
				Originals:   map[string]string{"c0": orig},
			}}
		},
		"private image without credentials: left to the validator": func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
			f.private.PushImage(t, "app", "v1", "linux", "amd64")
			orig := f.private.Ref("app", ":v1")
			return pod(containers(orig)), want{view: podView{Images: map[string]string{"c0": orig}}}
		},
		"missing tag: left to the validator": func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
			f.origin.PushImage(t, "app", "v1", "linux", "amd64")
			orig := f.origin.Ref("app", ":v2")
			return pod(containers(orig)), want{view: podView{Images: map[string]string{"c0": orig}}}
		},
		"digest reference unchanged": func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
			d := f.origin.PushImage(t, "app", "v1", "linux", "amd64").String()
			orig := f.origin.Ref("app", "@"+d)
			return pod(containers(orig)), want{view: podView{Images: map[string]string{"c0": orig}}}
		},
		"stale mirror: not mirrored, pinned on the origin": func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
			d := f.origin.PushImage(t, "app", "v1", "linux", "amd64").String()
			f.mirror.PushImage(t, "origin/app", "v1", "linux", "amd64")
			f.mirrorOrigin(pol)
			orig := f.origin.Ref("app", ":v1")
			return pod(containers(orig)), want{
				view: podView{
					Images:    map[string]string{"c0": f.origin.Ref("app", ":v1@"+d)},
					Originals: map[string]string{"c0": orig},
				},
				warnings: []string{"stale"},
			}
		},
		"registry failing: not pinned, with a warning": func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
			f.origin.PushImage(t, "app", "v1", "linux", "amd64")
			f.origin.SetFault(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
			orig := f.origin.Ref("app", ":v1")
			return pod(containers(orig)), want{
				view:     podView{Images: map[string]string{"c0": orig}},
				warnings: []string{"not pinned to a digest: server error"},
			}
		},
		"mirrored, then pinned to the mirror's digest": func(t *testing.T, f *fixture, pol *policy.Policy) (*corev1.Pod, want) {
			d := f.origin.PushImage(t, "app", "v1", "linux", "amd64").String()
			copyImage(t, f.origin.Ref("app", ":v1"), f.mirror.Ref("origin/app", ":v1"))
			f.mirrorOrigin(pol)
			orig := f.origin.Ref("app", ":v1")
			return pod(containers(orig)), want{view: podView{
				Images:    map[string]string{"c0": f.mirror.Ref("origin/app", ":v1@"+d)},
				Originals: map[string]string{"c0": orig},
			}}
		},
	}
	for desc, setup := range tests {
		t.Run(desc, func(t *testing.T) {
			f := newFixture(t)
			pol := enabledPolicy()
			pol.Mutations.PinDigests = true
			in, want := setup(t, f, pol)
			got, res := mutateTwice(t, f.mutator([]validate.Platform{amd64}), pol, in)
			if diff := cmp.Diff(want.view, viewOf(t, got), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("pod mismatch (-want +got):\n%s", diff)
			}
			checkWarnings(t, res.Warnings, want.warnings)
		})
	}
}

// TestMasterSwitch: with mutations.enabled false nothing changes and no registry is asked,
// whatever the rules say.
func TestMasterSwitch(t *testing.T) {
	f := newFixture(t)
	f.origin.PushImage(t, "app", "v1", "linux", "amd64")
	copyImage(t, f.origin.Ref("app", ":v1"), f.mirror.Ref("origin/app", ":v1"))
	f.origin.Reset()
	f.mirror.Reset()
	pol := enabledPolicy()
	pol.Mutations = policy.MutationPolicy{
		Enabled:     false,
		Mirrors:     []policy.MirrorRule{{Registry: f.origin.Host, Mirrors: []string{f.mirror.Host + "/origin"}}},
		PullSecrets: []policy.PullSecretRule{{Registry: f.origin.Host, SecretName: "regcred"}},
		PinDigests:  true,
	}
	in := pod(containers(f.origin.Ref("app", ":v1")))
	got := in.DeepCopy()
	res, err := f.mutator([]validate.Platform{amd64}).Mutate(t.Context(), pol, testNS, got)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Result{}, res, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("result mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(in, got); diff != "" {
		t.Errorf("pod changed (-want +got):\n%s", diff)
	}
	if n := f.origin.TotalRequests() + f.mirror.TotalRequests(); n != 0 {
		t.Errorf("%d registry requests with mutations off", n)
	}
}

// TestChanges checks what Mutate reports, for the webhook's metrics and logs.
func TestChanges(t *testing.T) {
	f := newFixture(t)
	d := f.private.PushImage(t, "app", "v1", "linux", "amd64").String()
	copyImage(t, f.private.Ref("app", ":v1"), f.mirror.Ref("private/app", ":v1"),
		remote.WithAuth(&authn.Basic{Username: "puller", Password: "hunter2"}))
	pol := enabledPolicy()
	pol.Mutations.Mirrors = []policy.MirrorRule{{Registry: f.private.Host, Mirrors: []string{f.mirror.Host + "/private"}}}
	pol.Mutations.PullSecrets = []policy.PullSecretRule{{Registry: f.private.Host, SecretName: "regcred"}}
	pol.Mutations.PinDigests = true
	orig := f.private.Ref("app", ":v1")
	_, res := mutateTwice(t, f.mutator([]validate.Platform{amd64}), pol, pod(containers(orig)))
	want := Result{Changes: []Change{
		{Kind: Mirror, Container: "c0", From: orig, To: f.mirror.Ref("private/app", ":v1")},
		{Kind: Pin, Container: "c0", From: f.mirror.Ref("private/app", ":v1"), To: f.mirror.Ref("private/app", ":v1@"+d)},
	}}
	// The image moved to a public mirror, so the private registry's secret is not needed.
	if diff := cmp.Diff(want, res, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("result mismatch (-want +got):\n%s", diff)
	}
}

// TestTarget checks the normalisation of image names onto a mirror, Docker Hub's short names
// included (which tests cannot pull from Docker Hub itself).
func TestTarget(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		mirror, image, want string
	}{
		{"mirror.internal:5000/dockerhub", "nginx", "mirror.internal:5000/dockerhub/library/nginx:latest"},
		{"mirror.internal:5000/dockerhub", "nginx:1.27", "mirror.internal:5000/dockerhub/library/nginx:1.27"},
		{"mirror.internal:5000/dockerhub", "docker.io/library/nginx:1.27", "mirror.internal:5000/dockerhub/library/nginx:1.27"},
		{"mirror.internal:5000/dockerhub", "index.docker.io/nginx:1.27", "mirror.internal:5000/dockerhub/library/nginx:1.27"},
		{"mirror.internal:5000/dockerhub", "bitnami/redis:7.2", "mirror.internal:5000/dockerhub/bitnami/redis:7.2"},
		{"mirror.internal:5000/dockerhub", "nginx@" + digest, "mirror.internal:5000/dockerhub/library/nginx@" + digest},
		{"mirror.internal:5000/dockerhub", "nginx:1.27@" + digest, "mirror.internal:5000/dockerhub/library/nginx:1.27@" + digest},
		{"mirror.internal:5000", "ghcr.io/org/app:v1", "mirror.internal:5000/org/app:v1"},
		{"mirror.internal/a/b", "registry.local:5000/team/app:v2", "mirror.internal/a/b/team/app:v2"},
	}
	for _, tc := range tests {
		t.Run(tc.mirror+" "+tc.image, func(t *testing.T) {
			got, err := Target(tc.mirror, tc.image)
			if err != nil {
				t.Fatalf("Target: %v", err)
			}
			if got != tc.want {
				t.Errorf("Target(%q, %q) = %q, want %q", tc.mirror, tc.image, got, tc.want)
			}
		})
	}
	for _, bad := range [][2]string{{"mirror.internal", "Not/Valid"}, {"https://mirror.internal", "nginx"}, {"mirror.internal/Upper", "nginx"}} {
		if got, err := Target(bad[0], bad[1]); err == nil {
			t.Errorf("Target(%q, %q) = %q, want an error", bad[0], bad[1], got)
		}
	}
}

// TestRuleFor checks which rule an image falls under: Docker Hub under any of its names, the
// longest repository prefix first.
func TestRuleFor(t *testing.T) {
	rules := []policy.MirrorRule{
		{Registry: "docker.io", Mirrors: []string{"m/all"}},
		{Registry: "index.docker.io", RepositoryPrefix: "bitnami", Mirrors: []string{"m/bitnami"}},
		{Registry: "registry.local", Mirrors: []string{"m/local"}},
	}
	tests := map[string]string{
		"nginx":                                "m/all",
		"library/nginx:1.27":                   "m/all",
		"docker.io/nginx":                      "m/all",
		"registry-1.docker.io/library/nginx:1": "m/all",
		"bitnami/redis:7":                      "m/bitnami",
		"docker.io/bitnami/charts/redis:7":     "m/bitnami",
		"bitnamix/redis:7":                     "m/all",
		"registry.local:5000/app:v1":           "m/local",
		"REGISTRY.local/app:v1":                "m/local",
		"ghcr.io/org/app:v1":                   "",
	}
	for image, want := range tests {
		ref, err := name.ParseReference(image)
		if err != nil {
			t.Fatalf("parsing %q: %v", image, err)
		}
		got := ""
		if r := ruleFor(rules, ref.Context()); r != nil {
			got = r.Mirrors[0]
		}
		if got != want {
			t.Errorf("ruleFor(%q) = %q, want %q", image, got, want)
		}
	}
}

// TestMutationsAskFreshly: what the mirror rewrite and pinning write into a pod is what the
// registries say now. Within the registry cache's burst window (2s) pods share one lookup;
// after it a push is seen at once, though the tag TTL (5m) has not passed.
func TestMutationsAskFreshly(t *testing.T) {
	tests := map[string]func(t *testing.T, f *fixture, m *Mutator, pol *policy.Policy){
		"pinning after a push gets the new digest": func(t *testing.T, f *fixture, m *Mutator, pol *policy.Policy) {
			pol.Mutations.PinDigests = true
			orig := f.origin.Ref("app", ":v1")
			first := f.origin.PushImage(t, "app", "v1", "linux", "amd64").String()
			mutateWant(t, m, pol, orig, f.origin.Ref("app", ":v1@"+first))

			f.origin.Reset()
			mutateWant(t, m, pol, orig, f.origin.Ref("app", ":v1@"+first))
			if n := f.origin.TotalRequests(); n != 0 {
				t.Errorf("a pod within the burst window cost %d requests, want 0", n)
			}

			second := f.origin.PushImage(t, "app", "v1", "linux", "amd64").String()
			f.clock.Advance(3 * time.Second)
			mutateWant(t, m, pol, orig, f.origin.Ref("app", ":v1@"+second))
		},
		"a mirror left behind by a push to the origin is not used, and is again once it catches up": func(t *testing.T, f *fixture, m *Mutator, pol *policy.Policy) {
			f.mirrorOrigin(pol)
			orig, mirrored := f.origin.Ref("app", ":v1"), f.mirror.Ref("origin/app", ":v1")
			f.origin.PushImage(t, "app", "v1", "linux", "amd64")
			copyImage(t, orig, mirrored)
			mutateWant(t, m, pol, orig, mirrored)

			f.origin.PushImage(t, "app", "v1", "linux", "amd64") // the mirror has not synced yet
			f.clock.Advance(3 * time.Second)
			mutateWant(t, m, pol, orig, orig)

			copyImage(t, orig, mirrored) // it has now
			f.clock.Advance(3 * time.Second)
			mutateWant(t, m, pol, orig, mirrored)
		},
	}
	for desc, run := range tests {
		t.Run(desc, func(t *testing.T) {
			f := newFixture(t)
			pol := enabledPolicy()
			run(t, f, f.mutator([]validate.Platform{amd64}), pol)
		})
	}
}

// mutateWant mutates a pod of image and wants its one container to end up with want.
func mutateWant(t *testing.T, m *Mutator, pol *policy.Policy, image, want string) {
	t.Helper()
	p := pod(containers(image))
	if _, err := m.Mutate(t.Context(), pol, testNS, p); err != nil {
		t.Fatalf("Mutate: %v", err)
	}
	if got := p.Spec.Containers[0].Image; got != want {
		t.Errorf("image = %s, want %s", got, want)
	}
}

// TestInsecureRegistries: references to a registry the policy lists as insecure are parsed
// with name.Insecure, which is how the registry client learns it may speak plain HTTP there.
func TestInsecureRegistries(t *testing.T) {
	pol := enabledPolicy()
	pol.Registries.Insecure = []string{"registry.internal:5000", "docker.io"}
	r := &run{pol: pol}
	for image, want := range map[string]string{
		"registry.internal:5000/app:v1": "http",
		"registry.other:5000/app:v1":    "https",
		"nginx:1.27":                    "http",
	} {
		ref, ok := r.pulled(image)
		if !ok {
			t.Fatalf("pulled(%q) = false", image)
		}
		if got := ref.Context().Scheme(); got != want {
			t.Errorf("pulled(%q) scheme = %s, want %s", image, got, want)
		}
	}
	ref, _ := r.pulled("ghcr.io/org/app:v1")
	for mirror, want := range map[string]string{"registry.internal:5000/ghcr": "http", "registry.other:5000/ghcr": "https"} {
		target, err := mirrorTarget(mirror, ref, r.insecure)
		if err != nil {
			t.Fatal(err)
		}
		if got := target.Context().Scheme(); got != want {
			t.Errorf("mirror %s: scheme = %s, want %s", mirror, got, want)
		}
	}
}
