package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pullgate/pullgate/internal/testregistry"
)

// benchRegistry is go-containerregistry's registry over httptest on 127.0.0.1, wrapped to
// count what pullgate asks of it and to add latency or hang. Content is pushed through a
// second, unwrapped listener on the same backend, so set-up is neither counted nor slowed.
type benchRegistry struct {
	// Host is what image references name (127.0.0.1:PORT).
	Host string

	server, push *httptest.Server
	// latency is added before every request is answered; hang makes requests never answer.
	latency time.Duration
	hang    atomic.Bool
	stop    chan struct{}

	mu     sync.Mutex
	counts map[string]int // "METHOD kind" and "METHOD kind repo"
}

func newBenchRegistry(latency time.Duration) *benchRegistry {
	backend := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r := &benchRegistry{latency: latency, stop: make(chan struct{}), counts: map[string]int{}}
	r.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.count(req)
		if r.hang.Load() {
			// Accept the request and never answer: the client's deadline is the only way out.
			select {
			case <-req.Context().Done():
			case <-r.stop:
			}
			return
		}
		if r.latency > 0 {
			t := time.NewTimer(r.latency)
			select {
			case <-t.C:
			case <-req.Context().Done():
				t.Stop()
				return
			}
		}
		backend.ServeHTTP(w, req)
	}))
	r.push = httptest.NewServer(backend)
	r.Host = strings.TrimPrefix(r.server.URL, "http://")
	return r
}

// Close stops both listeners, releasing hung requests first.
func (r *benchRegistry) Close() {
	close(r.stop)
	r.server.CloseClientConnections()
	r.server.Close()
	r.push.Close()
}

func (r *benchRegistry) count(req *http.Request) {
	kind, repo := endpointOf(req.URL.Path)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[req.Method+" "+kind]++
	if repo != "" {
		r.counts[req.Method+" "+kind+" "+repo]++
	}
}

// endpointOf names the registry API of a path (ping, manifests, blobs, tags) and the
// repository it is about.
func endpointOf(p string) (kind, repo string) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok || rest == "" {
		return "ping", ""
	}
	for _, k := range []string{"manifests", "blobs"} {
		if i := strings.LastIndex(rest, "/"+k+"/"); i >= 0 {
			return k, rest[:i]
		}
	}
	if r, ok := strings.CutSuffix(rest, "/tags/list"); ok {
		return "tags", r
	}
	return "other", ""
}

// requestCounts is what a registry received, by "METHOD kind".
type requestCounts map[string]int

func (c requestCounts) total() int {
	n := 0
	for k, v := range c {
		if strings.Count(k, " ") == 1 {
			n += v
		}
	}
	return n
}

// repo returns the count of "METHOD kind" requests about one repository.
func (c requestCounts) repo(method, kind, repo string) int { return c[method+" "+kind+" "+repo] }

// summary is "HEAD manifests=3 GET manifests=1 ..." without the per-repository lines.
func (c requestCounts) summary() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		if strings.Count(k, " ") == 1 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, c[k]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// take returns the counts since the last take and zeroes them.
func (r *benchRegistry) take() requestCounts {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := requestCounts(maps.Clone(r.counts))
	clear(r.counts)
	return out
}

// pushImage pushes a random single-platform image as repo:tag and returns its digest.
func (r *benchRegistry) pushImage(ctx context.Context, repo, tag, os, arch string) (v1.Hash, error) {
	img, err := testregistry.PlatformImage(os, arch)
	if err != nil {
		return v1.Hash{}, err
	}
	ref, err := name.ParseReference(strings.TrimPrefix(r.push.URL, "http://") + "/" + repo + ":" + tag)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing %s: %w", ref, err)
	}
	return img.Digest()
}

// pushIndex pushes a multi-platform index (one image per "os/arch") as repo:tag.
func (r *benchRegistry) pushIndex(ctx context.Context, repo, tag string, platforms ...string) (v1.Hash, error) {
	var idx v1.ImageIndex = empty.Index
	for _, p := range platforms {
		os, arch, _ := strings.Cut(p, "/")
		img, err := testregistry.PlatformImage(os, arch)
		if err != nil {
			return v1.Hash{}, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: os, Architecture: arch}},
		})
	}
	ref, err := name.ParseReference(strings.TrimPrefix(r.push.URL, "http://") + "/" + repo + ":" + tag)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx)); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing index %s: %w", ref, err)
	}
	return idx.Digest()
}

// roundTrip measures one registry round trip as the bench client sees it: the median of a
// few manifest HEADs of ref, through the counted (and slowed) listener. The requests are
// taken out of the counts again.
func (r *benchRegistry) roundTrip(ctx context.Context, ref string) (time.Duration, error) {
	parsed, err := name.ParseReference(ref)
	if err != nil {
		return 0, err
	}
	u := fmt.Sprintf("http://%s/v2/%s/manifests/%s", r.Host, parsed.Context().RepositoryStr(), parsed.Identifier())
	var samples []time.Duration
	for range 7 {
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json,application/vnd.oci.image.index.v1+json,application/vnd.docker.distribution.manifest.v2+json")
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("HEAD %s: %s", u, resp.Status)
		}
		samples = append(samples, time.Since(start))
	}
	r.take()
	slices.Sort(samples)
	return samples[len(samples)/2], nil
}
