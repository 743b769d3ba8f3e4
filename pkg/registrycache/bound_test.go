package registrycache

import (
	"fmt"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/pullgate/pullgate/internal/testregistry"
)

// TestCachesStayBounded fills every cache far past WithMaxEntries and checks none grows
// beyond it: content, tags, negatives, registry transports and per-host state.
func TestCachesStayBounded(t *testing.T) {
	const bound, lookups = 16, 200
	r := testregistry.New(t)
	digest := r.PushImage(t, "app", "v1", "linux", "amd64")
	c := New(WithMaxEntries(bound), WithDialPolicy(DialPolicy{AllowLoopback: true}))
	for i := range lookups {
		// Distinct repositories (clients, negatives), digests (content) and tags.
		missing, err := name.ParseReference(r.Ref(fmt.Sprintf("missing%d", i), ":v1"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Resolve(t.Context(), missing, authn.Anonymous)
		tag, _ := name.ParseReference(r.Ref("app", ":v1"))
		_, _ = c.Resolve(t.Context(), tag, &authn.Basic{Username: fmt.Sprintf("user%d", i), Password: "x"})
		dig, _ := name.NewDigest(r.Ref(fmt.Sprintf("repo%d", i), "@"+digest.String()))
		_, _ = c.Platforms(t.Context(), dig, authn.Anonymous)
	}
	for cache, n := range map[string]int{
		"content": c.content.Len(), "tags": c.tags.Len(), "negative": c.negative.Len(),
		"transports": c.transports.Len(), "hosts": c.hosts.Len(),
	} {
		if n > bound {
			t.Errorf("%s cache holds %d entries after %d lookups; bound %d", cache, n, lookups, bound)
		}
	}
	if c.negative.Len() < bound || c.tags.Len() < bound {
		t.Errorf("the caches did not fill (negative %d, tags %d): the test proves nothing", c.negative.Len(), c.tags.Len())
	}
}
