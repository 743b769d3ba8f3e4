package registrycache

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pullgate/pullgate/pkg/lookup"
)

// roundTrips counts what a registry was asked, by endpoint.
type roundTrips struct {
	Pings, Tokens, ManifestHEADs, ManifestGETs, BlobGETs, Other int
}

func (r *testRegistry) roundTrips() roundTrips {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n roundTrips
	for _, l := range r.log {
		m, p, _ := strings.Cut(l, " ")
		switch {
		case p == "/v2/":
			n.Pings++
		case p == "/token":
			n.Tokens++
		case strings.Contains(p, "/manifests/") && m == http.MethodHead:
			n.ManifestHEADs++
		case strings.Contains(p, "/manifests/") && m == http.MethodGet:
			n.ManifestGETs++
		case strings.Contains(p, "/blobs/") && m == http.MethodGet:
			n.BlobGETs++
		default:
			n.Other++
		}
	}
	return n
}

// basicAuth answers 401 with a Basic challenge to requests without user's credentials.
func basicAuth(user, password string) fault {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if u, p, ok := r.BasicAuth(); ok && u == user && p == password {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="pullgate-test"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	}
}

// bearerAuth makes the registry a Bearer one with its token server at /token, handing out
// a token per repository, as Docker Hub does: a token for one repository does not open
// another.
func (r *testRegistry) bearerAuth() fault {
	tokenFor := func(scope string) string {
		return "token-" + strings.NewReplacer(":", "-", "/", "-").Replace(scope)
	}
	return func(w http.ResponseWriter, req *http.Request) bool {
		if req.URL.Path == "/token" {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"token":%q}`, tokenFor(req.URL.Query().Get("scope")))
			return true
		}
		challenge := fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, r.host)
		if rest, ok := strings.CutPrefix(req.URL.Path, "/v2/"); ok {
			for _, sep := range []string{"/manifests/", "/blobs/", "/tags/"} {
				if repo, _, ok := strings.Cut(rest, sep); ok {
					scope := "repository:" + repo + ":pull"
					if req.Header.Get("Authorization") == "Bearer "+tokenFor(scope) {
						return false
					}
					challenge += fmt.Sprintf(`,scope=%q`, scope)
					break
				}
			}
		}
		w.Header().Set("WWW-Authenticate", challenge)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	}
}

type registryAuth int

const (
	anonymousRegistry registryAuth = iota
	basicRegistry
	bearerRegistry
)

var alice = authn.FromConfig(authn.AuthConfig{Username: "alice", Password: "s3cret-A-pw"})

// rtEnv is a registry with an auth scheme and a Cache asking it, for counting round trips.
type rtEnv struct {
	t        *testing.T
	reg      *testRegistry
	c        *Cache
	clock    *fakeClock
	auth     authn.Authenticator
	fault    fault
	insecure bool // references name insecure.test (plain HTTP by name.Insecure)
	digests  map[string]v1.Hash
}

// push pushes img as repoTag past the registry's auth and returns its digest.
func (e *rtEnv) push(repoTag string, img v1.Image) v1.Hash {
	e.t.Helper()
	e.reg.setFault(nil)
	defer e.reg.setFault(e.fault)
	d := e.reg.pushImage(e.t, repoTag, img)
	e.digests[repoTag] = d
	return d
}

func (e *rtEnv) pushIndex(repoTag string, platforms ...v1.Platform) v1.Hash {
	e.t.Helper()
	e.reg.setFault(nil)
	defer e.reg.setFault(e.fault)
	d := e.reg.pushIndex(e.t, repoTag, multiArch(e.t, platforms...))
	e.digests[repoTag] = d
	return d
}

func (e *rtEnv) ref(s string) name.Reference {
	e.t.Helper()
	if !e.insecure {
		return e.reg.ref(e.t, s)
	}
	_, port, _ := strings.Cut(e.reg.host, ":")
	ref, err := name.ParseReference("insecure.test:"+port+"/"+s, name.Insecure)
	if err != nil {
		e.t.Fatal(err)
	}
	return ref
}

// check resolves ref (with the platforms hint when hint is set), asks for the platforms
// of the digest, and compares them with want.
func (e *rtEnv) check(ref string, hint bool, want ...v1.Platform) {
	e.t.Helper()
	ctx := e.t.Context()
	if hint {
		ctx = lookup.WithPlatformsWanted(ctx)
	}
	r := e.ref(ref)
	d, err := e.c.Resolve(ctx, r, e.auth)
	if err != nil {
		e.t.Fatalf("Resolve(%s) error = %v", r, err)
	}
	got, err := e.c.Platforms(ctx, r.Context().Digest(d.Digest.String()), e.auth)
	if err != nil {
		e.t.Fatalf("Platforms(%s) error = %v", r, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		e.t.Errorf("Platforms(%s) (-want +got):\n%s", r, diff)
	}
}

const hint, noHint = true, false

func TestRoundTrips(t *testing.T) {
	const tagTTL = 5 * time.Minute
	arm64 := v1.Platform{OS: "linux", Architecture: "arm64"}
	amd64 := v1.Platform{OS: "linux", Architecture: "amd64"}
	// secondRepositorySetup pushes two repositories and looks the first up, so that the
	// registry has been pinged when the second is.
	secondRepositorySetup := func(e *rtEnv) {
		e.push("app:v1", imageFor(e.t, arm64))
		e.push("other:v1", imageFor(e.t, amd64))
		e.check("app:v1", hint, arm64)
	}
	for _, tc := range []struct {
		desc     string
		auth     registryAuth
		insecure bool
		// setup pushes and looks up what run builds on; only run's requests are counted.
		setup func(e *rtEnv)
		run   func(e *rtEnv)
		want  roundTrips
		// transports is how many transports the Cache keeps after run: one per registry
		// and identity, but one per repository for a Bearer registry.
		transports int
	}{{
		desc:       "new single-arch tag with the hint: ping, manifest GET, config GET",
		setup:      func(e *rtEnv) { e.push("app:v1", imageFor(e.t, arm64)) },
		run:        func(e *rtEnv) { e.check("app:v1", hint, arm64) },
		want:       roundTrips{Pings: 1, ManifestGETs: 1, BlobGETs: 1},
		transports: 1,
	}, {
		desc:       "new index with the hint: its platforms come with the one manifest GET",
		setup:      func(e *rtEnv) { e.pushIndex("multi:v1", amd64, arm64) },
		run:        func(e *rtEnv) { e.check("multi:v1", hint, amd64, arm64) },
		want:       roundTrips{Pings: 1, ManifestGETs: 1},
		transports: 1,
	}, {
		desc:       "without the hint: HEAD, then Platforms GETs the manifest and the config",
		setup:      func(e *rtEnv) { e.push("app:v1", imageFor(e.t, arm64)) },
		run:        func(e *rtEnv) { e.check("app:v1", noHint, arm64) },
		want:       roundTrips{Pings: 1, ManifestHEADs: 1, ManifestGETs: 1, BlobGETs: 1},
		transports: 1,
	}, {
		desc:       "new digest reference with the hint: GET by digest, config GET",
		setup:      func(e *rtEnv) { e.push("app:v1", imageFor(e.t, arm64)) },
		run:        func(e *rtEnv) { e.check("app@"+e.digests["app:v1"].String(), hint, arm64) },
		want:       roundTrips{Pings: 1, ManifestGETs: 1, BlobGETs: 1},
		transports: 1,
	}, {
		desc:       "second repository on an anonymous registry: no second ping",
		setup:      secondRepositorySetup,
		run:        func(e *rtEnv) { e.check("other:v1", hint, amd64) },
		want:       roundTrips{ManifestGETs: 1, BlobGETs: 1},
		transports: 1,
	}, {
		desc:       "second repository on a Basic registry: no second ping",
		auth:       basicRegistry,
		setup:      secondRepositorySetup,
		run:        func(e *rtEnv) { e.check("other:v1", hint, amd64) },
		want:       roundTrips{ManifestGETs: 1, BlobGETs: 1},
		transports: 1,
	}, {
		desc:       "second repository on an insecure (plain HTTP) registry: no second ping",
		insecure:   true,
		setup:      secondRepositorySetup,
		run:        func(e *rtEnv) { e.check("other:v1", hint, amd64) },
		want:       roundTrips{ManifestGETs: 1, BlobGETs: 1},
		transports: 1,
	}, {
		desc:       "new tag on a Bearer registry: ping, token, manifest GET, config GET",
		auth:       bearerRegistry,
		setup:      func(e *rtEnv) { e.push("app:v1", imageFor(e.t, arm64)) },
		run:        func(e *rtEnv) { e.check("app:v1", hint, arm64) },
		want:       roundTrips{Pings: 1, Tokens: 1, ManifestGETs: 1, BlobGETs: 1},
		transports: 1,
	}, {
		desc:       "second repository on a Bearer registry: its own token, no second ping",
		auth:       bearerRegistry,
		setup:      secondRepositorySetup,
		run:        func(e *rtEnv) { e.check("other:v1", hint, amd64) },
		want:       roundTrips{Tokens: 1, ManifestGETs: 1, BlobGETs: 1},
		transports: 2,
	}, {
		desc: "tag TTL expired, digest unchanged: one HEAD",
		setup: func(e *rtEnv) {
			e.push("app:v1", imageFor(e.t, arm64))
			e.check("app:v1", hint, arm64)
			e.clock.Advance(tagTTL + time.Second)
		},
		run:        func(e *rtEnv) { e.check("app:v1", hint, arm64) },
		want:       roundTrips{ManifestHEADs: 1},
		transports: 1,
	}, {
		desc: "tag TTL expired, tag moved: HEAD, then the new manifest and config",
		setup: func(e *rtEnv) {
			e.push("app:v1", imageFor(e.t, arm64))
			e.check("app:v1", hint, arm64)
			e.push("app:v1", imageFor(e.t, amd64))
			e.clock.Advance(tagTTL + time.Second)
		},
		run:        func(e *rtEnv) { e.check("app:v1", hint, amd64) },
		want:       roundTrips{ManifestHEADs: 1, ManifestGETs: 1, BlobGETs: 1},
		transports: 1,
	}, {
		desc: "digest whose platforms are kept, with the hint: HEAD",
		setup: func(e *rtEnv) {
			d := e.push("app:v1", imageFor(e.t, arm64))
			if _, err := e.c.Platforms(e.t.Context(), e.ref("app@"+d.String()).(name.Digest), e.auth); err != nil {
				e.t.Fatal(err)
			}
		},
		run:        func(e *rtEnv) { e.check("app@"+e.digests["app:v1"].String(), hint, arm64) },
		want:       roundTrips{ManifestHEADs: 1},
		transports: 1,
	}} {
		t.Run(tc.desc, func(t *testing.T) {
			reg := newTestRegistry(t)
			clock := newFakeClock()
			opts := []Option{WithClock(clock.Now), WithTagTTL(tagTTL)}
			if tc.insecure {
				opts = append(opts, withResolver(map[string][]netip.Addr{"insecure.test": {netip.MustParseAddr("127.0.0.1")}}))
			}
			e := &rtEnv{t: t, reg: reg, c: newTestCache(t, opts...), clock: clock, insecure: tc.insecure,
				digests: map[string]v1.Hash{}}
			switch tc.auth {
			case basicRegistry:
				e.fault, e.auth = basicAuth("alice", "s3cret-A-pw"), alice
			case bearerRegistry:
				e.fault, e.auth = reg.bearerAuth(), alice
			}
			reg.setFault(e.fault)
			tc.setup(e)
			reg.resetLog()
			tc.run(e)
			if diff := cmp.Diff(tc.want, reg.roundTrips()); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
			if n := e.c.transports.Len(); n != tc.transports {
				t.Errorf("the Cache keeps %d transports, want %d", n, tc.transports)
			}
		})
	}
}

// switchableAuth is an Authenticator whose answer can change, as one reading a
// refreshed secret does.
type switchableAuth struct {
	mu  sync.Mutex
	cfg authn.AuthConfig
}

func (a *switchableAuth) Authorization() (*authn.AuthConfig, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cfg := a.cfg
	return &cfg, nil
}

func (a *switchableAuth) set(cfg authn.AuthConfig) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cfg = cfg
}

// Transports are shared across repositories, never across credentials: each lookup sends
// exactly its own credentials, whatever transports other lookups built.
func TestSharedTransportsKeepCredentialsApart(t *testing.T) {
	reg := newTestRegistry(t)
	reg.pushImage(t, "app:v1", nil)
	reg.pushImage(t, "other:v1", nil)
	var (
		mu   sync.Mutex
		sent = map[string]bool{} // users whose credentials reached the registry API
	)
	valid := map[string]string{"alice": "s3cret-A-pw", "bob": "s3cret-B-pw"}
	reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		u, p, _ := r.BasicAuth()
		if r.URL.Path != "/v2/" {
			mu.Lock()
			sent[u] = true
			mu.Unlock()
		}
		if pw, ok := valid[u]; ok && p == pw {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="pullgate-test"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	})
	c := newTestCache(t)

	// Built from the first answer of an Authenticator that then answers otherwise, alice's
	// transport must still send alice's credentials.
	changing := &switchableAuth{cfg: authn.AuthConfig{Username: "alice", Password: valid["alice"]}}
	bob := authn.FromConfig(authn.AuthConfig{Username: "bob", Password: valid["bob"]})
	mallory := authn.FromConfig(authn.AuthConfig{Username: "mallory", Password: "guess"})
	for _, step := range []struct {
		desc     string
		auth     authn.Authenticator
		ref      string
		wantKind lookup.Kind
		wantSent string
	}{
		{"alice", changing, "app:v1", 0, "alice"},
		{"bob, another repository", bob, "other:v1", 0, "bob"},
		{"anonymous", authn.Anonymous, "other:v1", lookup.KindUnauthorized, ""},
		{"mallory", mallory, "app:v1", lookup.KindUnauthorized, "mallory"},
		{"alice, another repository, after her Authenticator changed", alice, "other:v1", 0, "alice"},
		{"bob, the first repository", bob, "app:v1", 0, "bob"},
	} {
		if step.desc == "mallory" {
			changing.set(authn.AuthConfig{Username: "mallory", Password: "guess"})
		}
		mu.Lock()
		clear(sent)
		mu.Unlock()
		_, err := c.Resolve(t.Context(), reg.ref(t, step.ref), step.auth)
		if lookup.KindOf(err) != step.wantKind {
			t.Fatalf("%s: Resolve() error = %v, want kind %v", step.desc, err, step.wantKind)
		}
		mu.Lock()
		if diff := cmp.Diff(map[string]bool{step.wantSent: true}, sent); diff != "" {
			t.Errorf("%s: credentials sent (-want +got):\n%s", step.desc, diff)
		}
		mu.Unlock()
	}
	if n := reg.roundTrips().Pings; n != 1 {
		t.Errorf("registry saw %d pings, want 1 (the answer is the registry's, whoever asks)", n)
	}
}

// A ping answer is kept only while it holds.
func TestPingAnswerLifetime(t *testing.T) {
	const window = 30 * time.Second
	onPing := func(r *http.Request) bool { return r.URL.Path == "/v2/" }
	for _, tc := range []struct {
		desc string
		run  func(t *testing.T, reg *testRegistry, c *Cache, clock *fakeClock, d v1.Hash)
		// wantPings counts the whole run.
		wantPings int
	}{{
		desc: "a failed ping is not kept",
		run: func(t *testing.T, reg *testRegistry, c *Cache, clock *fakeClock, d v1.Hash) {
			reg.setFault(respond(onPing, http.StatusServiceUnavailable, nil, ""))
			if _, err := c.Resolve(t.Context(), reg.ref(t, "app:v1"), nil); lookup.KindOf(err) != lookup.KindServerError {
				t.Fatalf("Resolve() error = %v, want a server error", err)
			}
			reg.setFault(nil)
			clock.Advance(window + time.Second) // the failure opened the circuit
			resolveWant(t, c, reg.ref(t, "app:v1"), d)
		},
		wantPings: 2,
	}, {
		desc: "the circuit opening drops it",
		run: func(t *testing.T, reg *testRegistry, c *Cache, clock *fakeClock, d v1.Hash) {
			resolveWant(t, c, reg.ref(t, "app:v1"), d)
			reg.setFault(respond(onManifests, http.StatusInternalServerError, nil, ""))
			if _, err := c.Resolve(t.Context(), reg.ref(t, "app:v2"), nil); lookup.KindOf(err) != lookup.KindServerError {
				t.Fatalf("Resolve() error = %v, want a server error", err)
			}
			reg.setFault(nil)
			clock.Advance(window + time.Second)
			if _, err := c.Platforms(t.Context(), reg.ref(t, "app@"+d.String()).(name.Digest), nil); err != nil {
				t.Fatal(err)
			}
		},
		wantPings: 2,
	}, {
		// The cached transport would send Basic credentials to a registry that now wants
		// Bearer tokens, and be refused on every lookup.
		desc: "a 401 from a registry that pinged as anonymous drops it",
		run: func(t *testing.T, reg *testRegistry, c *Cache, _ *fakeClock, d v1.Hash) {
			resolveWantAs(t, c, reg.ref(t, "app:v1"), alice, d)
			reg.setFault(reg.bearerAuth())
			if _, err := c.Resolve(t.Context(), reg.ref(t, "app:v2"), alice); lookup.KindOf(err) != lookup.KindUnauthorized {
				t.Fatalf("Resolve() error = %v, want unauthorized", err)
			}
			resolveWantAs(t, c, reg.ref(t, "app:v2"), alice, d)
		},
		wantPings: 2,
	}, {
		desc: "a 401 with another scheme than a Bearer ping's drops it",
		run: func(t *testing.T, reg *testRegistry, c *Cache, _ *fakeClock, d v1.Hash) {
			bearer, basic := reg.bearerAuth(), basicAuth("alice", "s3cret-A-pw")
			reg.setFault(bearer)
			resolveWantAs(t, c, reg.ref(t, "app:v1"), alice, d)
			// The registry now wants Basic; its old token server still hands out tokens.
			reg.setFault(func(w http.ResponseWriter, req *http.Request) bool {
				if req.URL.Path == "/token" {
					return bearer(w, req)
				}
				return basic(w, req)
			})
			if _, err := c.Resolve(t.Context(), reg.ref(t, "app:v2"), alice); lookup.KindOf(err) != lookup.KindUnauthorized {
				t.Fatalf("Resolve() error = %v, want unauthorized", err)
			}
			resolveWantAs(t, c, reg.ref(t, "app:v2"), alice, d)
		},
		wantPings: 2,
	}, {
		desc: "a 401 with the Basic challenge the ping had keeps it: the credentials are wrong, not the answer",
		run: func(t *testing.T, reg *testRegistry, c *Cache, _ *fakeClock, d v1.Hash) {
			reg.setFault(basicAuth("alice", "s3cret-A-pw"))
			resolveWantAs(t, c, reg.ref(t, "app:v1"), alice, d)
			for range 3 {
				if _, err := c.Resolve(t.Context(), reg.ref(t, "app:v2"), nil); lookup.KindOf(err) != lookup.KindUnauthorized {
					t.Fatalf("Resolve() error = %v, want unauthorized", err)
				}
			}
		},
		wantPings: 1,
	}} {
		t.Run(tc.desc, func(t *testing.T) {
			reg := newTestRegistry(t)
			img, err := random.Image(64, 1)
			if err != nil {
				t.Fatal(err)
			}
			d := reg.pushImage(t, "app:v1", img)
			reg.pushImage(t, "app:v2", img)
			clock := newFakeClock()
			c := newTestCache(t, WithClock(clock.Now), WithBreaker(1, window))
			tc.run(t, reg, c, clock, d)
			if n := reg.roundTrips().Pings; n != tc.wantPings {
				t.Errorf("registry saw %d pings, want %d", n, tc.wantPings)
			}
		})
	}
}

func resolveWantAs(t *testing.T, c *Cache, ref name.Reference, auth authn.Authenticator, want v1.Hash) {
	t.Helper()
	got, err := c.Resolve(t.Context(), ref, auth)
	if err != nil {
		t.Fatalf("Resolve(%s) error = %v", ref, err)
	}
	if got.Digest != want {
		t.Fatalf("Resolve(%s) = %s, want %s", ref, got.Digest, want)
	}
}

// 200 admissions of pods with the same new image, at once, cost the registry one manifest
// and one config request.
func TestConcurrentFirstLookupWithHint(t *testing.T) {
	reg := newTestRegistry(t)
	want := v1.Platform{OS: "linux", Architecture: "arm64"}
	reg.pushImage(t, "app:v1", imageFor(t, want))
	slowAnswers(reg)
	c := newTestCache(t)

	const callers = 200
	concurrently(t, callers, func() error {
		ctx := lookup.WithPlatformsWanted(t.Context())
		ref := reg.ref(t, "app:v1")
		d, err := c.Resolve(ctx, ref, nil)
		if err != nil {
			return err
		}
		got, err := c.Platforms(ctx, ref.Context().Digest(d.Digest.String()), nil)
		if err == nil && !cmp.Equal(got, []v1.Platform{want}) {
			err = fmt.Errorf("Platforms() = %v, want %v", got, want)
		}
		return err
	})
	if diff := cmp.Diff(roundTrips{Pings: 1, ManifestGETs: 1, BlobGETs: 1}, reg.roundTrips()); diff != "" {
		t.Errorf("requests for %d concurrent lookups (-want +got):\n%s", callers, diff)
	}
}

// The User-Agent reaches every request, the ones a Bearer handshake makes included.
func TestUserAgentOnEveryRequest(t *testing.T) {
	reg := newTestRegistry(t)
	reg.pushImage(t, "app:v1", nil)
	var (
		mu     sync.Mutex
		agents = map[string]int{}
	)
	bearer := reg.bearerAuth()
	reg.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		agents[r.Header.Get("User-Agent")]++
		mu.Unlock()
		return bearer(w, r)
	})
	c := newTestCache(t, WithUserAgent("pullgate-test/1"))
	ctx := lookup.WithPlatformsWanted(t.Context())
	ref := reg.ref(t, "app:v1")
	d, err := c.Resolve(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Platforms(ctx, ref.Context().Digest(d.Digest.String()), nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(roundTrips{Pings: 1, Tokens: 1, ManifestGETs: 1, BlobGETs: 1}, reg.roundTrips()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	mu.Lock()
	defer mu.Unlock()
	for ua, n := range agents {
		if !strings.HasPrefix(ua, "pullgate-test/1 go-containerregistry") {
			t.Errorf("%d requests had User-Agent %q, want pullgate-test/1 and go-containerregistry's", n, ua)
		}
	}
}

// A loopback registry serving TLS: ping races https against http and https wins; the
// replayed answer must keep requests on https.
func TestTLSLoopbackRegistrySharesPing(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []string
	)
	backend := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	want := v1.Platform{OS: "linux", Architecture: "arm64"}
	wantSeen := []string{"GET /v2/"}
	for _, repo := range []string{"app", "other"} {
		ref, err := name.ParseReference(host + "/" + repo + ":v1")
		if err != nil {
			t.Fatal(err)
		}
		img := imageFor(t, want)
		if err = remote.Write(ref, img, remote.WithTransport(srv.Client().Transport)); err != nil {
			t.Fatal(err)
		}
		config, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		wantSeen = append(wantSeen, "GET /v2/"+repo+"/manifests/v1", "GET /v2/"+repo+"/blobs/"+config.String())
	}
	mu.Lock()
	seen = nil
	mu.Unlock()

	c := newTestCache(t, WithTransport(srv.Client().Transport))
	ctx := lookup.WithPlatformsWanted(t.Context())
	for _, repo := range []string{"app", "other"} {
		ref, err := name.ParseReference(host + "/" + repo + ":v1")
		if err != nil {
			t.Fatal(err)
		}
		d, err := c.Resolve(ctx, ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Platforms(ctx, ref.Context().Digest(d.Digest.String()), nil)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]v1.Platform{want}, got); diff != "" {
			t.Errorf("Platforms(%s) (-want +got):\n%s", ref, diff)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(wantSeen, seen); diff != "" {
		t.Errorf("requests over TLS (-want +got):\n%s", diff)
	}
}

// Docker Hub counts manifest GETs, not HEADs, against its pull limit: it keeps HEAD first.
func TestCountsManifestGETs(t *testing.T) {
	for host, want := range map[string]bool{
		"index.docker.io":      true,
		"docker.io":            true,
		"registry-1.docker.io": true,
		"ghcr.io":              false,
		"mirror.gcr.io":        false,
		"127.0.0.1:5000":       false,
	} {
		if got := countsManifestGETs(host); got != want {
			t.Errorf("countsManifestGETs(%q) = %v, want %v", host, got, want)
		}
	}
}

// On Docker Hub a first look-up stays a HEAD even when the platforms are wanted: the
// platforms then cost a GET by digest, as before, but a tag naming a digest already known
// costs no counted pull. The test registry stands in for index.docker.io over TLS.
func TestDockerHubStaysOnHead(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []string
	)
	backend := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	want := v1.Platform{OS: "linux", Architecture: "arm64"}
	img := imageFor(t, want)
	local, err := name.ParseReference(strings.TrimPrefix(srv.URL, "https://") + "/library/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(local, img, remote.WithTransport(srv.Client().Transport)); err != nil {
		t.Fatal(err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}

	// Every connection goes to the test server, whose certificate names 127.0.0.1.
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.InsecureSkipVerify = true
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}
	c := newTestCache(t, WithTransport(tr),
		withResolver(map[string][]netip.Addr{name.DefaultRegistry: {netip.MustParseAddr("127.0.0.1")}}))
	mu.Lock()
	seen = nil
	mu.Unlock()

	ctx := lookup.WithPlatformsWanted(t.Context())
	for _, image := range []string{"app:v1", "docker.io/library/app:v1"} {
		ref, err := name.ParseReference(image)
		if err != nil {
			t.Fatal(err)
		}
		d, err := c.Resolve(ctx, ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		if d.Digest != digest {
			t.Fatalf("Resolve(%s) = %s, want %s", image, d.Digest, digest)
		}
		got, err := c.Platforms(ctx, ref.Context().Digest(d.Digest.String()), nil)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]v1.Platform{want}, got); diff != "" {
			t.Errorf("Platforms(%s) (-want +got):\n%s", image, diff)
		}
	}
	config, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	wantSeen := []string{
		"GET /v2/",
		"HEAD /v2/library/app/manifests/v1",
		"GET /v2/library/app/manifests/" + digest.String(),
		"GET /v2/library/app/blobs/" + config.String(),
	}
	if diff := cmp.Diff(wantSeen, seen); diff != "" {
		t.Errorf("requests to Docker Hub (-want +got):\n%s", diff)
	}
}
