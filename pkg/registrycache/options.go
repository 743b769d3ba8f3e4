package registrycache

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"
)

// Option configures a Cache; see the With* functions for what each sets and its default.
type Option func(*options)

const (
	defaultTagTTL          = 5 * time.Minute
	defaultNegativeTTL     = burstWindow
	defaultMaxEntries      = 10000
	defaultHostConcurrency = 8
	defaultBreakerFailures = 3
	defaultBreakerOpenFor  = 30 * time.Second
	defaultRequestTimeout  = 10 * time.Second
	defaultUserAgent       = "pullgate"

	// defaultRateLimitHold is how long a host that answered 429 without a usable
	// Retry-After is left alone.
	defaultRateLimitHold = 10 * time.Second
	// maxRateLimitHold caps what a registry's Retry-After can ask for.
	maxRateLimitHold = time.Hour
	// tagsPageSize is the n asked for on each tags/list page (ECR refuses more than 1000).
	tagsPageSize = 1000

	// burstWindow is how long an answer that can change stays good enough to act on
	// without asking again: the longest a "not found" is reused (WithNegativeTTL), and the
	// oldest tag answer a lookup.WithFresh lookup accepts. It is long enough that a burst
	// of admissions (a Deployment scaled to 500, its pods created within a second or two)
	// shares one request, and short enough that "push, then apply" is not refused.
	burstWindow = 2 * time.Second
)

type options struct {
	tagTTL          time.Duration
	negativeTTL     time.Duration
	maxEntries      int
	hostConcurrency int
	breakerFailures int
	breakerOpenFor  time.Duration
	requestTimeout  time.Duration
	dialPolicy      func() DialPolicy
	transport       http.RoundTripper
	now             func() time.Time
	userAgent       string

	// lookupIP resolves host names for the dial guard; net.DefaultResolver.LookupNetIP
	// outside tests.
	lookupIP func(ctx context.Context, network, host string) ([]netip.Addr, error)
	// proxy picks the HTTP proxy of a request; http.ProxyFromEnvironment outside tests.
	proxy func(*http.Request) (*url.URL, error)
}

// makeOptions applies opts over the defaults. It is the one place where defaults are set
// and out-of-range values are replaced by them.
func makeOptions(opts ...Option) options {
	o := options{
		tagTTL:          defaultTagTTL,
		negativeTTL:     defaultNegativeTTL,
		maxEntries:      defaultMaxEntries,
		hostConcurrency: defaultHostConcurrency,
		breakerFailures: defaultBreakerFailures,
		breakerOpenFor:  defaultBreakerOpenFor,
		requestTimeout:  defaultRequestTimeout,
		now:             time.Now,
		userAgent:       defaultUserAgent,
		lookupIP:        netLookupIP,
		proxy:           http.ProxyFromEnvironment,
	}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.tagTTL < 0 {
		o.tagTTL = 0
	}
	if o.negativeTTL < 0 {
		o.negativeTTL = 0
	}
	o.negativeTTL = min(o.negativeTTL, burstWindow)
	if o.maxEntries < 1 {
		o.maxEntries = defaultMaxEntries
	}
	if o.hostConcurrency < 1 {
		o.hostConcurrency = defaultHostConcurrency
	}
	if o.breakerFailures < 0 {
		o.breakerFailures = 0
	}
	if o.breakerOpenFor <= 0 {
		o.breakerOpenFor = defaultBreakerOpenFor
	}
	if o.requestTimeout <= 0 {
		o.requestTimeout = defaultRequestTimeout
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.dialPolicy == nil {
		o.dialPolicy = func() DialPolicy { return DialPolicy{} }
	}
	if o.userAgent == "" {
		o.userAgent = defaultUserAgent
	}
	if o.lookupIP == nil {
		o.lookupIP = netLookupIP
	}
	if o.proxy == nil {
		o.proxy = http.ProxyFromEnvironment
	}
	return o
}

func netLookupIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, network, host)
}

// WithTagTTL sets how long a tag → digest answer, and the answer that a digest exists, is
// reused before the registry is asked again (what a digest contains is kept without
// expiry). The default is 5m; zero disables caching of those answers.
func WithTagTTL(d time.Duration) Option {
	return func(o *options) { o.tagTTL = d }
}

// WithNegativeTTL sets how long a "not found" answer (KindRepositoryUnknown,
// KindManifestUnknown) is reused. It is never more than 2s (burstWindow): such an answer
// denies a pod, and an image pushed since must not be refused ("push, then apply"); larger
// values act as 2s. The default is 2s; zero disables caching of not-found answers.
func WithNegativeTTL(d time.Duration) Option {
	return func(o *options) { o.negativeTTL = d }
}

// WithMaxEntries bounds each of the Cache's LRUs (digest-addressed content, tag answers,
// not-found answers, and the registry transports). The default is 10000; values below 1
// keep the default.
func WithMaxEntries(n int) Option {
	return func(o *options) { o.maxEntries = n }
}

// WithHostConcurrency sets how many requests may be in flight to one registry host at a
// time; further requests wait for a slot (or for their context to end). The default is 8;
// values below 1 keep the default.
func WithHostConcurrency(n int) Option {
	return func(o *options) { o.hostConcurrency = n }
}

// WithBreaker sets the per-host circuit breaker: after failures consecutive failed lookups
// (timeout, unreachable, 5xx; answers such as 404 or 401 are not failures) the host's
// circuit opens for openFor, during which lookups fail at once with KindUnreachable; then
// one trial lookup is let through, and its success closes the circuit. The default is 3
// failures and 30s; failures of 0 disables the breaker; openFor of 0 or less keeps 30s.
func WithBreaker(failures int, openFor time.Duration) Option {
	return func(o *options) {
		o.breakerFailures = failures
		o.breakerOpenFor = openFor
	}
}

// WithRequestTimeout bounds one registry lookup (all the HTTP requests it makes). A lookup
// is shared by every caller asking the same question at once, so it runs on its own
// deadline rather than any one caller's; each caller still stops waiting when its own
// context ends. The default is 10s; values of 0 or less keep the default.
func WithRequestTimeout(d time.Duration) Option {
	return func(o *options) { o.requestTimeout = d }
}

// WithDialPolicy sets which addresses may be dialled. The default, DialPolicy{}, allows
// only public addresses.
func WithDialPolicy(p DialPolicy) Option {
	return func(o *options) { o.dialPolicy = func() DialPolicy { return p } }
}

// WithDialPolicyFunc is WithDialPolicy for a policy that changes: policy is asked on every
// dial, so a reloaded policy applies to the next connection without a new Cache. It must be
// cheap and safe for concurrent use. nil keeps the default.
func WithDialPolicyFunc(policy func() DialPolicy) Option {
	return func(o *options) {
		if policy != nil {
			o.dialPolicy = policy
		}
	}
}

// WithTransport sets the base HTTP transport. The default is a clone of
// remote.DefaultTransport whose dialer enforces the DialPolicy on the address it connects
// to. A caller-supplied transport does its own dialling, so the Cache can only check the
// policy against the addresses the request's host resolves to before sending it; that
// check cannot stop DNS rebinding. Meant for tests; nil keeps the default.
func WithTransport(rt http.RoundTripper) Option {
	return func(o *options) { o.transport = rt }
}

// WithClock sets the clock used for TTLs, Retry-After and the circuit breaker. The default
// is time.Now; nil keeps it.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithUserAgent sets the User-Agent sent to registries (go-containerregistry appends its
// own). The default is "pullgate"; the empty string keeps it.
func WithUserAgent(ua string) Option {
	return func(o *options) { o.userAgent = ua }
}
