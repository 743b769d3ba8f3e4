package validate_test

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/pullgate/pullgate/pkg/lookup"
	"github.com/pullgate/pullgate/pkg/policy"
	"github.com/pullgate/pullgate/pkg/validate"
)

// missingRegistry answers "manifest unknown" for everything, without I/O, so the fuzzer
// exercises parsing, normalisation, suggestions and message building.
type missingRegistry struct{}

func (missingRegistry) Resolve(_ context.Context, ref name.Reference, _ authn.Authenticator) (lookup.Descriptor, error) {
	return lookup.Descriptor{}, &lookup.Error{Kind: lookup.KindManifestUnknown, Host: ref.Context().RegistryStr()}
}

func (missingRegistry) Platforms(context.Context, name.Digest, authn.Authenticator) ([]v1.Platform, error) {
	return nil, nil
}

func (missingRegistry) Children(context.Context, name.Digest, authn.Authenticator) ([]v1.Descriptor, error) {
	return nil, nil
}

func (missingRegistry) Tags(context.Context, name.Repository, authn.Authenticator, int) ([]string, error) {
	return []string{"1.0", "1.1", "latest", strings.Repeat("x", 128)}, nil
}

// FuzzImageReference checks any image string: no panic, exactly one finding about it at
// most per reason, and every message bounded and valid UTF-8 so kubectl can print it.
func FuzzImageReference(f *testing.F) {
	for _, s := range []string{
		"nginx", "nginx:1.27", "docker.io/library/nginx@sha256:" + strings.Repeat("a", 64),
		"registry.local:5000/team/app:v1", "[::1]:5000/app:v1", "UPPER/case", "a/b/c/d/e/f:tag@sha256:00",
		"localhost/app:" + strings.Repeat("t", 200), ":", "@", "/", "", "\x00", "ünïcode/app:v1",
	} {
		f.Add(s)
	}
	checker := &validate.Checker{Registry: missingRegistry{}}
	pol := policy.Default()
	f.Fuzz(func(t *testing.T, image string) {
		spec := &corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}}
		findings := checker.Check(t.Context(), pol, validate.Pod{Namespace: "ns", Spec: spec})
		if len(findings) == 0 {
			t.Fatalf("no finding for %q, which no registry has", image)
		}
		for _, fd := range findings {
			for _, s := range []string{fd.Message, fd.Fix} {
				if len(s) > 1024 {
					t.Errorf("%s text of %d bytes for an image of %d bytes", fd.Reason, len(s), len(image))
				}
				if utf8.ValidString(image) && !utf8.ValidString(s) {
					t.Errorf("%s text is not valid UTF-8: %q", fd.Reason, s)
				}
			}
		}
	})
}
