package registrycache_test

import (
	"fmt"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/pkg/lookup"
	"github.com/pullgate/pullgate/pkg/registrycache"
)

// A budget bounds the requests a caller's look-ups send a registry: once spent, a look-up
// that would ask it is refused before it starts (KindBudgetSpent, no verdict); cached
// answers cost nothing; another registry has its own budget; a caller without one is never
// refused.
func TestBudget(t *testing.T) {
	reg := testregistry.New(t)
	other := testregistry.New(t)
	for i := range 10 {
		reg.PushImage(t, "team/app", fmt.Sprintf("v%d", i), "linux", "amd64")
	}
	other.PushImage(t, "team/app", "v0", "linux", "amd64")
	c := registrycache.New(registrycache.WithDialPolicy(registrycache.DialPolicy{AllowLoopback: true}))
	ref := func(r *testregistry.Registry, tag string) name.Reference {
		return mustRef(t, r.Ref("team/app", ":"+tag))
	}

	// Warm one answer outside the budget.
	if _, err := c.Resolve(t.Context(), ref(reg, "v0"), authn.Anonymous); err != nil {
		t.Fatal(err)
	}
	reg.Reset()
	const perHost = 4
	budget := lookup.NewBudget(perHost)
	ctx := lookup.WithBudget(t.Context(), budget)
	var refused, found int
	for i := range 10 {
		_, err := c.Resolve(ctx, ref(reg, fmt.Sprintf("v%d", i)), authn.Anonymous)
		switch {
		case err == nil:
			found++
		case lookup.KindOf(err) == lookup.KindBudgetSpent:
			refused++
		default:
			t.Fatalf("v%d: %v", i, err)
		}
	}
	sent := reg.TotalRequests()
	if sent > perHost {
		t.Errorf("the registry got %d requests under a budget of %d", sent, perHost)
	}
	if used := budget.Used()[reg.Host]; used != sent {
		t.Errorf("the budget counted %d requests, the registry got %d", used, sent)
	}
	// v0 came from the cache; each other tag costs one HEAD (the ping is already known).
	if found != 1+perHost || refused != 10-1-perHost {
		t.Errorf("found %d, refused %d; want %d found (one cached) and %d refused", found, refused, 1+perHost, 10-1-perHost)
	}
	if _, err := c.Resolve(ctx, ref(reg, "v0"), authn.Anonymous); err != nil {
		t.Errorf("a cached answer under a spent budget: %v", err)
	}
	if _, err := c.Resolve(ctx, ref(other, "v0"), authn.Anonymous); err != nil {
		t.Errorf("another registry under the same budget: %v", err)
	}
	if _, err := c.Resolve(t.Context(), ref(reg, "v9"), authn.Anonymous); err != nil {
		t.Errorf("a caller without a budget: %v", err)
	}
	if lookup.KindBudgetSpent.IsVerdict() {
		t.Error("a spent budget is a verdict")
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}
