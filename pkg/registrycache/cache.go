package registrycache

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/pullgate/pullgate/pkg/lookup"
)

// Cache answers registry questions for admissions; see the package documentation. It is
// safe for concurrent use. Create it with New.
type Cache struct {
	o options
	// idKey keys the hash of credential identities, so that a cache key, were it ever
	// seen, cannot be used to guess a password offline.
	idKey []byte
	// transport is what go-containerregistry sends requests through.
	transport http.RoundTripper
	group     singleflight.Group

	content  *lru.Cache[string, any]           // digest-addressed answers, no expiry
	tags     *lru.Cache[string, timedEntry]    // tag answers and tag lists, tag TTL
	negative *lru.Cache[string, negativeEntry] // not-found answers, negative TTL

	pullersMu sync.Mutex
	pullers   *lru.Cache[string, *remote.Puller] // per registry, repository and identity

	hostsMu sync.Mutex
	hosts   *lru.Cache[string, *hostState]

	hits, misses, requests atomic.Int64

	// macs are HMAC-SHA256 states keyed with idKey, reused: hmac.New allocates two hash
	// states and the padded keys on every call.
	macs sync.Pool
}

var _ interface {
	Resolve(context.Context, name.Reference, authn.Authenticator) (lookup.Descriptor, error)
	Platforms(context.Context, name.Digest, authn.Authenticator) ([]v1.Platform, error)
	Tags(context.Context, name.Repository, authn.Authenticator, int) ([]string, error)
} = (*Cache)(nil)

type timedEntry struct {
	value   any
	expires time.Time
}

type negativeEntry struct {
	err     lookup.Error
	expires time.Time
}

// maxConfigSize bounds the image config blob Platforms reads.
const maxConfigSize = 8 << 20

// Stats counts what a Cache did, for tests and benchmarks.
type Stats struct {
	// Hits are lookups answered from the cache, found or not found.
	Hits int64
	// Misses are lookups that went to the registry or joined a lookup already asking it.
	Misses int64
	// Requests are HTTP requests sent to registries, pings and token requests included.
	Requests int64
}

// New returns a Cache configured by opts.
func New(opts ...Option) *Cache {
	o := makeOptions(opts...)
	c := &Cache{o: o, idKey: make([]byte, 32)}
	_, _ = rand.Read(c.idKey) // never fails (crypto/rand.Read)
	c.macs.New = func() any { return hmac.New(sha256.New, c.idKey) }
	c.content = mustLRU[any](o.maxEntries, nil)
	c.tags = mustLRU[timedEntry](o.maxEntries, nil)
	c.negative = mustLRU[negativeEntry](o.maxEntries, nil)
	c.pullers = mustLRU[*remote.Puller](o.maxEntries, nil)
	c.hosts = mustLRU(o.maxEntries, func(host string, _ *hostState) {
		circuitOpen.DeleteLabelValues(host)
	})

	guard := newDialGuard(&c.o)
	mt := &meteredTransport{c: c}
	if o.transport != nil {
		mt.base, mt.preflight = o.transport, guard
	} else {
		mt.base = newBaseTransport(guard)
	}
	c.transport = mt
	return c
}

func mustLRU[V any](size int, onEvict func(string, V)) *lru.Cache[string, V] {
	l, err := lru.NewWithEvict(size, onEvict)
	if err != nil {
		panic(fmt.Sprintf("registrycache: creating an LRU of size %d: %v", size, err))
	}
	return l
}

// Stats returns the Cache's counters.
func (c *Cache) Stats() Stats {
	return Stats{Hits: c.hits.Load(), Misses: c.misses.Load(), Requests: c.requests.Load()}
}

// Resolve does a HEAD of the manifest ref names: it returns the digest a tag points to now,
// or confirms that a digest exists. A digest's answer is kept without expiry, a tag's for
// the tag TTL, "not found" for the negative TTL. A HEAD has no body, so a missing repository
// is reported as KindManifestUnknown here; Tags tells the two apart.
func (c *Cache) Resolve(ctx context.Context, ref name.Reference, auth authn.Authenticator) (lookup.Descriptor, error) {
	repo := ref.Context()
	host := repo.RegistryStr()
	id, err := c.identity(ctx, host, auth)
	if err != nil {
		return lookup.Descriptor{}, err
	}
	_, byDigest := ref.(name.Digest)
	key := cacheKey(cacheManifest, repo, ref.Identifier(), id)
	v, err := c.get(ctx, cacheManifest, host, endpointManifests, key, byDigest, func(ctx context.Context) (any, error) {
		p, err := c.puller(repo, id, auth)
		if err != nil {
			return nil, err
		}
		d, err := head(ctx, p, ref, host)
		if err != nil {
			return nil, err
		}
		if !byDigest {
			// What a tag points to exists, by digest, for good.
			c.content.Add(cacheKey(cacheManifest, repo, d.Digest.String(), id), d)
		}
		return d, nil
	})
	if err != nil {
		return lookup.Descriptor{}, err
	}
	return v.(lookup.Descriptor), nil
}

// head is a manifest HEAD, with a GET in its place when the registry does not answer HEAD
// usefully (405, or a 200 without the Docker-Content-Digest or Content-Type headers).
func head(ctx context.Context, p *remote.Puller, ref name.Reference, host string) (lookup.Descriptor, error) {
	desc, err := p.Head(ctx, ref)
	if err != nil {
		le := classify(host, endpointManifests, err)
		if le.Kind != lookup.KindServerError || (le.StatusCode != 0 && le.StatusCode != http.StatusMethodNotAllowed) {
			return lookup.Descriptor{}, err
		}
		got, gerr := p.Get(ctx, ref)
		if gerr != nil {
			return lookup.Descriptor{}, gerr
		}
		desc = &got.Descriptor
	}
	return lookup.Descriptor{Digest: desc.Digest, MediaType: desc.MediaType, Size: desc.Size}, nil
}

// Platforms returns the platforms of the manifest at ref: for an index, the platforms of its
// manifests (entries without a platform, or with unknown/unknown such as attestations, are
// skipped); for an image, the os, architecture and variant of its config. The answer is
// fetched by digest, once, and kept without expiry. An empty answer means the registry
// gives no platform information (an artifact, a schema 1 manifest); it is not a mismatch.
func (c *Cache) Platforms(ctx context.Context, ref name.Digest, auth authn.Authenticator) ([]v1.Platform, error) {
	repo := ref.Context()
	host := repo.RegistryStr()
	id, err := c.identity(ctx, host, auth)
	if err != nil {
		return nil, err
	}
	key := cacheKey(cachePlatforms, repo, ref.DigestStr(), id)
	v, err := c.get(ctx, cachePlatforms, host, endpointManifests, key, true, func(ctx context.Context) (any, error) {
		p, err := c.puller(repo, id, auth)
		if err != nil {
			return nil, err
		}
		return fetchPlatforms(ctx, p, ref)
	})
	if err != nil {
		return nil, err
	}
	return clonePlatforms(v.([]v1.Platform)), nil
}

func fetchPlatforms(ctx context.Context, p *remote.Puller, ref name.Digest) ([]v1.Platform, error) {
	desc, err := p.Get(ctx, ref)
	if err != nil {
		return nil, err
	}
	platforms := []v1.Platform{}
	switch {
	case desc.MediaType.IsIndex():
		im, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest))
		if err != nil {
			return nil, fmt.Errorf("parsing the index manifest of %s: %w", ref, err)
		}
		for _, m := range im.Manifests {
			if m.Platform == nil || (m.Platform.OS == "unknown" && m.Platform.Architecture == "unknown") {
				continue
			}
			platforms = append(platforms, *m.Platform)
		}
		return platforms, nil
	case desc.MediaType.IsSchema1():
		return platforms, nil
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, fmt.Errorf("parsing the manifest of %s: %w", ref, err)
	}
	if !m.Config.MediaType.IsConfig() {
		return platforms, nil // an artifact, not an image
	}
	if m.Config.Size > maxConfigSize {
		return nil, fmt.Errorf("the config blob of %s is %d bytes, more than the %d read", ref, m.Config.Size, maxConfigSize)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, fmt.Errorf("reading the image %s: %w", ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the config of %s: %w", ref, err)
	}
	if cf.OS == "" && cf.Architecture == "" {
		return platforms, nil
	}
	return append(platforms, v1.Platform{
		OS:           cf.OS,
		Architecture: cf.Architecture,
		Variant:      cf.Variant,
		OSVersion:    cf.OSVersion,
		OSFeatures:   cf.OSFeatures,
	}), nil
}

func clonePlatforms(ps []v1.Platform) []v1.Platform {
	out := make([]v1.Platform, len(ps))
	for i, p := range ps {
		p.OSFeatures = slices.Clone(p.OSFeatures)
		p.Features = slices.Clone(p.Features)
		out[i] = p
	}
	return out
}

// Tags lists up to limit tags of repo, in the registry's order, to suggest one when a tag
// is missing. It stops paging once it has limit tags. The list is kept for the tag TTL. A
// 404 from tags/list means the repository does not exist: KindRepositoryUnknown. A limit
// below 1 returns no tags without contacting the registry.
func (c *Cache) Tags(ctx context.Context, repo name.Repository, auth authn.Authenticator, limit int) ([]string, error) {
	if limit < 1 {
		return nil, nil
	}
	host := repo.RegistryStr()
	id, err := c.identity(ctx, host, auth)
	if err != nil {
		return nil, err
	}
	key := cacheKey(cacheTags, repo, strconv.Itoa(limit), id)
	v, err := c.get(ctx, cacheTags, host, endpointTags, key, false, func(ctx context.Context) (any, error) {
		p, err := c.puller(repo, id, auth)
		if err != nil {
			return nil, err
		}
		lister, err := p.Lister(ctx, repo)
		if err != nil {
			return nil, err
		}
		tags := []string{}
		for len(tags) < limit && lister.HasNext() {
			page, err := lister.Next(ctx)
			if err != nil {
				return nil, err
			}
			tags = append(tags, page.Tags...)
		}
		return slices.Clip(tags[:min(len(tags), limit)]), nil
	})
	if err != nil {
		return nil, err
	}
	return slices.Clone(v.([]string)), nil
}

// get answers key from the cache, or asks the registry with fetch: once for all the
// callers that ask at the same time (singleflight), on a context of its own that the first
// caller leaving does not cancel, while each caller waits only as long as its own ctx.
// immutable answers (digest-addressed) are kept without expiry, others for the tag TTL.
func (c *Cache) get(ctx context.Context, cache, host string, ep endpoint, key string, immutable bool,
	fetch func(context.Context) (any, error)) (any, error) {
	if v, hit, err := c.cached(key, immutable); hit {
		c.hits.Add(1)
		countLookup(cache, true)
		return v, err
	}
	if le := c.host(host).rejectOpen(c.o.now()); le != nil {
		// The circuit is open: fail before singleflight, a timer and formatting an error.
		c.misses.Add(1)
		countLookup(cache, false)
		return nil, le
	}
	if lookup.CacheOnly(ctx) {
		return nil, lookup.ErrNotCached
	}
	c.misses.Add(1)
	countLookup(cache, false)
	if ctx.Err() != nil {
		return nil, &lookup.Error{
			Kind: lookup.KindTimeout,
			Host: host,
			Err:  fmt.Errorf("before asking the registry: %w", context.Cause(ctx)),
		}
	}

	ch := c.group.DoChan(key, func() (any, error) {
		// A lookup that finished between the check above and here has stored its answer.
		if v, hit, err := c.cached(key, immutable); hit {
			return v, err
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.requestTimeout)
		defer cancel()
		v, le := c.guarded(fctx, host, ep, fetch)
		if le != nil {
			c.storeNegative(key, le)
			return nil, le
		}
		c.store(key, immutable, v)
		return v, nil
	})
	select {
	case r := <-ch:
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, &lookup.Error{
			Kind: lookup.KindTimeout,
			Host: host,
			Err:  fmt.Errorf("waiting for the registry: %w", context.Cause(ctx)),
		}
	}
}

// guarded runs fetch if the host's rate limit and circuit breaker let it, and reports the
// outcome to them.
func (c *Cache) guarded(ctx context.Context, host string, ep endpoint, fetch func(context.Context) (any, error)) (any, *lookup.Error) {
	hs := c.host(host)
	trial, gate := hs.admit(c.o.now())
	if gate != nil {
		return nil, gate
	}
	ctx, cs := withCallState(ctx)
	v, err := fetch(ctx)
	var le *lookup.Error
	if err != nil {
		le = classify(host, ep, err)
		if le.Kind == lookup.KindRateLimited {
			d, ok := cs.getRetryAfter()
			if !ok {
				d = defaultRateLimitHold
			}
			le.RetryAfter = d
		}
	}
	c.record(ctx, hs, le, trial)
	return v, le
}

// cached returns the cached answer for key: a value, or the error of a not-found answer.
func (c *Cache) cached(key string, immutable bool) (v any, hit bool, err error) {
	now := c.o.now()
	if immutable {
		if v, ok := c.content.Get(key); ok {
			return v, true, nil
		}
	} else if e, ok := c.tags.Get(key); ok && now.Before(e.expires) {
		return e.value, true, nil
	}
	if e, ok := c.negative.Get(key); ok && now.Before(e.expires) {
		le := e.err
		return nil, true, &le
	}
	return nil, false, nil
}

func (c *Cache) store(key string, immutable bool, v any) {
	switch {
	case immutable:
		c.content.Add(key, v)
	case c.o.tagTTL > 0:
		c.tags.Add(key, timedEntry{value: v, expires: c.o.now().Add(c.o.tagTTL)})
	}
}

// storeNegative keeps a not-found answer for the negative TTL. Failures are not answers and
// are never kept.
func (c *Cache) storeNegative(key string, le *lookup.Error) {
	if c.o.negativeTTL <= 0 {
		return
	}
	switch le.Kind {
	case lookup.KindRepositoryUnknown, lookup.KindManifestUnknown:
		c.negative.Add(key, negativeEntry{err: *le, expires: c.o.now().Add(c.o.negativeTTL)})
	}
}

// cacheKey is what an answer depends on: the question, registry, repository, reference
// (tag, digest, or tag-list limit) and the credential identity.
func cacheKey(question string, repo name.Repository, ref, identity string) string {
	return strings.Join([]string{question, repo.RegistryStr(), repo.RepositoryStr(), ref, identity}, "\x00")
}

const anonymousIdentity = "anonymous"

// identity names the credentials auth presents, without revealing them: "anonymous" for
// none, else a keyed SHA-256 (HMAC) over the authn.AuthConfig.
func (c *Cache) identity(ctx context.Context, host string, auth authn.Authenticator) (string, error) {
	if auth == nil || auth == authn.Anonymous {
		return anonymousIdentity, nil
	}
	cfg, err := authn.Authorization(ctx, auth)
	if err != nil {
		return "", &lookup.Error{Kind: lookup.KindUnauthorized, Host: host, Err: fmt.Errorf("reading the credentials: %w", err)}
	}
	if cfg == nil || *cfg == (authn.AuthConfig{}) {
		return anonymousIdentity, nil
	}
	mac := c.macs.Get().(hash.Hash)
	defer c.macs.Put(mac)
	mac.Reset()
	var n [8]byte
	for _, f := range []string{cfg.Username, cfg.Password, cfg.Auth, cfg.IdentityToken, cfg.RegistryToken} {
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		mac.Write(n[:])
		_, _ = io.WriteString(mac, f)
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(mac.Sum(sum[:0])), nil
}

// puller returns the go-containerregistry client for repo and a credential identity. It is
// kept so that the ping and token exchange are not repeated on every lookup.
func (c *Cache) puller(repo name.Repository, id string, auth authn.Authenticator) (*remote.Puller, error) {
	key := strings.Join([]string{repo.RegistryStr(), repo.RepositoryStr(), id}, "\x00")
	c.pullersMu.Lock()
	defer c.pullersMu.Unlock()
	if p, ok := c.pullers.Get(key); ok {
		return p, nil
	}
	if auth == nil {
		auth = authn.Anonymous
	}
	p, err := remote.NewPuller(
		remote.WithAuth(auth),
		remote.WithTransport(c.transport),
		remote.WithUserAgent(c.o.userAgent),
		// No retries: a lookup is bounded by one deadline, a failure is reported (and
		// counted by the breaker) and the next admission asks again.
		remote.WithRetryPredicate(func(error) bool { return false }),
		remote.WithRetryStatusCodes(),
		remote.WithPageSize(tagsPageSize),
	)
	if err != nil {
		return nil, fmt.Errorf("creating a registry client: %w", err)
	}
	c.pullers.Add(key, p)
	return p, nil
}
