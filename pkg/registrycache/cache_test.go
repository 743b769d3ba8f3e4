package registrycache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/pullgate/pullgate/pkg/lookup"
)

func TestResolve(t *testing.T) {
	reg := newTestRegistry(t)
	imgDigest := reg.pushImage(t, "app:v1", nil)
	idxDigest := reg.pushIndex(t, "multi:v1", multiArch(t, v1.Platform{OS: "linux", Architecture: "amd64"}))
	c := newTestCache(t)

	for _, tc := range []struct {
		desc    string
		ref     string
		want    lookup.Descriptor
		wantErr errSummary
		isIndex bool
	}{{
		desc: "tag resolves to the digest of the image",
		ref:  "app:v1",
		want: lookup.Descriptor{Digest: imgDigest, MediaType: types.DockerManifestSchema2},
	}, {
		desc: "digest that exists is confirmed",
		ref:  "app@" + imgDigest.String(),
		want: lookup.Descriptor{Digest: imgDigest, MediaType: types.DockerManifestSchema2},
	}, {
		desc:    "tag of an index is an index",
		ref:     "multi:v1",
		want:    lookup.Descriptor{Digest: idxDigest, MediaType: types.OCIImageIndex},
		isIndex: true,
	}, {
		desc:    "missing tag is an unknown manifest",
		ref:     "app:nope",
		wantErr: errSummary{Kind: lookup.KindManifestUnknown, Host: reg.host, StatusCode: http.StatusNotFound},
	}, {
		desc:    "missing digest is an unknown manifest",
		ref:     "app@sha256:" + strings.Repeat("0", 64),
		wantErr: errSummary{Kind: lookup.KindManifestUnknown, Host: reg.host, StatusCode: http.StatusNotFound},
	}, {
		// A HEAD has no body to say NAME_UNKNOWN; Tags tells the two apart.
		desc:    "missing repository by HEAD is an unknown manifest",
		ref:     "nosuchrepo:v1",
		wantErr: errSummary{Kind: lookup.KindManifestUnknown, Host: reg.host, StatusCode: http.StatusNotFound},
	}} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := c.Resolve(t.Context(), reg.ref(t, tc.ref), nil)
			if diff := cmp.Diff(tc.wantErr, summarize(t, err)); diff != "" {
				t.Fatalf("error (-want +got):\n%s\nerror: %v", diff, err)
			}
			got.Size = 0 // not interesting, and not known in advance
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("descriptor (-want +got):\n%s", diff)
			}
			if got.IsIndex() != tc.isIndex {
				t.Errorf("IsIndex() = %v, want %v", got.IsIndex(), tc.isIndex)
			}
		})
	}
}

func TestCacheLifetimes(t *testing.T) {
	const tagTTL, negativeTTL = 5 * time.Minute, 30 * time.Second
	missing := func(t *testing.T, c *Cache, ctx context.Context, ref name.Reference) {
		t.Helper()
		if _, err := c.Resolve(ctx, ref, nil); lookup.KindOf(err) != lookup.KindManifestUnknown {
			t.Fatalf("Resolve(%s) error = %v, want manifest unknown", ref, err)
		}
	}
	for _, tc := range []struct {
		desc string
		run  func(t *testing.T, reg *testRegistry, c *Cache, clock *fakeClock)
	}{{
		desc: "tag answer is reused within the tag TTL and asked again after",
		run: func(t *testing.T, reg *testRegistry, c *Cache, clock *fakeClock) {
			first := reg.pushImage(t, "app:v1", nil)
			resolveWant(t, c, reg.ref(t, "app:v1"), first)
			second := reg.pushImage(t, "app:v1", nil) // the tag moves
			clock.Advance(tagTTL - time.Second)
			resolveWant(t, c, reg.ref(t, "app:v1"), first)
			if n := reg.total(); n != 0 {
				t.Errorf("registry saw %d requests within the tag TTL, want 0", n)
			}
			clock.Advance(2 * time.Second)
			resolveWant(t, c, reg.ref(t, "app:v1"), second)
		},
	}, {
		desc: "a digest's existence is confirmed by a HEAD after the tag TTL, its platforms never expire",
		run: func(t *testing.T, reg *testRegistry, c *Cache, clock *fakeClock) {
			d := reg.pushImage(t, "app:v1", imageFor(t, v1.Platform{OS: "linux", Architecture: "arm64"}))
			ref := reg.ref(t, "app@"+d.String())
			resolveWant(t, c, ref, d)
			if _, err := c.Platforms(t.Context(), ref.(name.Digest), nil); err != nil {
				t.Fatal(err)
			}
			reg.resetLog()
			clock.Advance(tagTTL - time.Second)
			resolveWant(t, c, ref, d)
			if n := reg.total(); n != 0 {
				t.Errorf("registry saw %d requests within the tag TTL, want 0", n)
			}
			clock.Advance(1000 * time.Hour)
			resolveWant(t, c, ref, d)
			if _, err := c.Platforms(t.Context(), ref.(name.Digest), nil); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(roundTrips{ManifestHEADs: 1}, reg.roundTrips()); diff != "" {
				t.Errorf("requests after the tag TTL (-want +got):\n%s", diff)
			}
		},
	}, {
		// A digest garbage-collected after it was seen must not be admitted for ever.
		desc: "a digest deleted from the registry is not found once the tag TTL has passed",
		run: func(t *testing.T, reg *testRegistry, c *Cache, clock *fakeClock) {
			d := reg.pushImage(t, "app:v1", nil)
			resolveWant(t, c, reg.ref(t, "app:v1"), d) // caches the digest's existence too
			ref := reg.ref(t, "app@"+d.String())
			resolveWant(t, c, ref, d)
			if err := remote.Delete(ref, remote.WithContext(t.Context())); err != nil {
				t.Fatal(err)
			}
			clock.Advance(tagTTL + time.Second)
			missing(t, c, t.Context(), ref)
		},
	}, {
		desc: "resolving a tag also caches its digest",
		run: func(t *testing.T, reg *testRegistry, c *Cache, clock *fakeClock) {
			d := reg.pushImage(t, "app:v1", nil)
			resolveWant(t, c, reg.ref(t, "app:v1"), d)
			reg.resetLog()
			resolveWant(t, c, reg.ref(t, "app@"+d.String()), d)
			if n := reg.total(); n != 0 {
				t.Errorf("registry saw %d requests, want 0", n)
			}
		},
	}, {
		// Push, then apply: the negative TTL asked for (30s) is held to the burst window.
		desc: "not-found answer is reused within the burst window only, whatever the negative TTL",
		run: func(t *testing.T, reg *testRegistry, c *Cache, clock *fakeClock) {
			reg.pushImage(t, "app:other", nil)
			ref := reg.ref(t, "app:v1")
			missing(t, c, t.Context(), ref)
			missing(t, c, t.Context(), ref)
			if n := reg.count(http.MethodHead, "/manifests/"); n != 1 {
				t.Errorf("registry saw %d manifest HEADs, want 1 (second answer from cache)", n)
			}
			d := reg.pushImage(t, "app:v1", nil)
			clock.Advance(burstWindow - 500*time.Millisecond)
			missing(t, c, t.Context(), ref)
			clock.Advance(time.Second)
			resolveWant(t, c, ref, d)
		},
	}, {
		desc: "under cache-only a not-found answer past the burst window is not cached",
		run: func(t *testing.T, reg *testRegistry, c *Cache, clock *fakeClock) {
			reg.pushImage(t, "app:other", nil)
			ref := reg.ref(t, "app:v1")
			missing(t, c, t.Context(), ref)
			missing(t, c, lookup.WithCacheOnly(t.Context()), ref)
			clock.Advance(burstWindow + time.Second)
			if _, err := c.Resolve(lookup.WithCacheOnly(t.Context()), ref, nil); !errors.Is(err, lookup.ErrNotCached) {
				t.Errorf("cache-only Resolve() past the window: error = %v, want ErrNotCached", err)
			}
		},
	}, {
		desc: "a fresh lookup asks again for a tag answer older than the burst window",
		run: func(t *testing.T, reg *testRegistry, c *Cache, clock *fakeClock) {
			first := reg.pushImage(t, "app:v1", nil)
			ref := reg.ref(t, "app:v1")
			resolveWant(t, c, ref, first)
			reg.resetLog()
			clock.Advance(burstWindow - 500*time.Millisecond)
			resolveFreshWant(t, c, ref, first)
			if n := reg.total(); n != 0 {
				t.Errorf("registry saw %d requests for a fresh lookup within the burst window, want 0", n)
			}
			second := reg.pushImage(t, "app:v1", nil) // the tag moves
			clock.Advance(time.Second)
			resolveWant(t, c, ref, first) // within the tag TTL
			resolveFreshWant(t, c, ref, second)
			resolveWant(t, c, ref, second) // the fresh answer is kept for everyone
		},
	}, {
		desc: "a fresh lookup of a digest confirms it exists, its platforms come from the cache",
		run: func(t *testing.T, reg *testRegistry, c *Cache, clock *fakeClock) {
			d := reg.pushImage(t, "app:v1", imageFor(t, v1.Platform{OS: "linux", Architecture: "arm64"}))
			ref := reg.ref(t, "app@"+d.String())
			resolveWant(t, c, ref, d)
			if _, err := c.Platforms(t.Context(), ref.(name.Digest), nil); err != nil {
				t.Fatal(err)
			}
			reg.resetLog()
			clock.Advance(burstWindow + time.Second)
			resolveFreshWant(t, c, ref, d)
			if _, err := c.Platforms(lookup.WithFresh(t.Context()), ref.(name.Digest), nil); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(roundTrips{ManifestHEADs: 1}, reg.roundTrips()); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
		},
	}} {
		t.Run(tc.desc, func(t *testing.T) {
			clock := newFakeClock()
			reg := newTestRegistry(t)
			c := newTestCache(t, WithClock(clock.Now), WithTagTTL(tagTTL), WithNegativeTTL(negativeTTL))
			tc.run(t, reg, c, clock)
		})
	}
}

// A burst of admissions costs one request, also when what the cache held is too old to be
// used: a stale not-found answer, or a tag answer a fresh lookup will not take.
func TestBurstPastTheWindowSendsOneRequest(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		ref   string
		ctx   func(context.Context) context.Context
		found bool
	}{
		{"not-found answer past the burst window", "app:missing", func(ctx context.Context) context.Context { return ctx }, false},
		{"fresh lookups of a tag answered before the burst window", "app:v1", lookup.WithFresh, true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			clock := newFakeClock()
			reg := newTestRegistry(t)
			d := reg.pushImage(t, "app:v1", nil)
			c := newTestCache(t, WithClock(clock.Now))
			ref := reg.ref(t, tc.ref)
			_, _ = c.Resolve(t.Context(), ref, nil)
			clock.Advance(burstWindow + time.Second)
			slowAnswers(reg)
			reg.resetLog()
			concurrently(t, 200, func() error {
				got, err := c.Resolve(tc.ctx(t.Context()), ref, nil)
				switch {
				case tc.found && (err != nil || got.Digest != d):
					return fmt.Errorf("Resolve() = %s, %v; want %s", got.Digest, err, d)
				case !tc.found && lookup.KindOf(err) != lookup.KindManifestUnknown:
					return fmt.Errorf("Resolve() error = %v, want manifest unknown", err)
				}
				return nil
			})
			if n := reg.count(http.MethodHead, "/manifests/"); n != 1 {
				t.Errorf("registry saw %d manifest HEADs for 200 lookups at once, want 1", n)
			}
		})
	}
}

func resolveFreshWant(t *testing.T, c *Cache, ref name.Reference, want v1.Hash) {
	t.Helper()
	got, err := c.Resolve(lookup.WithFresh(t.Context()), ref, nil)
	if err != nil {
		t.Fatalf("fresh Resolve(%s) error = %v", ref, err)
	}
	if got.Digest != want {
		t.Fatalf("fresh Resolve(%s) = %s, want %s", ref, got.Digest, want)
	}
}

func resolveWant(t *testing.T, c *Cache, ref name.Reference, want v1.Hash) {
	t.Helper()
	resolveWantAs(t, c, ref, nil, want)
}

// Failures are not answers: the next lookup must ask the registry again.
func TestFailuresAreNotCached(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		fault func(reg *testRegistry) fault
		want  lookup.Kind
	}{
		{"500", func(*testRegistry) fault { return respond(onManifests, 500, nil, "") }, lookup.KindServerError},
		{"503", func(*testRegistry) fault { return respond(onManifests, 503, nil, "") }, lookup.KindServerError},
		{"401", func(*testRegistry) fault { return respond(onManifests, 401, nil, "") }, lookup.KindUnauthorized},
		{"403", func(*testRegistry) fault { return respond(onManifests, 403, nil, "") }, lookup.KindDenied},
		{"429 with Retry-After 0", func(*testRegistry) fault {
			return respond(onManifests, 429, map[string]string{"Retry-After": "0"}, "")
		}, lookup.KindRateLimited},
		{"timeout", func(reg *testRegistry) fault { return reg.hang(onManifests) }, lookup.KindTimeout},
		{"connection reset", func(*testRegistry) fault { return reset(onManifests) }, lookup.KindUnreachable},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			reg := newTestRegistry(t)
			d := reg.pushImage(t, "app:v1", nil)
			c := newTestCache(t, WithRequestTimeout(200*time.Millisecond))
			ref := reg.ref(t, "app:v1")

			reg.setFault(tc.fault(reg))
			_, err := c.Resolve(t.Context(), ref, nil)
			if got := lookup.KindOf(err); got != tc.want {
				t.Fatalf("Resolve() error = %v (kind %v), want kind %v", err, got, tc.want)
			}
			before := reg.count(http.MethodHead, "/manifests/")

			reg.setFault(nil)
			resolveWant(t, c, ref, d)
			if after := reg.count(http.MethodHead, "/manifests/"); after != before+1 {
				t.Errorf("manifest HEADs went from %d to %d, want one more: the failure must not be served from cache", before, after)
			}
		})
	}
}

func TestErrorClassification(t *testing.T) {
	resolve := func(ref string) func(context.Context, *Cache, *testRegistry, *testing.T) error {
		return func(ctx context.Context, c *Cache, reg *testRegistry, t *testing.T) error {
			_, err := c.Resolve(ctx, reg.ref(t, ref), nil)
			return err
		}
	}
	platforms := func(repo string) func(context.Context, *Cache, *testRegistry, *testing.T) error {
		return func(ctx context.Context, c *Cache, reg *testRegistry, t *testing.T) error {
			d, err := name.NewDigest(reg.host + "/" + repo + "@sha256:" + strings.Repeat("a", 64))
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Platforms(ctx, d, nil)
			return err
		}
	}
	tags := func(repo string) func(context.Context, *Cache, *testRegistry, *testing.T) error {
		return func(ctx context.Context, c *Cache, reg *testRegistry, t *testing.T) error {
			_, err := c.Tags(ctx, reg.repo(t, repo), nil, 10)
			return err
		}
	}
	// configOf resolves repo:v1, which exists, and asks for its platforms: what fails is the
	// read of the image's config blob.
	configOf := func(repo string) func(context.Context, *Cache, *testRegistry, *testing.T) error {
		return func(ctx context.Context, c *Cache, reg *testRegistry, t *testing.T) error {
			ref := reg.ref(t, repo+":v1")
			d, err := c.Resolve(ctx, ref, nil)
			if err != nil {
				t.Fatalf("Resolve(%s) error = %v, want the manifest found", ref, err)
			}
			_, err = c.Platforms(ctx, ref.Context().Digest(d.Digest.String()), nil)
			return err
		}
	}
	onBlobs := func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/blobs/") }
	// tokenServer makes the registry a Bearer one whose token endpoint answers with
	// status (and body) instead of a token.
	tokenServer := func(status int, body string) func(reg *testRegistry) fault {
		return func(reg *testRegistry) fault {
			bearer := reg.bearerAuth()
			return func(w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path == "/token" {
					return respond(always, status, nil, body)(w, r)
				}
				return bearer(w, r)
			}
		}
	}
	errBody := func(code string) string {
		return fmt.Sprintf(`{"errors":[{"code":%q,"message":"test"}]}`, code)
	}
	onTags := func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, "/tags/list") }
	onPing := func(r *http.Request) bool { return r.URL.Path == "/v2/" }

	for _, tc := range []struct {
		desc  string
		fault func(reg *testRegistry) fault
		call  func(context.Context, *Cache, *testRegistry, *testing.T) error
		want  errSummary // Host is filled in
	}{
		{"HEAD 404 without body is an unknown manifest", func(*testRegistry) fault { return respond(onManifests, 404, nil, "") },
			resolve("app:v1"), errSummary{Kind: lookup.KindManifestUnknown, StatusCode: 404}},
		{"HEAD 401 is unauthorized", func(*testRegistry) fault { return respond(onManifests, 401, nil, "") },
			resolve("app:v1"), errSummary{Kind: lookup.KindUnauthorized, StatusCode: 401}},
		{"HEAD 403 is denied", func(*testRegistry) fault { return respond(onManifests, 403, nil, "") },
			resolve("app:v1"), errSummary{Kind: lookup.KindDenied, StatusCode: 403}},
		{"HEAD 429 is rate limited with the Retry-After asked", func(*testRegistry) fault {
			return respond(onManifests, 429, map[string]string{"Retry-After": "7"}, "")
		}, resolve("app:v1"), errSummary{Kind: lookup.KindRateLimited, StatusCode: 429, RetryAfter: 7 * time.Second}},
		{"HEAD 429 without Retry-After is held for the default", func(*testRegistry) fault { return respond(onManifests, 429, nil, "") },
			resolve("app:v1"), errSummary{Kind: lookup.KindRateLimited, StatusCode: 429, RetryAfter: defaultRateLimitHold}},
		{"HEAD 500 is a server error", func(*testRegistry) fault { return respond(onManifests, 500, nil, "") },
			resolve("app:v1"), errSummary{Kind: lookup.KindServerError, StatusCode: 500}},
		{"HEAD 502 is a server error", func(*testRegistry) fault { return respond(onManifests, 502, nil, "") },
			resolve("app:v1"), errSummary{Kind: lookup.KindServerError, StatusCode: 502}},
		{"hanging registry is a timeout", func(reg *testRegistry) fault { return reg.hang(onManifests) },
			resolve("app:v1"), errSummary{Kind: lookup.KindTimeout}},
		{"connection reset is unreachable", func(*testRegistry) fault { return reset(onManifests) },
			resolve("app:v1"), errSummary{Kind: lookup.KindUnreachable}},
		{"/v2/ 404 is not a registry: a server error, not a verdict", func(*testRegistry) fault { return respond(onPing, 404, nil, "") },
			resolve("app:v1"), errSummary{Kind: lookup.KindServerError, StatusCode: 404}},
		{"GET of a missing repository is an unknown repository", nil,
			platforms("nosuchrepo"), errSummary{Kind: lookup.KindRepositoryUnknown, StatusCode: 404}},
		{"GET of a missing digest is an unknown manifest", nil,
			platforms("app"), errSummary{Kind: lookup.KindManifestUnknown, StatusCode: 404}},
		{"GET UNAUTHORIZED code is unauthorized", func(*testRegistry) fault { return respond(onManifests, 401, nil, errBody("UNAUTHORIZED")) },
			platforms("app"), errSummary{Kind: lookup.KindUnauthorized, StatusCode: 401}},
		{"GET DENIED code is denied", func(*testRegistry) fault { return respond(onManifests, 403, nil, errBody("DENIED")) },
			platforms("app"), errSummary{Kind: lookup.KindDenied, StatusCode: 403}},
		{"GET TOOMANYREQUESTS code is rate limited", func(*testRegistry) fault {
			return respond(onManifests, 429, map[string]string{"Retry-After": "3"}, errBody("TOOMANYREQUESTS"))
		}, platforms("app"), errSummary{Kind: lookup.KindRateLimited, StatusCode: 429, RetryAfter: 3 * time.Second}},
		{"GET 500 with an UNKNOWN body is a server error", func(*testRegistry) fault { return respond(onManifests, 500, nil, errBody("UNKNOWN")) },
			platforms("app"), errSummary{Kind: lookup.KindServerError, StatusCode: 500}},
		{"tags/list of a missing repository is an unknown repository", nil,
			tags("nosuchrepo"), errSummary{Kind: lookup.KindRepositoryUnknown, StatusCode: 404}},
		{"tags/list 404 without a code is an unknown repository", func(*testRegistry) fault { return respond(onTags, 404, nil, "") },
			tags("app"), errSummary{Kind: lookup.KindRepositoryUnknown, StatusCode: 404}},
		{"tags/list 503 is a server error", func(*testRegistry) fault { return respond(onTags, 503, nil, "") },
			tags("app"), errSummary{Kind: lookup.KindServerError, StatusCode: 503}},
		// The status of the token request is not the manifest's (the token realm went away).
		{"token endpoint 404 is a server error, not an unknown manifest", tokenServer(404, ""),
			resolve("app:v1"), errSummary{Kind: lookup.KindServerError, StatusCode: 404}},
		{"token endpoint 404 with a NAME_UNKNOWN body is a server error", tokenServer(404, errBody("NAME_UNKNOWN")),
			platforms("app"), errSummary{Kind: lookup.KindServerError, StatusCode: 404}},
		{"token endpoint 404 on a tag listing is a server error, not an unknown repository", tokenServer(404, ""),
			tags("app"), errSummary{Kind: lookup.KindServerError, StatusCode: 404}},
		{"token endpoint 401 refuses the credentials: unauthorized", tokenServer(401, errBody("UNAUTHORIZED")),
			resolve("app:v1"), errSummary{Kind: lookup.KindUnauthorized, StatusCode: 401}},
		{"token endpoint 503 is a server error", tokenServer(503, ""),
			resolve("app:v1"), errSummary{Kind: lookup.KindServerError, StatusCode: 503}},
		// The manifest was found with the credentials used: the config's failure is the
		// registry's, not a verdict about the tag or the credentials.
		{"config blob 404 is a server error, not an unknown manifest", func(*testRegistry) fault {
			return respond(onBlobs, 404, nil, errBody("BLOB_UNKNOWN"))
		}, configOf("app"), errSummary{Kind: lookup.KindServerError, StatusCode: 404}},
		{"config blob 403 is a server error, not denied", func(*testRegistry) fault { return respond(onBlobs, 403, nil, errBody("DENIED")) },
			configOf("app"), errSummary{Kind: lookup.KindServerError, StatusCode: 403}},
		{"config blob 401 is a server error, not unauthorized", func(*testRegistry) fault { return respond(onBlobs, 401, nil, "") },
			configOf("app"), errSummary{Kind: lookup.KindServerError, StatusCode: 401}},
		{"config blob redirected to storage that answers 403 is a server error", func(*testRegistry) fault {
			return func(w http.ResponseWriter, r *http.Request) bool {
				switch {
				case onBlobs(r):
					http.Redirect(w, r, "/storage/config?signature=expired", http.StatusTemporaryRedirect)
				case r.URL.Path == "/storage/config":
					w.WriteHeader(http.StatusForbidden)
				default:
					return false
				}
				return true
			}
		}, configOf("app"), errSummary{Kind: lookup.KindServerError, StatusCode: 403}},
		{"config blob 500 is a server error", func(*testRegistry) fault { return respond(onBlobs, 500, nil, "") },
			configOf("app"), errSummary{Kind: lookup.KindServerError, StatusCode: 500}},
		{"config blob 429 is rate limited", func(*testRegistry) fault {
			return respond(onBlobs, 429, map[string]string{"Retry-After": "4"}, "")
		}, configOf("app"), errSummary{Kind: lookup.KindRateLimited, StatusCode: 429, RetryAfter: 4 * time.Second}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			reg := newTestRegistry(t)
			reg.pushImage(t, "app:v1", nil)
			c := newTestCache(t, WithRequestTimeout(200*time.Millisecond))
			if tc.fault != nil {
				reg.setFault(tc.fault(reg))
			}
			err := tc.call(t.Context(), c, reg, t)
			want := tc.want
			want.Host = reg.host
			if diff := cmp.Diff(want, summarize(t, err)); diff != "" {
				t.Errorf("error (-want +got):\n%s\nerror: %v", diff, err)
			}
		})
	}

	t.Run("connection refused is unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		host := strings.TrimPrefix(srv.URL, "http://")
		srv.Close()
		c := newTestCache(t, WithRequestTimeout(time.Second))
		ref, err := name.ParseReference(host + "/app:v1")
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Resolve(t.Context(), ref, nil)
		if diff := cmp.Diff(errSummary{Kind: lookup.KindUnreachable, Host: host}, summarize(t, err)); diff != "" {
			t.Errorf("error (-want +got):\n%s\nerror: %v", diff, err)
		}
	})
}

func TestSingleflight(t *testing.T) {
	reg := newTestRegistry(t)
	d := reg.pushImage(t, "app:v1", nil)
	slowAnswers(reg)
	c := newTestCache(t)

	const callers = 200
	concurrently(t, callers, func() error {
		got, err := c.Resolve(t.Context(), reg.ref(t, "app:v1"), nil)
		if err == nil && got.Digest != d {
			err = fmt.Errorf("got digest %s, want %s", got.Digest, d)
		}
		return err
	})
	if n := reg.count(http.MethodHead, "/manifests/"); n != 1 {
		t.Errorf("registry saw %d manifest HEADs for %d concurrent lookups, want 1", n, callers)
	}
	if s := c.Stats(); s.Hits+s.Misses != callers {
		t.Errorf("Stats() = %+v, want hits+misses = %d", s, callers)
	}
}

// The shared lookup runs on its own context: the caller that started it leaving must not
// cancel it for the callers still waiting, nor keep its answer out of the cache.
func TestSharedLookupOutlivesFirstCaller(t *testing.T) {
	reg := newTestRegistry(t)
	d := reg.pushImage(t, "app:v1", nil)
	reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if onManifests(r) {
			time.Sleep(300 * time.Millisecond)
		}
		return false
	})
	c := newTestCache(t)
	ref := reg.ref(t, "app:v1")

	firstCtx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	firstErr := make(chan error, 1)
	go func() {
		_, err := c.Resolve(firstCtx, ref, nil)
		firstErr <- err
	}()
	for reg.count(http.MethodHead, "/manifests/") == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	resolveWant(t, c, ref, d) // joins the lookup in flight
	if err := <-firstErr; lookup.KindOf(err) != lookup.KindTimeout {
		t.Errorf("first caller error = %v, want its own timeout", err)
	}
	resolveWant(t, c, ref, d) // from the cache
	if n := reg.count(http.MethodHead, "/manifests/"); n != 1 {
		t.Errorf("registry saw %d manifest HEADs, want 1", n)
	}
}

// A result obtained with credentials must not be served to a request without them or with
// other ones, and the credentials must not appear in keys, errors or metrics.
func TestCredentialIsolation(t *testing.T) {
	const user, password = "alice", "s3cret-A-pw"
	reg := newTestRegistry(t)
	d := reg.pushImage(t, "private:v1", nil)
	reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if u, p, ok := r.BasicAuth(); ok && u == user && p == password {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="pullgate-test"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	})
	c := newTestCache(t)
	ref := reg.ref(t, "private:v1")
	alice := authn.FromConfig(authn.AuthConfig{Username: user, Password: password})
	mallory := authn.FromConfig(authn.AuthConfig{Username: "mallory", Password: "guess"})

	var errs []error
	for _, step := range []struct {
		desc      string
		auth      authn.Authenticator
		wantKind  lookup.Kind
		wantHEADs int
	}{
		{"with the right credentials", alice, 0, 1},
		{"without credentials asks the registry again", nil, lookup.KindUnauthorized, 2},
		{"anonymous asks the registry again", authn.Anonymous, lookup.KindUnauthorized, 3},
		{"with other credentials asks the registry again", mallory, lookup.KindUnauthorized, 4},
		{"with the right credentials again is served from cache", alice, 0, 4},
	} {
		got, err := c.Resolve(t.Context(), ref, step.auth)
		if lookup.KindOf(err) != step.wantKind {
			t.Fatalf("%s: Resolve() error = %v, want kind %v", step.desc, err, step.wantKind)
		}
		if err == nil && got.Digest != d {
			t.Fatalf("%s: Resolve() = %s, want %s", step.desc, got.Digest, d)
		}
		if err != nil {
			errs = append(errs, err)
		}
		if n := reg.count(http.MethodHead, "/manifests/"); n != step.wantHEADs {
			t.Fatalf("%s: registry saw %d manifest HEADs, want %d", step.desc, n, step.wantHEADs)
		}
	}
	if _, err := c.Platforms(t.Context(), reg.ref(t, "private@"+d.String()).(name.Digest), mallory); lookup.KindOf(err) != lookup.KindUnauthorized {
		t.Errorf("Platforms() with other credentials error = %v, want unauthorized", err)
	}

	secrets := []string{password, user}
	var texts []string
	texts = append(texts, c.content.Keys()...)
	texts = append(texts, c.tags.Keys()...)
	texts = append(texts, c.negative.Keys()...)
	texts = append(texts, c.transports.Keys()...)
	for _, err := range errs {
		texts = append(texts, err.Error())
	}
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				texts = append(texts, l.GetValue())
			}
		}
	}
	for _, text := range texts {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%q contains the credential %q", text, s)
			}
		}
	}
}

func TestHostConcurrencyLimit(t *testing.T) {
	const limit = 2
	reg := newTestRegistry(t)
	for i := range 8 {
		reg.pushImage(t, fmt.Sprintf("app:v%d", i), nil)
	}
	var inFlight, maxInFlight atomic.Int32
	reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
		reg.reg.ServeHTTP(w, r)
		return true
	})
	c := newTestCache(t, WithHostConcurrency(limit))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if _, err := c.Resolve(t.Context(), reg.ref(t, fmt.Sprintf("app:v%d", i)), nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if m := maxInFlight.Load(); m > limit {
		t.Errorf("registry saw %d requests in flight at once, want at most %d", m, limit)
	}
}

func TestAcquireRespectsContext(t *testing.T) {
	c := newTestCache(t, WithHostConcurrency(1))
	release, err := c.acquire(t.Context(), "registry.example")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.acquire(ctx, "registry.example"); err == nil {
		t.Fatal("acquire() of a full host succeeded, want an error when the context ends")
	}
	other, err := c.acquire(t.Context(), "other.example")
	if err != nil {
		t.Fatalf("acquire() of another host error = %v, want a slot: limits are per host", err)
	}
	other()
}

func TestRetryAfter(t *testing.T) {
	clock := newFakeClock()
	reg := newTestRegistry(t)
	d := reg.pushImage(t, "app:v1", nil)
	reg.pushImage(t, "app:v2", nil)
	c := newTestCache(t, WithClock(clock.Now))
	reg.setFault(respond(onManifests, 429, map[string]string{"Retry-After": "30"}, ""))

	_, err := c.Resolve(t.Context(), reg.ref(t, "app:v1"), nil)
	if diff := cmp.Diff(errSummary{Kind: lookup.KindRateLimited, Host: reg.host, StatusCode: 429, RetryAfter: 30 * time.Second}, summarize(t, err)); diff != "" {
		t.Fatalf("first error (-want +got):\n%s", diff)
	}
	reg.setFault(nil)
	reg.resetLog()

	clock.Advance(10 * time.Second)
	for _, call := range []struct {
		desc string
		do   func() error
	}{
		{"same tag", func() error { _, err := c.Resolve(t.Context(), reg.ref(t, "app:v1"), nil); return err }},
		{"other tag", func() error { _, err := c.Resolve(t.Context(), reg.ref(t, "app:v2"), nil); return err }},
		{"tags", func() error { _, err := c.Tags(t.Context(), reg.repo(t, "app"), nil, 10); return err }},
	} {
		err := call.do()
		if diff := cmp.Diff(errSummary{Kind: lookup.KindRateLimited, Host: reg.host, RetryAfter: 20 * time.Second}, summarize(t, err)); diff != "" {
			t.Errorf("%s: error while held (-want +got):\n%s", call.desc, diff)
		}
	}
	if n := reg.total(); n != 0 {
		t.Errorf("registry saw %d requests before Retry-After passed, want 0", n)
	}

	clock.Advance(21 * time.Second)
	resolveWant(t, c, reg.ref(t, "app:v1"), d)
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		desc   string
		header string
		want   time.Duration
		wantOK bool
	}{
		{"seconds", "120", 2 * time.Minute, true},
		{"zero", "0", 0, true},
		{"HTTP date", now.Add(45 * time.Second).Format(http.TimeFormat), 45 * time.Second, true},
		{"HTTP date in the past", now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"capped", "999999999", maxRateLimitHold, true},
		{"empty", "", 0, false},
		{"negative", "-5", 0, false},
		{"garbage", "soon", 0, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, ok := parseRetryAfter(tc.header, now)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.header, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

// A hanging registry costs one timeout per breaker window, not one per lookup.
func TestCircuitBreaker(t *testing.T) {
	const window = 30 * time.Second
	clock := newFakeClock()
	reg := newTestRegistry(t)
	d := reg.pushImage(t, "app:v1", nil)
	c := newTestCache(t, WithClock(clock.Now), WithBreaker(2, window), WithRequestTimeout(150*time.Millisecond))
	ref := reg.ref(t, "app:v1")
	reg.setFault(reg.hang(always))

	wantKind := func(desc string, err error, kind lookup.Kind, text string) {
		t.Helper()
		if lookup.KindOf(err) != kind || !strings.Contains(fmt.Sprint(err), text) {
			t.Fatalf("%s: error = %v, want kind %v mentioning %q", desc, err, kind, text)
		}
	}
	for i := range 2 {
		_, err := c.Resolve(t.Context(), ref, nil)
		wantKind(fmt.Sprintf("lookup %d", i), err, lookup.KindTimeout, "")
	}
	if n := reg.total(); n != 2 {
		t.Fatalf("registry saw %d requests for 2 failing lookups, want 2", n)
	}

	start := time.Now()
	for i := range 20 {
		_, err := c.Resolve(t.Context(), ref, nil)
		wantKind(fmt.Sprintf("open lookup %d", i), err, lookup.KindUnreachable, "circuit breaker open until")
	}
	_, err := c.Tags(t.Context(), reg.repo(t, "app"), nil, 10)
	wantKind("tags while open", err, lookup.KindUnreachable, "circuit breaker open")
	if elapsed := time.Since(start); elapsed > 100*time.Millisecond {
		t.Errorf("21 lookups on an open circuit took %v, want them to fail at once", elapsed)
	}
	if n := reg.total(); n != 2 {
		t.Fatalf("registry saw %d requests, want still 2 while the circuit is open", n)
	}

	// After the window: one trial; while it is in flight others still fail at once.
	clock.Advance(window + time.Second)
	trial := make(chan error, 1)
	go func() {
		_, err := c.Resolve(t.Context(), ref, nil)
		trial <- err
	}()
	for reg.total() == 2 {
		time.Sleep(5 * time.Millisecond)
	}
	_, err = c.Resolve(t.Context(), reg.ref(t, "app:other"), nil)
	wantKind("lookup during the trial", err, lookup.KindUnreachable, "trial request is in flight")
	wantKind("trial", <-trial, lookup.KindTimeout, "")
	_, err = c.Resolve(t.Context(), ref, nil)
	wantKind("after a failed trial", err, lookup.KindUnreachable, "circuit breaker open until")
	if n := reg.total(); n != 3 {
		t.Fatalf("registry saw %d requests, want 3 (one trial in the second window)", n)
	}

	// The registry recovers: the next trial succeeds and closes the circuit.
	reg.setFault(nil)
	clock.Advance(window + time.Second)
	resolveWant(t, c, ref, d)
	if _, err := c.Resolve(t.Context(), reg.ref(t, "app:other"), nil); lookup.KindOf(err) != lookup.KindManifestUnknown {
		t.Errorf("after recovery: error = %v, want the registry's answer (manifest unknown)", err)
	}
}

// Verdicts are answers: they must not open the circuit.
func TestCircuitBreakerIgnoresVerdicts(t *testing.T) {
	reg := newTestRegistry(t)
	d := reg.pushImage(t, "app:v1", nil)
	c := newTestCache(t, WithBreaker(1, time.Hour), WithNegativeTTL(0))
	for range 3 {
		if _, err := c.Resolve(t.Context(), reg.ref(t, "app:missing"), nil); lookup.KindOf(err) != lookup.KindManifestUnknown {
			t.Fatalf("Resolve() error = %v, want manifest unknown", err)
		}
	}
	reg.setFault(respond(onManifests, 401, nil, ""))
	if _, err := c.Resolve(t.Context(), reg.ref(t, "app:v1"), nil); lookup.KindOf(err) != lookup.KindUnauthorized {
		t.Fatalf("Resolve() error = %v, want unauthorized", err)
	}
	reg.setFault(nil)
	resolveWant(t, c, reg.ref(t, "app:v1"), d)
}

func TestPlatforms(t *testing.T) {
	reg := newTestRegistry(t)
	want := []v1.Platform{
		{OS: "linux", Architecture: "amd64"},
		{OS: "linux", Architecture: "arm64", Variant: "v8"},
		{OS: "windows", Architecture: "amd64", OSVersion: "10.0.17763.1"},
	}
	idx := reg.pushIndex(t, "multi:v1", multiArch(t, want...))
	single := reg.pushImage(t, "single:v1", imageFor(t, v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}))
	clock := newFakeClock()
	c := newTestCache(t, WithClock(clock.Now))

	for _, tc := range []struct {
		desc string
		ref  string
		want []v1.Platform
	}{
		{"index lists its platforms, without attestations or entries lacking one", "multi@" + idx.String(), want},
		{"image gives the platform of its config", "single@" + single.String(), []v1.Platform{{OS: "linux", Architecture: "arm", Variant: "v7"}}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ref := reg.ref(t, tc.ref).(name.Digest)
			got, err := c.Platforms(t.Context(), ref, nil)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Platforms() (-want +got):\n%s", diff)
			}
			got[0].OS = "mutated" // callers get their own copy

			reg.resetLog()
			clock.Advance(1000 * time.Hour)
			again, err := c.Platforms(t.Context(), ref, nil)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, again); diff != "" {
				t.Errorf("cached Platforms() (-want +got):\n%s", diff)
			}
			if n := reg.total(); n != 0 {
				t.Errorf("registry saw %d requests for cached platforms, want 0", n)
			}
		})
	}
}

func TestTags(t *testing.T) {
	reg := newTestRegistry(t)
	var all []string
	for i := range 10 {
		tag := fmt.Sprintf("t%02d", i)
		all = append(all, tag)
		reg.pushImage(t, "app:"+tag, nil)
	}
	// Serve tags/list three at a time with Link headers, as paginating registries do.
	reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, "/tags/list") {
			return false
		}
		q := r.URL.Query()
		q.Set("n", "3")
		inner := r.Clone(r.Context())
		inner.URL.RawQuery = q.Encode()
		rec := httptest.NewRecorder()
		reg.reg.ServeHTTP(rec, inner)
		var page struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
			panic(err)
		}
		if len(page.Tags) == 3 {
			w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?n=3&last=%s>; rel="next"`, page.Name, page.Tags[2]))
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(rec.Body.Bytes())
		return true
	})
	c := newTestCache(t)

	for _, tc := range []struct {
		desc      string
		limit     int
		want      []string
		wantPages int
	}{
		{"stops paging at the limit", 5, all[:5], 2},
		{"pages to the end when the limit is larger", 20, all, 4},
		{"limit below 1 asks nothing", 0, nil, 0},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			reg.resetLog()
			got, err := c.Tags(t.Context(), reg.repo(t, "app"), nil, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Tags() (-want +got):\n%s", diff)
			}
			if n := reg.count(http.MethodGet, "/tags/list"); n != tc.wantPages {
				t.Errorf("registry saw %d tags/list requests, want %d", n, tc.wantPages)
			}
			reg.resetLog()
			if _, err := c.Tags(t.Context(), reg.repo(t, "app"), nil, tc.limit); err != nil {
				t.Fatal(err)
			}
			if n := reg.total(); n != 0 {
				t.Errorf("second Tags() made %d requests, want 0 (cached)", n)
			}
		})
	}
}

// Some registries answer HEAD without the headers that make it useful; a GET stands in.
func TestResolveFallsBackToGet(t *testing.T) {
	reg := newTestRegistry(t)
	d := reg.pushImage(t, "app:v1", nil)
	reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodHead || !onManifests(r) {
			return false
		}
		rec := httptest.NewRecorder()
		reg.reg.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			if k != "Docker-Content-Digest" {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(rec.Code)
		return true
	})
	c := newTestCache(t)
	resolveWant(t, c, reg.ref(t, "app:v1"), d)
	if h, g := reg.count(http.MethodHead, "/manifests/"), reg.count(http.MethodGet, "/manifests/"); h != 1 || g != 1 {
		t.Errorf("registry saw %d HEADs and %d GETs of the manifest, want 1 and 1", h, g)
	}
}

func TestMetrics(t *testing.T) {
	reg := newTestRegistry(t)
	d := reg.pushImage(t, "metricsrepo:v1", nil)
	c := newTestCache(t)
	resolveWant(t, c, reg.ref(t, "metricsrepo:v1"), d)
	resolveWant(t, c, reg.ref(t, "metricsrepo:v1"), d)

	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "pullgate_") {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
				if strings.Contains(l.GetValue(), "metricsrepo") {
					t.Errorf("%s has label %s=%q naming the image", f.GetName(), l.GetName(), l.GetValue())
				}
			}
			switch {
			case f.GetName() == "pullgate_registry_requests_total" && labels["host"] == reg.host &&
				labels["method"] == http.MethodHead && labels["code"] == "200":
				found["requests"] = true
			case f.GetName() == "pullgate_registry_request_duration_seconds" && labels["host"] == reg.host:
				found["duration"] = true
			case f.GetName() == "pullgate_cache_lookups_total" && labels["cache"] == cacheManifest && labels["result"] == "hit":
				found["hit"] = true
			case f.GetName() == "pullgate_cache_lookups_total" && labels["cache"] == cacheManifest && labels["result"] == "miss":
				found["miss"] = true
			}
		}
	}
	if diff := cmp.Diff(map[string]bool{"requests": true, "duration": true, "hit": true, "miss": true}, found); diff != "" {
		t.Errorf("metrics found (-want +got):\n%s", diff)
	}
	if s := c.Stats(); s.Hits != 1 || s.Misses != 1 || s.Requests < 2 {
		t.Errorf("Stats() = %+v, want 1 hit, 1 miss, at least 2 requests (ping, HEAD)", s)
	}
}

func TestOptions(t *testing.T) {
	now := func() time.Time { return time.Time{} }
	for _, tc := range []struct {
		desc     string
		opts     []Option
		want     options
		wantDial DialPolicy
	}{{
		desc: "defaults",
		want: options{
			tagTTL: 5 * time.Minute, negativeTTL: 2 * time.Second, maxEntries: 10000,
			hostConcurrency: 8, breakerFailures: 3, breakerOpenFor: 30 * time.Second,
			requestTimeout: 10 * time.Second, userAgent: "pullgate",
		},
	}, {
		desc: "out-of-range values keep defaults, zero TTLs disable caching",
		opts: []Option{
			WithTagTTL(0), WithNegativeTTL(-time.Second), WithMaxEntries(0), WithHostConcurrency(-1),
			WithBreaker(0, 0), WithRequestTimeout(0), WithUserAgent(""), WithClock(nil), WithTransport(nil),
		},
		want: options{
			maxEntries: 10000, hostConcurrency: 8, breakerOpenFor: 30 * time.Second,
			requestTimeout: 10 * time.Second, userAgent: "pullgate",
		},
	}, {
		desc: "a negative TTL above the burst window is held to it",
		opts: []Option{WithNegativeTTL(time.Minute)},
		want: options{
			tagTTL: 5 * time.Minute, negativeTTL: 2 * time.Second, maxEntries: 10000,
			hostConcurrency: 8, breakerFailures: 3, breakerOpenFor: 30 * time.Second,
			requestTimeout: 10 * time.Second, userAgent: "pullgate",
		},
	}, {
		desc: "values are taken",
		opts: []Option{
			WithTagTTL(time.Minute), WithNegativeTTL(time.Second), WithMaxEntries(5), WithHostConcurrency(2),
			WithBreaker(7, time.Minute), WithRequestTimeout(time.Second), WithUserAgent("ua"), WithClock(now),
			WithDialPolicy(DialPolicy{AllowPrivateNetworks: true}),
		},
		want: options{
			tagTTL: time.Minute, negativeTTL: time.Second, maxEntries: 5, hostConcurrency: 2,
			breakerFailures: 7, breakerOpenFor: time.Minute, requestTimeout: time.Second, userAgent: "ua",
		},
		wantDial: DialPolicy{AllowPrivateNetworks: true},
	}} {
		t.Run(tc.desc, func(t *testing.T) {
			got := makeOptions(tc.opts...)
			if got.now == nil || got.lookupIP == nil || got.proxy == nil || got.dialPolicy == nil {
				t.Fatal("makeOptions() left a function unset")
			}
			if dial := got.dialPolicy(); dial != tc.wantDial {
				t.Errorf("dial policy = %+v, want %+v", dial, tc.wantDial)
			}
			got.now, got.lookupIP, got.proxy, got.dialPolicy = nil, nil, nil, nil
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(options{})); diff != "" {
				t.Errorf("makeOptions() (-want +got):\n%s", diff)
			}
		})
	}
}

// Under lookup.WithCacheOnly a question the cache cannot answer fails at once with
// ErrNotCached and sends nothing; cached answers, positive and negative, come back as usual.
func TestCacheOnly(t *testing.T) {
	reg := newTestRegistry(t)
	d := reg.pushImage(t, "app:v1", nil)
	c := newTestCache(t)
	cacheOnly := lookup.WithCacheOnly(t.Context())

	if _, err := c.Resolve(cacheOnly, reg.ref(t, "app:v1"), nil); !errors.Is(err, lookup.ErrNotCached) {
		t.Fatalf("uncached Resolve: error = %v, want ErrNotCached", err)
	}
	if _, err := c.Platforms(cacheOnly, reg.ref(t, "app@"+d.String()).(name.Digest), nil); !errors.Is(err, lookup.ErrNotCached) {
		t.Fatalf("uncached Platforms: error = %v, want ErrNotCached", err)
	}
	if _, err := c.Tags(cacheOnly, reg.repo(t, "app"), nil, 10); !errors.Is(err, lookup.ErrNotCached) {
		t.Fatalf("uncached Tags: error = %v, want ErrNotCached", err)
	}
	if n := reg.total(); n != 0 {
		t.Fatalf("registry saw %d requests for cache-only lookups, want 0", n)
	}

	resolveWant(t, c, reg.ref(t, "app:v1"), d)
	if _, err := c.Resolve(t.Context(), reg.ref(t, "app:nope"), nil); lookup.KindOf(err) != lookup.KindManifestUnknown {
		t.Fatalf("missing tag: error = %v, want manifest unknown", err)
	}
	sent := reg.total()
	got, err := c.Resolve(cacheOnly, reg.ref(t, "app:v1"), nil)
	if err != nil || got.Digest != d {
		t.Errorf("cached Resolve: %v, %v; want %s", got.Digest, err, d)
	}
	if _, err := c.Resolve(cacheOnly, reg.ref(t, "app:nope"), nil); lookup.KindOf(err) != lookup.KindManifestUnknown {
		t.Errorf("negative-cached Resolve: error = %v, want the cached manifest unknown", err)
	}
	if n := reg.total(); n != sent {
		t.Errorf("registry saw %d more requests for cached answers, want 0", n-sent)
	}
}
