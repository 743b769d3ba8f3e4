package validate_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/pullgate/pullgate/internal/testnodes"
	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/pkg/lookup"
	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/pullsecrets"
	"github.com/pullgate/pullgate/pkg/registrycache"
	"github.com/pullgate/pullgate/pkg/validate"
)

// benchPod is the pod shape of test/bench: an init container and three containers, two
// tags, a digest and a tag@digest, one multi-arch index, pinned to amd64 nodes.
func benchPod(b *testing.B, reg *testregistry.Registry) *corev1.PodSpec {
	b.Helper()
	migrate := reg.PushImage(b, "bench/migrate", "2.3.0", "linux", "amd64")
	reg.PushImage(b, "bench/shop-web", "1.4.2", "linux", "amd64")
	shipper := reg.PushImage(b, "bench/log-shipper", "3.2.1", "linux", "amd64")
	reg.PushIndex(b, "bench/envoy", "1.31", "linux/amd64", "linux/arm64")
	return &corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "migrate", Image: reg.Ref("bench/migrate", "@"+migrate.String())}},
		Containers: []corev1.Container{
			{Name: "web", Image: reg.Ref("bench/shop-web", ":1.4.2")},
			{Name: "log-shipper", Image: reg.Ref("bench/log-shipper", ":3.2.1@"+shipper.String())},
			{Name: "proxy", Image: reg.Ref("bench/envoy", ":1.31")},
		},
		NodeSelector:     map[string]string{corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64"},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "regcred"}},
	}
}

var benchSnapshot = testnodes.Platforms(validate.Platform{OS: "linux", Architecture: "amd64"}, validate.Platform{OS: "linux", Architecture: "arm64"})

func benchNodes() *validate.Nodes { return benchSnapshot }

func benchPolicy() *policy.Policy {
	p := policy.Default()
	p.Registries.AllowLoopback = true
	return p
}

// benchKeyring is the pod's keyring: one dockerconfigjson secret with an entry for host.
func benchKeyring(b *testing.B, spec *corev1.PodSpec, host string) *pullsecrets.Keyring {
	b.Helper()
	reader := fake.NewClientBuilder().WithObjects(
		testregistry.PullSecret("bench", "regcred", host, "bench", "bench-password"),
	).Build()
	kr, err := pullsecrets.ForPod(b.Context(), reader, "bench", spec)
	if err != nil {
		b.Fatal(err)
	}
	return kr
}

// BenchmarkCheckWarm is the validate path of one admission with every answer cached: what
// pullgate spends on a pod whose images it has seen. The keyring is built once (the webhook
// builds it per admission; pkg/webhook's benchmarks include that).
func BenchmarkCheckWarm(b *testing.B) {
	reg := testregistry.New(b)
	spec := benchPod(b, reg)
	for _, tc := range []struct {
		name    string
		keyring func() *pullsecrets.Keyring
	}{
		{"anonymous", func() *pullsecrets.Keyring { return nil }},
		{"pull-secret", func() *pullsecrets.Keyring { return benchKeyring(b, spec, reg.Host) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := &validate.Checker{
				Registry: registrycache.New(registrycache.WithDialPolicy(registrycache.DialPolicy{AllowLoopback: true})),
				Nodes:    benchNodes,
			}
			pol := benchPolicy()
			pod := validate.Pod{Namespace: "bench", Spec: spec, Keyring: tc.keyring()}
			ctx := context.Background()
			if fs := c.Check(ctx, pol, pod); len(fs) != 0 {
				b.Fatalf("warming the cache: findings %+v", fs)
			}
			reg.Reset()
			benchLoop(b, func() {
				if fs := c.Check(ctx, pol, pod); len(fs) != 0 {
					b.Fatalf("findings %+v", fs)
				}
			})
			b.StopTimer()
			if n := reg.TotalRequests(); n != 0 {
				b.Fatalf("a warm check sent %d registry requests", n)
			}
		})
	}
}

// stubRegistry answers at once from memory: BenchmarkCheckStub measures the checks alone,
// without the cache.
type stubRegistry struct{}

var stubDigest = v1.Hash{Algorithm: "sha256", Hex: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}

func (stubRegistry) Resolve(context.Context, name.Reference, authn.Authenticator) (lookup.Descriptor, error) {
	return lookup.Descriptor{Digest: stubDigest, MediaType: types.OCIManifestSchema1, Size: 512}, nil
}

func (stubRegistry) Platforms(context.Context, name.Digest, authn.Authenticator) ([]v1.Platform, error) {
	return []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}, nil
}

func (stubRegistry) Children(context.Context, name.Digest, authn.Authenticator) ([]v1.Descriptor, error) {
	return []v1.Descriptor{
		{MediaType: types.OCIManifestSchema1, Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}},
		{MediaType: types.OCIManifestSchema1, Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}},
	}, nil
}

func (stubRegistry) Tags(context.Context, name.Repository, authn.Authenticator, int) ([]string, error) {
	return nil, nil
}

func BenchmarkCheckStub(b *testing.B) {
	reg := testregistry.New(b)
	spec := benchPod(b, reg)
	c := &validate.Checker{Registry: stubRegistry{}, Nodes: benchNodes}
	pol := benchPolicy()
	pod := validate.Pod{Namespace: "bench", Spec: spec, Keyring: benchKeyring(b, spec, reg.Host)}
	ctx := context.Background()
	benchLoop(b, func() {
		if fs := c.Check(ctx, pol, pod); len(fs) != 0 {
			b.Fatalf("findings %+v", fs)
		}
	})
}

// benchCPUTime is this process's user and system CPU time. Benchmarks report it per operation as
// cpu-ns/op next to ns/op: on a machine shared with other builds, wall time per operation
// grows with their load, CPU time much less.
func benchCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchLoop runs op in a b.Loop and reports its CPU time per operation.
func benchLoop(b *testing.B, op func()) {
	b.Helper()
	b.ReportAllocs()
	start, n := benchCPUTime(), 0
	for b.Loop() {
		op()
		n++
	}
	b.ReportMetric(float64(benchCPUTime()-start)/float64(n), "cpu-ns/op")
}
