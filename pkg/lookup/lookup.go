package lookup

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Descriptor is what a HEAD of a manifest tells: the digest a tag resolves to (or the
// digest itself, confirmed to exist) and the media type that says whether it is an index.
type Descriptor struct {
	Digest    v1.Hash
	MediaType types.MediaType
	Size      int64
}

// IsIndex reports whether the descriptor names an image index / manifest list.
func (d Descriptor) IsIndex() bool { return d.MediaType.IsIndex() }

// Kind classifies a failed lookup. The first four are verdicts: the registry answered
// definitely. The rest are failures: nothing can be concluded about the image.
type Kind int

const (
	// KindRepositoryUnknown: the registry has no such repository (404 / NAME_UNKNOWN).
	KindRepositoryUnknown Kind = iota + 1
	// KindManifestUnknown: the repository exists but not the tag or digest (MANIFEST_UNKNOWN).
	KindManifestUnknown
	// KindUnauthorized: the registry wants (other) credentials (401 / UNAUTHORIZED).
	KindUnauthorized
	// KindDenied: authenticated but not allowed (403 / DENIED).
	KindDenied
	// KindTimeout: the deadline passed before the registry answered.
	KindTimeout
	// KindUnreachable: DNS, dial, TLS, or the host's circuit breaker is open.
	KindUnreachable
	// KindRateLimited: 429 / TOOMANYREQUESTS.
	KindRateLimited
	// KindServerError: 5xx or a response that is not a valid registry answer.
	KindServerError
	// KindBlocked: the address is one the dial policy forbids (SSRF guard).
	KindBlocked
	// KindBudgetSpent: the caller's request budget for the registry (WithBudget) is spent:
	// it was not asked.
	KindBudgetSpent
)

var kindNames = map[Kind]string{
	KindRepositoryUnknown: "repository unknown",
	KindManifestUnknown:   "manifest unknown",
	KindUnauthorized:      "unauthorized",
	KindDenied:            "denied",
	KindTimeout:           "timeout",
	KindUnreachable:       "unreachable",
	KindRateLimited:       "rate limited",
	KindServerError:       "server error",
	KindBlocked:           "blocked by dial policy",
	KindBudgetSpent:       "request budget spent",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// IsVerdict reports whether the registry gave a definite answer about the image, as opposed
// to failing to answer. Only verdicts may deny a pod regardless of onRegistryError.
func (k Kind) IsVerdict() bool {
	switch k {
	case KindRepositoryUnknown, KindManifestUnknown, KindUnauthorized, KindDenied:
		return true
	}
	return false
}

// Error is the error every registry lookup returns. It never carries credentials.
type Error struct {
	Kind Kind
	// Host is the registry host the lookup was for.
	Host string
	// StatusCode is the HTTP status, when there was a response.
	StatusCode int
	// RetryAfter is what the registry asked for on 429, or zero.
	RetryAfter time.Duration
	// Err is the underlying cause.
	Err error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("registry %s: %s", e.Host, e.Kind)
	if e.StatusCode != 0 {
		msg += fmt.Sprintf(" (HTTP %d)", e.StatusCode)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the Kind of err, or 0 when err is not a lookup error.
func KindOf(err error) Kind {
	var le *Error
	if errors.As(err, &le) {
		return le.Kind
	}
	return 0
}

type cacheOnlyKey struct{}

// ErrNotCached is what a Registry answers, under WithCacheOnly, to a question it would have
// to send to a registry.
var ErrNotCached = errors.New("not in the cache")

// WithCacheOnly returns ctx asking a Registry to answer from its cache only: a question it
// would have to send to a registry fails at once with ErrNotCached. A "not found" answer is
// kept only for a burst window (a couple of seconds) and never stands for longer: past it the
// question is not cached, and the caller asks again without WithCacheOnly.
func WithCacheOnly(ctx context.Context) context.Context {
	return context.WithValue(ctx, cacheOnlyKey{}, true)
}

// CacheOnly reports whether ctx asks for cached answers only.
func CacheOnly(ctx context.Context) bool {
	v, _ := ctx.Value(cacheOnlyKey{}).(bool)
	return v
}

type platformsWantedKey struct{}

// WithPlatformsWanted returns ctx telling a Registry that the caller will ask for the
// platforms of what it resolves, so a lookup that must go to the registry may fetch the
// manifest body in the same request.
func WithPlatformsWanted(ctx context.Context) context.Context {
	return context.WithValue(ctx, platformsWantedKey{}, true)
}

// WithoutPlatformsWanted undoes WithPlatformsWanted: the caller asks only whether what it
// resolves exists (an index's child the runtime would fetch), which a HEAD answers.
func WithoutPlatformsWanted(ctx context.Context) context.Context {
	return context.WithValue(ctx, platformsWantedKey{}, false)
}

// PlatformsWanted reports whether ctx says the caller will ask for the platforms of what
// it resolves.
func PlatformsWanted(ctx context.Context) bool {
	v, _ := ctx.Value(platformsWantedKey{}).(bool)
	return v
}

type freshKey struct{}

// WithFresh returns ctx asking a Registry for answers about what a tag names now, and whether
// a digest still exists, that are no older than a burst window (a couple of seconds): a
// cached answer older than that is asked of the registry again. Callers asking at the same
// time still share one request. What a digest contains never changes, so such answers are
// served from the cache as usual. Mutations that write what they are told into a pod (a
// pinned digest, a mirror chosen because it has the origin's digest) ask this way.
func WithFresh(ctx context.Context) context.Context {
	return context.WithValue(ctx, freshKey{}, true)
}

// Fresh reports whether ctx asks for fresh answers.
func Fresh(ctx context.Context) bool {
	v, _ := ctx.Value(freshKey{}).(bool)
	return v
}

// Budget bounds the registry requests a caller causes, per registry host: a background
// re-check of every workload must not cause the rate limits it warns about. A lookup that
// would need the registry once the host's budget is spent is not started (its error is
// KindBudgetSpent); one already started finishes, so a host may see the requests of the
// lookups in flight beyond the budget (a lookup is one to three requests: ping, token,
// manifest). Answers from the cache cost nothing. Lookups that others share cost the one
// that started them. Safe for concurrent use.
type Budget struct {
	*budgetState
	// refused counts the lookups this view of the budget refused.
	refused atomic.Int64
}

type budgetState struct {
	perHost int
	mu      sync.Mutex
	used    map[string]int
}

// NewBudget returns a Budget of perHost requests per registry host.
func NewBudget(perHost int) *Budget {
	return &Budget{budgetState: &budgetState{perHost: perHost, used: make(map[string]int)}}
}

// Share returns a view of b: the same requests counted against the same limits, with its own
// count of refusals, so that a caller can tell which of its tasks the budget stopped.
func (b *Budget) Share() *Budget { return &Budget{budgetState: b.budgetState} }

// Take reports whether a lookup of host may start; when host's budget is spent it counts a
// refusal and reports false.
func (b *Budget) Take(host string) bool {
	b.mu.Lock()
	spent := b.used[host] >= b.perHost
	b.mu.Unlock()
	if spent {
		b.refused.Add(1)
	}
	return !spent
}

// Refused returns how many lookups this view refused.
func (b *Budget) Refused() int64 { return b.refused.Load() }

// Add counts one request sent to host.
func (b *Budget) Add(host string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used[host]++
}

// Used returns the requests counted per host.
func (b *Budget) Used() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.used)
}

type budgetKey struct{}

// WithBudget returns ctx whose registry lookups count against b and are refused once it is
// spent for their registry.
func WithBudget(ctx context.Context, b *Budget) context.Context {
	return context.WithValue(ctx, budgetKey{}, b)
}

// BudgetOf returns the Budget of ctx, or nil.
func BudgetOf(ctx context.Context) *Budget {
	b, _ := ctx.Value(budgetKey{}).(*Budget)
	return b
}
