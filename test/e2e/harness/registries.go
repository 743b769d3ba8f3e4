package harness

import (
	"context"
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
