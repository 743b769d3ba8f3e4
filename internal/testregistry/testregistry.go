package testregistry

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry is a running registry. Host is what image references name (127.0.0.1:PORT).
type Registry struct {
	Host string

	server *httptest.Server
	// push reaches the registry without auth or faults, for setting up content.
	push *httptest.Server

	mu         sync.Mutex
	counts     map[string]int
	fault      http.HandlerFunc
	middleware func(next http.Handler) http.Handler
}

// Option configures a Registry.
type Option func(*settings)

type settings struct {
	user, password string
}

// WithBasicAuth makes the registry answer 401 to requests without these credentials.
func WithBasicAuth(user, password string) Option {
	return func(s *settings) { s.user, s.password = user, password }
}

// New starts a registry that stops when the test ends.
func New(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	var s settings
	for _, o := range opts {
		o(&s)
	}
	backend := registry.New(registry.Logger(discardLogger()))
	r := &Registry{counts: make(map[string]int)}
	r.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.count(req)
		r.mu.Lock()
		fault, middleware := r.fault, r.middleware
		r.mu.Unlock()
		if fault != nil {
			fault(w, req)
			return
		}
		if middleware != nil {
			middleware(backend).ServeHTTP(w, req)
			return
		}
		if s.user != "" {
			if u, p, ok := req.BasicAuth(); !ok || u != s.user || p != s.password {
				w.Header().Set("WWW-Authenticate", `Basic realm="testregistry"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
				return
			}
		}
		backend.ServeHTTP(w, req)
	}))
	r.push = httptest.NewServer(backend)
	t.Cleanup(func() {
		r.server.CloseClientConnections()
		r.server.Close()
		r.push.Close()
	})
	r.Host = strings.TrimPrefix(r.server.URL, "http://")
	return r
}

// SetFault makes every request be answered by fault instead of the registry; nil restores it.
func (r *Registry) SetFault(fault http.HandlerFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fault = fault
}

// SetMiddleware wraps the registry's handler, for faults that answer some requests and pass
// others on (a slow registry, a malformed manifest); nil removes it.
func (r *Registry) SetMiddleware(m func(next http.Handler) http.Handler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.middleware = m
}

// Close stops the registry now, so its address refuses connections.
func (r *Registry) Close() {
	r.server.CloseClientConnections()
	r.server.Close()
}

func (r *Registry) count(req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[req.Method+" "+kindOfPath(req.URL.Path)]++
}

// kindOfPath names the endpoint of a registry path: manifests, blobs, tags, ping.
func kindOfPath(p string) string { return EndpointKind(p) }

// EndpointKind names the endpoint a registry API path is for: "manifests", "blobs", "tags",
// "ping" or "other". Request counters of tests, the e2e and the benchmark key on it.
func EndpointKind(p string) string {
	switch {
	case strings.Contains(p, "/manifests/"):
		return "manifests"
	case strings.Contains(p, "/blobs/"):
		return "blobs"
	case strings.HasSuffix(p, "/tags/list"):
		return "tags"
	case p == "/v2/" || p == "/v2":
		return "ping"
	}
	return "other"
}

// Requests returns how many requests of a method reached an endpoint kind (manifests, blobs,
// tags, ping) since the last Reset.
func (r *Registry) Requests(method, kind string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[method+" "+kind]
}

// TotalRequests counts every request since the last Reset.
func (r *Registry) TotalRequests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.counts {
		n += c
	}
	return n
}

// Reset zeroes the request counters.
func (r *Registry) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.counts)
}

// Ref returns HOST/repo followed by suffix (":tag" or "@sha256:...").
func (r *Registry) Ref(repo, suffix string) string { return r.Host + "/" + repo + suffix }

// Image returns a random single-platform image for os/arch.
func Image(t testing.TB, os, arch string) v1.Image {
	t.Helper()
	img, err := PlatformImage(os, arch)
	if err != nil {
		t.Fatalf("random %s/%s image: %v", os, arch, err)
	}
	return img
}

// PlatformImage returns a random single-layer image whose config says os/arch.
func PlatformImage(os, arch string) (v1.Image, error) {
	img, err := random.Image(256, 1)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = os, arch
	return mutate.ConfigFile(img, cf)
}

// PushImage pushes a single-platform image as repo:tag and returns its digest.
func (r *Registry) PushImage(t testing.TB, repo, tag, os, arch string) v1.Hash {
	t.Helper()
	img := Image(t, os, arch)
	ref := r.pushRef(t, repo, tag)
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("digest: %v", err)
	}
	return d
}

// Write pushes img as repo:tag and returns its digest: the same image written to two
// registries is an origin and a mirror that has caught up with it.
func (r *Registry) Write(t testing.TB, repo, tag string, img v1.Image) v1.Hash {
	t.Helper()
	ref := r.pushRef(t, repo, tag)
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatalf("digest: %v", err)
	}
	return d
}

// PushIndex pushes a multi-platform index (one image per "os/arch") as repo:tag and returns
// its digest.
func (r *Registry) PushIndex(t testing.TB, repo, tag string, platforms ...string) v1.Hash {
	t.Helper()
	var idx v1.ImageIndex = empty.Index
	for _, p := range platforms {
		os, arch, _ := strings.Cut(p, "/")
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        Image(t, os, arch),
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: os, Architecture: arch}},
		})
	}
	ref := r.pushRef(t, repo, tag)
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatalf("pushing index %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatalf("digest: %v", err)
	}
	return d
}

func (r *Registry) pushRef(t testing.TB, repo, tag string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(strings.TrimPrefix(r.push.URL, "http://") + "/" + repo + ":" + tag)
	if err != nil {
		t.Fatalf("parsing push reference: %v", err)
	}
	return ref
}

// Entry is one manifest of an index PushIndexOf builds: an image for Platform's os and
// architecture (or OS/Arch when Platform is nil or says otherwise), or the nested Index.
// Platform is written into the index as given: nil leaves the entry without one.
type Entry struct {
	Platform *v1.Platform
	// OS and Arch are what the image's config states when they differ from Platform's.
	OS, Arch string
	// Index, when set, is pushed as a nested index instead of an image.
	Index []Entry
	// Annotations are the entry's annotations in the index.
	Annotations map[string]string
}

// PushIndexOf pushes an index of entries as repo:tag and returns its digest and its
// entries' digests, in order.
func (r *Registry) PushIndexOf(t testing.TB, repo, tag string, entries ...Entry) (v1.Hash, []v1.Hash) {
	t.Helper()
	idx, digests := buildIndex(t, entries)
	ref := r.pushRef(t, repo, tag)
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatalf("pushing index %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatalf("digest: %v", err)
	}
	return d, digests
}

func buildIndex(t testing.TB, entries []Entry) (v1.ImageIndex, []v1.Hash) {
	t.Helper()
	var idx v1.ImageIndex = empty.Index
	var digests []v1.Hash
	for _, e := range entries {
		var add mutate.Appendable
		if e.Index != nil {
			nested, _ := buildIndex(t, e.Index)
			add = nested
		} else {
			os, arch := e.OS, e.Arch
			if p := e.Platform; p != nil {
				os, arch = cmpOr(os, p.OS), cmpOr(arch, p.Architecture)
			}
			add = Image(t, os, arch)
		}
		d, err := add.Digest()
		if err != nil {
			t.Fatalf("digest: %v", err)
		}
		digests = append(digests, d)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        add,
			Descriptor: v1.Descriptor{Platform: e.Platform, Annotations: e.Annotations},
		})
	}
	return idx, digests
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// DeleteManifest deletes the manifest at digest from repo, as a registry's clean-up of
// untagged manifests does; an index that lists it keeps listing it.
func (r *Registry) DeleteManifest(t testing.TB, repo string, digest v1.Hash) {
	t.Helper()
	ref, err := name.NewDigest(strings.TrimPrefix(r.push.URL, "http://") + "/" + repo + "@" + digest.String())
	if err != nil {
		t.Fatalf("parsing digest reference: %v", err)
	}
	if err := remote.Delete(ref); err != nil {
		t.Fatalf("deleting %s: %v", ref, err)
	}
}

// DeleteTag deletes repo:tag, as `crane delete` or a registry's UI does: the tag no longer
// resolves; the manifest it named stays under its digest.
func (r *Registry) DeleteTag(t testing.TB, repo, tag string) {
	t.Helper()
	ref, err := name.NewTag(strings.TrimPrefix(r.push.URL, "http://") + "/" + repo + ":" + tag)
	if err != nil {
		t.Fatalf("parsing tag reference: %v", err)
	}
	if err := remote.Delete(ref); err != nil {
		t.Fatalf("deleting %s: %v", ref, err)
	}
}

// PutManifest PUTs body as the manifest repo:tag with the media type as its Content-Type,
// byte for byte (a Docker schema 1 manifest, which go-containerregistry does not write),
// and returns the digest the registry names it by.
func (r *Registry) PutManifest(t testing.TB, repo, tag, mediaType string, body []byte) v1.Hash {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, r.push.URL+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("putting manifest %s:%s: %v", repo, tag, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("putting manifest %s:%s: %s", repo, tag, resp.Status)
	}
	h, err := v1.NewHash(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		t.Fatalf("digest of %s:%s: %v", repo, tag, err)
	}
	return h
}
