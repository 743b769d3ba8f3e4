package registrycache

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
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
	"github.com/google/go-containerregistry/pkg/v1/types"
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

	// content holds what a digest contains (platforms, an image's config descriptor): it
	// never changes, so it is kept without expiry. Whether a digest still exists does
	// change (garbage collection, retention), so that answer is in tags.
	content  *lru.Cache[string, any]           // digest-addressed content, no expiry
	tags     *lru.Cache[string, timedEntry]    // tag and digest existence answers, tag lists: tag TTL
	negative *lru.Cache[string, negativeEntry] // not-found answers, negative TTL (at most burstWindow)

	// transports are go-containerregistry's, by registry, credential identity and, for a
	// Bearer registry, repository (see ping.go); gens numbers the generations of the hosts'
	// ping answers they are built from (see hostState.gen).
	transports *lru.Cache[string, cachedTransport]
	gens       atomic.Uint64

	hostsMu sync.Mutex
	hosts   *lru.Cache[string, *hostState]

	hits, misses, requests atomic.Int64

	// identities remembers the identity of credentials already seen (bounded): the HMAC
	// costs more than the rest of a cached lookup. They are credentials the pull secrets
	// cache holds in memory anyway.
	identities *lru.Cache[authn.AuthConfig, string]

	// macs are HMAC-SHA256 states keyed with idKey, reused: hmac.New allocates two hash
	// states and the padded keys on every call.
	macs sync.Pool
}

var _ interface {
	Resolve(context.Context, name.Reference, authn.Authenticator) (lookup.Descriptor, error)
	Platforms(context.Context, name.Digest, authn.Authenticator) ([]v1.Platform, error)
	Children(context.Context, name.Digest, authn.Authenticator) ([]v1.Descriptor, error)
	Tags(context.Context, name.Repository, authn.Authenticator, int) ([]string, error)
} = (*Cache)(nil)

type timedEntry struct {
	value   any
	stored  time.Time // when the registry gave it, for lookup.WithFresh
	expires time.Time
}

type negativeEntry struct {
	err     lookup.Error
	expires time.Time
}

// maxConfigSize bounds the image config blob Platforms reads. Manifests are bounded by
// go-containerregistry (100 MiB).
const maxConfigSize = 8 << 20

// cacheConfig keys the config descriptor of an image whose manifest Resolve read for
// Platforms, until Platforms has read the config.
const cacheConfig = "config"

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
	c.transports = mustLRU[cachedTransport](o.maxEntries, nil)
	c.identities, _ = lru.New[authn.AuthConfig, string](min(o.maxEntries, 1024)) // size > 0: makeOptions
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
// or confirms that a digest exists. Both answers are kept for the tag TTL (a digest can be
// deleted: after the TTL a HEAD confirms it again), "not found" for the negative TTL, never
// longer than burstWindow. Under lookup.WithFresh an answer older than burstWindow is asked
// again. A HEAD has no body, so a missing repository is reported as KindManifestUnknown
// here; Tags tells the two apart.
//
// Under lookup.WithPlatformsWanted, a lookup that must ask the registry does a GET instead,
// and keeps from the body what Platforms needs (all of it for an index, the config's
// descriptor for an image), unless the platforms of the digest ref named last are already
// kept: then a HEAD tells whether it still names that. A GET body can tell a missing
// repository (KindRepositoryUnknown) from a missing manifest.
func (c *Cache) Resolve(ctx context.Context, ref name.Reference, auth authn.Authenticator) (lookup.Descriptor, error) {
	repo := ref.Context()
	host := repo.RegistryStr()
	cred, err := c.credentialOf(ctx, host, auth)
	if err != nil {
		return lookup.Descriptor{}, err
	}
	_, byDigest := ref.(name.Digest)
	key := cacheKey(cacheManifest, repo, ref.Identifier(), cred.id)
	v, err := c.get(ctx, cacheManifest, host, endpointManifests, key, false, func(ctx context.Context) (any, error) {
		p, err := c.puller(ctx, repo, cred)
		if err != nil {
			return nil, err
		}
		// A GET only when its body saves Platforms a request: Docker Hub counts GETs, not
		// HEADs, against its pull rate limit, and a HEAD's response is smaller.
		var d lookup.Descriptor
		if lookup.PlatformsWanted(ctx) && !countsManifestGETs(host) && !c.platformsKept(ref, key, cred.id) {
			d, err = c.getManifest(ctx, p, ref, cred.id)
		} else {
			d, err = head(ctx, p, ref, host)
		}
		if err != nil {
			return nil, err
		}
		if !byDigest {
			// What a tag points to exists, by digest, as of now.
			c.store(cacheKey(cacheManifest, repo, d.Digest.String(), cred.id), false, d)
		}
		return d, nil
	})
	if err != nil {
		return lookup.Descriptor{}, err
	}
	return v.(lookup.Descriptor), nil
}

var errBudgetSpent = errors.New("this caller's request budget for the registry is spent")

// budgetCharge is the Budget a lookup's requests count against, and the registry they count
// for.
type budgetCharge struct {
	b    *lookup.Budget
	host string
}

type budgetHostKey struct{}

// countsManifestGETs reports whether host is Docker Hub, which counts every manifest GET
// (and no HEAD) against its pull rate limit. There a first look-up stays a HEAD: a tag that
// is another name for a digest already known (nginx:1.27 and nginx:stable) then costs no
// counted pull, at the price of one more round trip for a digest not seen before.
func countsManifestGETs(host string) bool {
	switch host {
	case name.DefaultRegistry, "docker.io", "registry-1.docker.io":
		return true
	}
	return false
}

// platformsKept reports whether Platforms has (or needs only the config blob for) the
// digest ref named when last looked up: its own digest, or the one a tag resolved to
// before its answer expired. key is ref's manifest cache key.
func (c *Cache) platformsKept(ref name.Reference, key, id string) bool {
	var digest string
	if d, ok := ref.(name.Digest); ok {
		digest = d.DigestStr()
	} else if e, ok := c.tags.Peek(key); ok { // Peek: an expired answer still names it
		if d, ok := e.value.(lookup.Descriptor); ok {
			digest = d.Digest.String()
		}
	}
	if digest == "" {
		return false
	}
	repo := ref.Context()
	return c.content.Contains(cacheKey(cachePlatforms, repo, digest, id)) ||
		c.content.Contains(cacheKey(cacheConfig, repo, digest, id))
}

// getManifest is Resolve's GET: it keeps, from the one response, what Platforms would read
// from the manifest body, so that Platforms asks for no manifest.
func (c *Cache) getManifest(ctx context.Context, p *remote.Puller, ref name.Reference, id string) (lookup.Descriptor, error) {
	desc, err := p.Get(ctx, ref)
	if err != nil {
		return lookup.Descriptor{}, err
	}
	d := lookup.Descriptor{Digest: desc.Digest, MediaType: desc.MediaType, Size: desc.Size}
	platforms, config, err := manifestPlatforms(ref, desc.MediaType, desc.Manifest)
	repo := ref.Context()
	switch {
	case err != nil:
		// Not Resolve's to report: the digest stands, and Platforms, finding nothing
		// kept, fetches the manifest and reports the error itself.
	case config != nil:
		c.content.Add(cacheKey(cacheConfig, repo, d.Digest.String(), id), *config)
	default:
		c.content.Add(cacheKey(cachePlatforms, repo, d.Digest.String(), id), platforms)
		if children, err := indexChildren(ref, desc.MediaType, desc.Manifest); err == nil && children != nil {
			c.content.Add(cacheKey(cacheChildren, repo, d.Digest.String(), id), children)
		}
	}
	return d, nil
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
// fetched by digest, once, and kept without expiry; when Resolve fetched the manifest
// (under lookup.WithPlatformsWanted), only an image's config is left to fetch. An empty
// answer means the registry gives no platform information (an artifact, a schema 1
// manifest); it is not a mismatch.
func (c *Cache) Platforms(ctx context.Context, ref name.Digest, auth authn.Authenticator) ([]v1.Platform, error) {
	repo := ref.Context()
	host := repo.RegistryStr()
	cred, err := c.credentialOf(ctx, host, auth)
	if err != nil {
		return nil, err
	}
	key := cacheKey(cachePlatforms, repo, ref.DigestStr(), cred.id)
	v, err := c.get(ctx, cachePlatforms, host, endpointManifests, key, true, func(ctx context.Context) (any, error) {
		p, err := c.puller(ctx, repo, cred)
		if err != nil {
			return nil, err
		}
		configKey := cacheKey(cacheConfig, repo, ref.DigestStr(), cred.id)
		if config, ok := c.content.Peek(configKey); ok {
			platforms, err := configPlatforms(ctx, p, ref, config.(v1.Descriptor))
			if err == nil {
				c.content.Remove(configKey) // the platforms are kept in its place
			}
			return platforms, err
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
	platforms, config, err := manifestPlatforms(ref, desc.MediaType, desc.Manifest)
	if err != nil || config == nil {
		return platforms, err
	}
	return configPlatforms(ctx, p, ref, *config)
}

// Children returns the manifests the index at ref lists, in its order, as the runtimes
// choose among them: entries without a platform keep a nil Platform, attestations
// (unknown/unknown) and nested indexes are kept, and of the annotations only CRI-O's zstd
// marker. A manifest that is not an index has no children: the answer is empty. Like
// Platforms, the answer is fetched by digest once and kept without expiry; when Resolve
// fetched the index (under lookup.WithPlatformsWanted), no request is made.
func (c *Cache) Children(ctx context.Context, ref name.Digest, auth authn.Authenticator) ([]v1.Descriptor, error) {
	repo := ref.Context()
	host := repo.RegistryStr()
	cred, err := c.credentialOf(ctx, host, auth)
	if err != nil {
		return nil, err
	}
	key := cacheKey(cacheChildren, repo, ref.DigestStr(), cred.id)
	v, err := c.get(ctx, cacheChildren, host, endpointManifests, key, true, func(ctx context.Context) (any, error) {
		p, err := c.puller(ctx, repo, cred)
		if err != nil {
			return nil, err
		}
		desc, err := p.Get(ctx, ref)
		if err != nil {
			return nil, err
		}
		children, err := indexChildren(ref, desc.MediaType, desc.Manifest)
		if children == nil && err == nil {
			children = []v1.Descriptor{}
		}
		return children, err
	})
	if err != nil {
		return nil, err
	}
	return cloneDescriptors(v.([]v1.Descriptor)), nil
}

// zstdAnnotation is the one annotation Children keeps: containers/image prefers the
// instances it marks (internal/manifest/oci_index.go instanceIsZstd).
const zstdAnnotation = "io.github.containers.compression.zstd"

// indexChildren returns the entries of an index body of media type mt, or nil for a
// manifest that is not an index. A body that does not parse is the registry's fault (see
// manifestPlatforms).
func indexChildren(ref name.Reference, mt types.MediaType, body []byte) ([]v1.Descriptor, error) {
	if !mt.IsIndex() {
		return nil, nil
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("parsing the index manifest of %s: %v", ref, err)
	}
	out := make([]v1.Descriptor, len(im.Manifests))
	for i, m := range im.Manifests {
		out[i] = v1.Descriptor{MediaType: m.MediaType, Size: m.Size, Digest: m.Digest, Platform: m.Platform}
		if v, ok := m.Annotations[zstdAnnotation]; ok {
			out[i].Annotations = map[string]string{zstdAnnotation: v}
		}
	}
	return out, nil
}

func cloneDescriptors(ds []v1.Descriptor) []v1.Descriptor {
	out := make([]v1.Descriptor, len(ds))
	for i, d := range ds {
		if d.Platform != nil {
			p := clonePlatforms([]v1.Platform{*d.Platform})[0]
			d.Platform = &p
		}
		if d.Annotations != nil {
			d.Annotations = map[string]string{zstdAnnotation: d.Annotations[zstdAnnotation]}
		}
		out[i] = d
	}
	return out
}

// manifestPlatforms returns the platforms a manifest of media type mt states in its body:
// an index's, from its entries; none for schema 1 or an artifact. An image states its
// platform in its config blob: for one, manifestPlatforms returns the config's descriptor
// instead, for configPlatforms.
//
// A body that does not parse is the registry's fault, whatever the parser says: its error
// is not wrapped, so that a truncated document (io.ErrUnexpectedEOF) is not taken for a
// connection cut short.
func manifestPlatforms(ref name.Reference, mt types.MediaType, body []byte) ([]v1.Platform, *v1.Descriptor, error) {
	platforms := []v1.Platform{}
	switch {
	case mt.IsIndex():
		im, err := v1.ParseIndexManifest(bytes.NewReader(body))
		if err != nil {
			return nil, nil, fmt.Errorf("parsing the index manifest of %s: %v", ref, err)
		}
		for _, m := range im.Manifests {
			if m.Platform == nil || (m.Platform.OS == "unknown" && m.Platform.Architecture == "unknown") {
				continue
			}
			platforms = append(platforms, *m.Platform)
		}
		return platforms, nil, nil
	case mt.IsSchema1():
		return platforms, nil, nil
	}
	m, err := v1.ParseManifest(bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("parsing the manifest of %s: %v", ref, err)
	}
	if !m.Config.MediaType.IsConfig() {
		return platforms, nil, nil // an artifact, not an image
	}
	return nil, &m.Config, nil
}

// configPlatforms returns the platform the config blob of the image at ref states.
func configPlatforms(ctx context.Context, p *remote.Puller, ref name.Reference, config v1.Descriptor) ([]v1.Platform, error) {
	if config.Size > maxConfigSize {
		return nil, fmt.Errorf("the config blob of %s is %d bytes, more than the %d read", ref, config.Size, maxConfigSize)
	}
	raw, err := readConfig(ctx, p, ref.Context(), config)
	if err != nil {
		return nil, fmt.Errorf("reading the config of %s: %w", ref, err)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing the config of %s: %v", ref, err)
	}
	platforms := []v1.Platform{}
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

// readConfig returns the config blob config describes: embedded in the descriptor when it
// is, else read from repo, never more than the size the descriptor states.
func readConfig(ctx context.Context, p *remote.Puller, repo name.Repository, config v1.Descriptor) ([]byte, error) {
	if config.Data != nil {
		h, err := v1.Hasher(config.Digest.Algorithm)
		if err != nil {
			return nil, err
		}
		h.Write(config.Data)
		if hex.EncodeToString(h.Sum(nil)) != config.Digest.Hex || int64(len(config.Data)) != config.Size {
			return nil, fmt.Errorf("the config embedded in the manifest does not match its descriptor")
		}
		return config.Data, nil
	}
	l, err := p.Layer(ctx, repo.Digest(config.Digest.String()))
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	// The reader checks the digest when it reaches the end: one byte more than the size
	// stated reaches it, or shows the blob is longer.
	raw, err := io.ReadAll(io.LimitReader(rc, config.Size+1))
	if err != nil {
		return nil, err
	}
	if int64(len(raw)) != config.Size {
		return nil, fmt.Errorf("the config blob is not the %d bytes its descriptor states", config.Size)
	}
	return raw, nil
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
	cred, err := c.credentialOf(ctx, host, auth)
	if err != nil {
		return nil, err
	}
	key := cacheKey(cacheTags, repo, strconv.Itoa(limit), cred.id)
	v, err := c.get(ctx, cacheTags, host, endpointTags, key, false, func(ctx context.Context) (any, error) {
		p, err := c.puller(ctx, repo, cred)
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
// immutable answers (what a digest contains) are kept without expiry, others for the tag
// TTL; under lookup.WithFresh those are used only while younger than burstWindow.
func (c *Cache) get(ctx context.Context, cache, host string, ep endpoint, key string, immutable bool,
	fetch func(context.Context) (any, error)) (any, error) {
	fresh := lookup.Fresh(ctx)
	if v, hit, err := c.cached(key, immutable, fresh); hit {
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
	if b := lookup.BudgetOf(ctx); b != nil {
		if !b.Take(host) {
			// Refused before it starts, so that no lookup others share fails for a budget
			// that is not theirs.
			return nil, &lookup.Error{Kind: lookup.KindBudgetSpent, Host: host, Err: errBudgetSpent}
		}
		// Its requests (to the registry, its token server, a blob store it redirects to)
		// count against the registry the image names.
		ctx = context.WithValue(ctx, budgetHostKey{}, budgetCharge{b, host})
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

	flight := key
	if fresh && !immutable {
		// A fresh lookup must not join one that may answer from an older cached answer.
		flight = "fresh\x00" + key
	}
	ch := c.group.DoChan(flight, func() (any, error) {
		// A lookup that finished between the check above and here has stored its answer.
		if v, hit, err := c.cached(key, immutable, fresh); hit {
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
		if le.Kind == lookup.KindUnauthorized {
			c.unauthorized(hs, cs.getChallenges(host))
		}
	}
	c.record(ctx, hs, le, trial)
	return v, le
}

// cached returns the cached answer for key: a value, or the error of a not-found answer.
// fresh asks for a timed answer no older than burstWindow; not-found answers never are.
func (c *Cache) cached(key string, immutable, fresh bool) (v any, hit bool, err error) {
	now := c.o.now()
	if immutable {
		if v, ok := c.content.Get(key); ok {
			return v, true, nil
		}
	} else if e, ok := c.tags.Get(key); ok && now.Before(e.expires) && (!fresh || now.Sub(e.stored) < burstWindow) {
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
		now := c.o.now()
		c.tags.Add(key, timedEntry{value: v, stored: now, expires: now.Add(c.o.tagTTL)})
	}
}

// storeNegative keeps a not-found answer for the negative TTL, which makeOptions holds to
// burstWindow at most: a denial never rests on an older "not found", since the image may
// have been pushed since ("push, then apply"). A burst of admissions inside the window still
// costs one request, and one after it one more, shared by singleflight. Failures are not
// answers and are never kept.
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

// credential is who a lookup asks as: the identity that cache keys name, and a copy of the
// credentials it stands for. Transports are kept by identity, so they must send exactly
// those credentials, even if the Authenticator they came from later answers differently.
type credential struct {
	id  string
	cfg authn.AuthConfig // zero for anonymous
}

// authenticator is what a transport built for the credential sends.
func (cr credential) authenticator() authn.Authenticator {
	if cr.id == anonymousIdentity {
		return authn.Anonymous
	}
	return authn.FromConfig(cr.cfg)
}

// credentialOf names the credentials auth presents, without revealing them: "anonymous"
// for none, else a keyed SHA-256 (HMAC) over the authn.AuthConfig.
func (c *Cache) credentialOf(ctx context.Context, host string, auth authn.Authenticator) (credential, error) {
	anonymous := credential{id: anonymousIdentity}
	if auth == nil || auth == authn.Anonymous {
		return anonymous, nil
	}
	cfg, err := authn.Authorization(ctx, auth)
	if err != nil {
		return credential{}, &lookup.Error{Kind: lookup.KindUnauthorized, Host: host, Err: fmt.Errorf("reading the credentials: %w", err)}
	}
	if cfg == nil || *cfg == (authn.AuthConfig{}) {
		return anonymous, nil
	}
	// Every lookup of every admission asks; the same few credentials come back each time.
	if id, ok := c.identities.Get(*cfg); ok {
		return credential{id: id, cfg: *cfg}, nil
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
	id := hex.EncodeToString(mac.Sum(sum[:0]))
	c.identities.Add(*cfg, id)
	return credential{id: id, cfg: *cfg}, nil
}

// puller returns a go-containerregistry client for repo over the transport kept for cred.
// Once the transport exists a Puller is a few allocations, so none is kept: one kept per
// registry would collect state for every repository it ever read.
func (c *Cache) puller(ctx context.Context, repo name.Repository, cred credential) (*remote.Puller, error) {
	rt, err := c.roundTripper(ctx, repo, cred)
	if err != nil {
		return nil, err
	}
	// rt is a *transport.Wrapper, which remote neither pings through nor wraps: no
	// retries, which suits the Cache (a lookup is bounded by one deadline, a failure is
	// reported and counted by the breaker, and the next admission asks again).
	p, err := remote.NewPuller(remote.WithTransport(rt), remote.WithPageSize(tagsPageSize))
	if err != nil {
		return nil, fmt.Errorf("creating a registry client: %w", err)
	}
	return p, nil
}
