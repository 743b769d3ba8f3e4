package registrycache

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pullgate/pullgate/pkg/lookup"
)

// fault handles a request in place of the registry when it returns true.
type fault func(w http.ResponseWriter, r *http.Request) bool

// testRegistry is a real in-memory registry (go-containerregistry's pkg/registry) behind
// an httptest server, with a request log and a switchable fault in front of it.
type testRegistry struct {
	srv   *httptest.Server
	reg   http.Handler
	host  string
	done  chan struct{}
	fault atomic.Pointer[fault]

	mu  sync.Mutex
	log []string // "METHOD /path"
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := &testRegistry{
		reg:  registry.New(registry.Logger(log.New(io.Discard, "", 0))),
		done: make(chan struct{}),
	}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.log = append(r.log, req.Method+" "+req.URL.Path)
		r.mu.Unlock()
		if f := r.fault.Load(); f != nil && (*f)(w, req) {
			return
		}
		r.reg.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	t.Cleanup(func() { close(r.done) }) // runs first: releases hanging handlers
	r.host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

func (r *testRegistry) setFault(f fault) {
	if f == nil {
		r.fault.Store(nil)
		return
	}
	r.fault.Store(&f)
}

// count returns how many requests had method (any when "") and a path containing part.
func (r *testRegistry) count(method, part string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range r.log {
		m, p, _ := strings.Cut(l, " ")
		if (method == "" || m == method) && strings.Contains(p, part) {
			n++
		}
	}
	return n
}

func (r *testRegistry) total() int { return r.count("", "") }

func (r *testRegistry) resetLog() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = nil
}

func (r *testRegistry) ref(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(r.host + "/" + s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func (r *testRegistry) repo(t *testing.T, s string) name.Repository {
	t.Helper()
	repo, err := name.NewRepository(r.host + "/" + s)
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// pushImage pushes img (a random one when nil) as repoTag and returns its digest.
func (r *testRegistry) pushImage(t *testing.T, repoTag string, img v1.Image) v1.Hash {
	t.Helper()
	if img == nil {
		var err error
		if img, err = random.Image(64, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := remote.Write(r.ref(t, repoTag), img, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("pushing %s: %v", repoTag, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	r.resetLog()
	return d
}

func (r *testRegistry) pushIndex(t *testing.T, repoTag string, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	if err := remote.WriteIndex(r.ref(t, repoTag), idx, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("pushing %s: %v", repoTag, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	r.resetLog()
	return d
}

// imageFor returns a random image whose config names platform p.
func imageFor(t *testing.T, p v1.Platform) v1.Image {
	t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant, cf.OSVersion = p.OS, p.Architecture, p.Variant, p.OSVersion
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// multiArch returns an index of images for platforms, plus an attestation manifest
// (unknown/unknown) and an entry without a platform, which Platforms must skip.
func multiArch(t *testing.T, platforms ...v1.Platform) v1.ImageIndex {
	t.Helper()
	var adds []mutate.IndexAddendum
	for _, p := range platforms {
		p := p
		adds = append(adds, mutate.IndexAddendum{
			Add:        imageFor(t, p),
			Descriptor: v1.Descriptor{Platform: &p},
		})
	}
	att, err := random.Image(32, 1)
	if err != nil {
		t.Fatal(err)
	}
	noPlatform, err := random.Image(32, 1)
	if err != nil {
		t.Fatal(err)
	}
	adds = append(adds,
		mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{
			Platform:    &v1.Platform{OS: "unknown", Architecture: "unknown"},
			Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest"},
		}},
		mutate.IndexAddendum{Add: noPlatform},
	)
	return mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), types.OCIImageIndex)
}

// newTestCache is a Cache that may dial the loopback test registries.
func newTestCache(t *testing.T, opts ...Option) *Cache {
	t.Helper()
	base := []Option{
		WithDialPolicy(DialPolicy{AllowLoopback: true}),
		WithRequestTimeout(5 * time.Second),
	}
	return New(append(base, opts...)...)
}

// withResolver answers the dial guard's DNS lookups for hosts from table, fails other
// names under .test as not found, and leaves the rest (localhost) to the system resolver.
func withResolver(table map[string][]netip.Addr) Option {
	return func(o *options) {
		o.lookupIP = func(ctx context.Context, network, host string) ([]netip.Addr, error) {
			if a, ok := table[host]; ok {
				return slices.Clone(a), nil
			}
			if strings.HasSuffix(host, ".test") {
				return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
			}
			return netLookupIP(ctx, network, host)
		}
	}
}

func withProxy(p func(*http.Request) (*url.URL, error)) Option {
	return func(o *options) { o.proxy = p }
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
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

// errSummary is what tests compare of a *lookup.Error.
type errSummary struct {
	Kind       lookup.Kind
	Host       string
	StatusCode int
	RetryAfter time.Duration
}

func summarize(t *testing.T, err error) errSummary {
	t.Helper()
	if err == nil {
		return errSummary{}
	}
	var le *lookup.Error
	if !errors.As(err, &le) {
		t.Fatalf("error %v (%T) is not a *lookup.Error", err, err)
	}
	return errSummary{Kind: le.Kind, Host: le.Host, StatusCode: le.StatusCode, RetryAfter: le.RetryAfter}
}

// Faults.

func onManifests(r *http.Request) bool { return strings.Contains(r.URL.Path, "/manifests/") }

// respond answers requests that match with status, headers and body.
func respond(match func(*http.Request) bool, status int, header map[string]string, body string) fault {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if !match(r) {
			return false
		}
		for k, v := range header {
			w.Header().Set(k, v)
		}
		if body != "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
		return true
	}
}

// hang never answers requests that match; they end when the client gives up.
func (r *testRegistry) hang(match func(*http.Request) bool) fault {
	return func(w http.ResponseWriter, req *http.Request) bool {
		if !match(req) {
			return false
		}
		select {
		case <-req.Context().Done():
		case <-r.done:
		}
		return true
	}
}

// reset closes the connection of requests that match without an answer.
func reset(match func(*http.Request) bool) fault {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if !match(r) {
			return false
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST rather than FIN
		}
		_ = conn.Close()
		return true
	}
}

func always(*http.Request) bool { return true }

// slowAnswers makes every answer of reg take 100 ms, so that concurrent callers all arrive
// while the first look-up is in flight.
func slowAnswers(reg *testRegistry) {
	reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		time.Sleep(100 * time.Millisecond)
		return false
	})
}

// concurrently runs fn from n goroutines released at once and fails t on the first error.
func concurrently(t *testing.T, n int, fn func() error) {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			<-start
			errs <- fn()
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
