package harness

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pullgate/pullgate/internal/testregistry"
)

// Private registry credentials. They exist only inside the throwaway registry.
const (
	PrivateUser     = "e2e-puller"
	PrivatePassword = "e2e-password-7f3a"
)

func startPublicRegistry(counter *requestCounter) *httptest.Server {
	backend := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		counter.add(r.Method + " " + testregistry.EndpointKind(r.URL.Path))
		switch ua := r.UserAgent(); {
		case strings.HasPrefix(ua, "containerd/"):
			// The nodes' pulls, told apart from pullgate's look-ups.
			counter.add("node " + r.Method + " " + testregistry.EndpointKind(r.URL.Path))
		case strings.HasPrefix(ua, "pullgate/"):
			counter.add("pullgate " + r.Method + " " + testregistry.EndpointKind(r.URL.Path))
		}
		backend.ServeHTTP(w, r)
	}))
}

// requestCounter counts registry requests by "METHOD kind".
type requestCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *requestCounter) add(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = make(map[string]int)
	}
	c.counts[key]++
}

func (c *requestCounter) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[key]
}

func (c *requestCounter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.counts)
}

// startRateLimitedRegistry answers every request like Docker Hub over its pull limit.
func startRateLimitedRegistry() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "3600")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}`)
	}))
}

// startPrivateRegistry runs Debian's docker-registry with htpasswd auth on a free port.
func startPrivateRegistry(ctx context.Context, dir string, logs io.Writer) (host string, cmd *exec.Cmd, err error) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return "", nil, fmt.Errorf("docker-registry not found (run make deps): %w", err)
	}
	htpasswd, err := exec.CommandContext(ctx, "htpasswd", "-Bbn", PrivateUser, PrivatePassword).Output()
	if err != nil {
		return "", nil, fmt.Errorf("making htpasswd file (apache2-utils): %w", err)
	}
	regDir := filepath.Join(dir, "registry")
	if err := os.MkdirAll(filepath.Join(regDir, "data"), 0o755); err != nil {
		return "", nil, err
	}
	if err := os.WriteFile(filepath.Join(regDir, "htpasswd"), htpasswd, 0o600); err != nil {
		return "", nil, err
	}
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	host = fmt.Sprintf("127.0.0.1:%d", port)
	config := fmt.Sprintf(`version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: %s}
  delete: {enabled: true}
http:
  addr: %s
  secret: pullgate-e2e-not-a-secret
auth:
  htpasswd: {realm: pullgate-e2e, path: %s}
`, filepath.Join(regDir, "data"), host, filepath.Join(regDir, "htpasswd"))
	cfgPath := filepath.Join(regDir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		return "", nil, err
	}
	cmd = exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("starting docker-registry: %w", err)
	}
	if err := waitFor(ctx, 20*time.Second, func() bool {
		resp, err := http.Get("http://" + host + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusUnauthorized
	}); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return "", nil, fmt.Errorf("docker-registry did not come up on %s: %w", host, err)
	}
	return host, cmd, nil
}

// pushImage pushes an image of testapp for platform "os/arch[/variant]", or an index of one
// image per platform when given several, as ref; it returns the digest pushed.
func (e *Env) pushImage(ctx context.Context, ref string, auth authn.Authenticator, platforms ...string) (v1.Hash, error) {
	return e.push(ctx, ref, ref, auth, len(platforms) > 1, platforms)
}

// pushIndex is pushImage that always pushes an index, even of one platform: what
// `docker buildx build --platform linux/arm64 --push` makes.
func (e *Env) pushIndex(ctx context.Context, ref string, auth authn.Authenticator, platforms ...string) (v1.Hash, error) {
	return e.push(ctx, ref, ref, auth, true, platforms)
}

// push pushes testapp images for platforms as ref; label (the config label that makes a
// digest unique) is usually ref itself, and the same label gives the same digest.
func (e *Env) push(ctx context.Context, ref, label string, auth authn.Authenticator, asIndex bool, platforms []string) (v1.Hash, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return v1.Hash{}, err
	}
	var plats []v1.Platform
	for _, s := range platforms {
		p, err := parsePlatform(s)
		if err != nil {
			return v1.Hash{}, err
		}
		plats = append(plats, p)
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth)}
	if !asIndex {
		img, err := e.images.image(ctx, plats[0], label)
		if err != nil {
			return v1.Hash{}, err
		}
		if err := remote.Write(r, img, opts...); err != nil {
			return v1.Hash{}, fmt.Errorf("pushing %s: %w", ref, err)
		}
		return img.Digest()
	}
	idx, err := e.images.index(ctx, label, plats)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.WriteIndex(r, idx, opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing index %s: %w", ref, err)
	}
	return idx.Digest()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitFor(ctx context.Context, timeout time.Duration, ok func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if ok() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// dieWithParent makes a child process get SIGKILL when the test or demo process dies, so an
// interrupted run leaves nothing behind.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// Users of the gated registry. It answers "puller" as a registry does, "hider" with 404
// NAME_UNKNOWN (as registries that hide private repositories from accounts without access
// do: GHCR, Quay, Harbor), and anyone else with a 401 challenge.
const (
	GatedUser       = "puller"
	GatedHider      = "hider"
	GatedPassword   = "e2e-gated-3c1d"
	gatedNoSuchRepo = `{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}`
)

// startGatedRegistry starts the gated registry; push reaches its content without the gate.
func startGatedRegistry() (gated, push *httptest.Server) {
	backend := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	gated = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch u, p, ok := r.BasicAuth(); {
		case ok && u == GatedUser && p == GatedPassword:
			backend.ServeHTTP(w, r)
		case ok && u == GatedHider && p == GatedPassword && r.URL.Path != "/v2/":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, gatedNoSuchRepo)
		default:
			w.Header().Set("WWW-Authenticate", `Basic realm="pullgate-e2e-gated"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		}
	}))
	return gated, httptest.NewServer(backend)
}

// DeletePublicManifest deletes a manifest of the public registry by digest, as a registry's
// clean-up of untagged manifests (or of an image) does.
func (e *Env) DeletePublicManifest(ctx context.Context, repo, digest string) error {
	ref, err := name.NewDigest(e.Public + "/" + repo + "@" + digest)
	if err != nil {
		return err
	}
	return remote.Delete(ref, remote.WithContext(ctx))
}

// PublicIndexChildren returns the digests of the entries of an index on the public registry,
// by platform ("linux/amd64").
func (e *Env) PublicIndexChildren(ctx context.Context, repoTag string) (map[string]string, error) {
	ref, err := name.ParseReference(e.Public + "/" + repoTag)
	if err != nil {
		return nil, err
	}
	idx, err := remote.Index(ref, remote.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, d := range m.Manifests {
		if d.Platform != nil {
			out[d.Platform.String()] = d.Digest.String()
		}
	}
	return out, nil
}

// PushPublicIndex pushes an index of testapp images, one per platform ("linux/386"), to the
// public registry as repoTag, and returns its reference.
func (e *Env) PushPublicIndex(ctx context.Context, repoTag string, platforms ...string) (string, error) {
	ref := e.Public + "/" + repoTag
	_, err := e.pushIndex(ctx, ref, authn.Anonymous, platforms...)
	return ref, err
}

// PushPublicSchema1 pushes testapp for platform (linux/amd64) to the public registry as a
// Docker schema 1 manifest, signed as registries stored them (containerd 1.6 strips the JWS
// before converting it; it does not verify it), and returns its reference.
func (e *Env) PushPublicSchema1(ctx context.Context, repoTag, platform string) (string, error) {
	p, err := parsePlatform(platform)
	if err != nil {
		return "", err
	}
	ref, err := name.ParseReference(e.Public + "/" + repoTag)
	if err != nil {
		return "", err
	}
	layer, err := e.images.layer(ctx, p)
	if err != nil {
		return "", err
	}
	if err := remote.WriteLayer(ref.Context(), layer, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("pushing the schema 1 layer: %w", err)
	}
	digest, err := layer.Digest()
	if err != nil {
		return "", err
	}
	body, err := schema1Manifest(ref, p, digest.String())
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut,
		"http://"+e.Public+"/v2/"+ref.Context().RepositoryStr()+"/manifests/"+ref.Identifier(), bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/vnd.docker.distribution.manifest.v1+prettyjws")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("putting the schema 1 manifest: %s", resp.Status)
	}
	return ref.String(), nil
}

// schema1Manifest writes a one-layer Docker schema 1 manifest in libtrust's signed form: the
// JSON without its closing "\n}", the signatures, then the tail, whose length and content the
// protected header gives (formatLength, formatTail).
func schema1Manifest(ref name.Reference, p v1.Platform, layerDigest string) ([]byte, error) {
	v1Compat, err := json.Marshal(map[string]any{
		"id": strings.Repeat("a", 64), "created": "2020-01-01T00:00:00Z",
		"architecture": p.Architecture, "os": p.OS,
		"config": map[string]any{"Entrypoint": []string{"/app"}},
	})
	if err != nil {
		return nil, err
	}
	m := map[string]any{
		"schemaVersion": 1,
		"name":          ref.Context().RepositoryStr(),
		"tag":           ref.Identifier(),
		"architecture":  p.Architecture,
		"fsLayers":      []map[string]string{{"blobSum": layerDigest}},
		"history":       []map[string]string{{"v1Compatibility": string(v1Compat)}},
	}
	payload, err := json.MarshalIndent(m, "", "   ")
	if err != nil {
		return nil, err
	}
	const tail = "\n}"
	formatLength := len(payload) - len(tail)
	protected, err := json.Marshal(map[string]any{
		"formatLength": formatLength,
		"formatTail":   base64.RawURLEncoding.EncodeToString([]byte(tail)),
		"time":         "2020-01-01T00:00:00Z",
	})
	if err != nil {
		return nil, err
	}
	sig := fmt.Sprintf(",\n   \"signatures\": [\n      {\n         \"header\": {\"alg\": \"ES256\"},\n         \"signature\": \"c2lnbmF0dXJl\",\n         \"protected\": %q\n      }\n   ]",
		base64.RawURLEncoding.EncodeToString(protected))
	return append(append(payload[:formatLength:formatLength], sig...), tail...), nil
}
