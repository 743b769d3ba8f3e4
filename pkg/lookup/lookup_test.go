package lookup

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestKinds(t *testing.T) {
	verdicts := map[Kind]bool{
		KindRepositoryUnknown: true, KindManifestUnknown: true, KindUnauthorized: true, KindDenied: true,
		KindTimeout: false, KindUnreachable: false, KindRateLimited: false, KindServerError: false, KindBlocked: false,
	}
	for kind, want := range verdicts {
		t.Run(kind.String(), func(t *testing.T) {
			if got := kind.IsVerdict(); got != want {
				t.Errorf("IsVerdict() = %v, want %v", got, want)
			}
			wrapped := fmt.Errorf("resolving: %w", &Error{Kind: kind, Host: "r.example", Err: context.DeadlineExceeded})
			if got := KindOf(wrapped); got != kind {
				t.Errorf("KindOf(wrapped) = %v, want %v", got, kind)
			}
			if !errors.Is(wrapped, context.DeadlineExceeded) {
				t.Error("the cause is not reachable through Unwrap")
			}
		})
	}
	if got := KindOf(errors.New("other")); got != 0 {
		t.Errorf("KindOf(non-lookup error) = %v, want 0", got)
	}
}

func TestContextHints(t *testing.T) {
	for _, tc := range []struct {
		desc                              string
		ctx                               context.Context
		cacheOnly, platformsWanted, fresh bool
	}{
		{"none", t.Context(), false, false, false},
		{"cache only", WithCacheOnly(t.Context()), true, false, false},
		{"platforms wanted", WithPlatformsWanted(t.Context()), false, true, false},
		{"fresh", WithFresh(t.Context()), false, false, true},
		{"all", WithFresh(WithPlatformsWanted(WithCacheOnly(t.Context()))), true, true, true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if got := CacheOnly(tc.ctx); got != tc.cacheOnly {
				t.Errorf("CacheOnly() = %v, want %v", got, tc.cacheOnly)
			}
			if got := PlatformsWanted(tc.ctx); got != tc.platformsWanted {
				t.Errorf("PlatformsWanted() = %v, want %v", got, tc.platformsWanted)
			}
			if got := Fresh(tc.ctx); got != tc.fresh {
				t.Errorf("Fresh() = %v, want %v", got, tc.fresh)
			}
		})
	}
}
