package harness

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
)

// The nodes' own credentials (issue 13): a registry that only a kubelet credential provider
// plugin's credential opens, the plugin (pkg/credentialprovider's test plugin, a real
// executable speaking credentialprovider.kubelet.k8s.io/v1), and its CredentialProviderConfig,
// which every kubelet gets with --image-credential-provider-config (a copy in each node's
// directory) and pullgate may get too. The plugin matches only this registry, so no other
// test's pulls change.

// PluginUser and PluginPassword are the only credential the plugin registry accepts; only
// the plugin hands it out.
const (
	PluginUser     = "plugin-user"
	PluginPassword = "plugin-e2e-pass"
)

type credProvider struct {
	server *httptest.Server
	host   string
	binDir string
	config string // the configuration's content

	pushOnce sync.Once
	pushErr  error
}

// startCredProvider starts the plugin registry and builds the plugin into dir.
func startCredProvider(ctx context.Context, dir, root string) (*credProvider, error) {
	backend := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); ok && u == PluginUser && p == PluginPassword {
			backend.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="pullgate-e2e-plugin"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
	}))
	cp := &credProvider{server: srv, host: strings.TrimPrefix(srv.URL, "http://"), binDir: filepath.Join(dir, "credprov-bin")}
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(cp.binDir, "pullgate-e2e-plugin"), "./pkg/credentialprovider/testdata/fakeplugin")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		srv.Close()
		return nil, fmt.Errorf("building the credential provider plugin: %v\n%s", err, out)
	}
	cp.config = fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
- name: pullgate-e2e-plugin
  apiVersion: credentialprovider.kubelet.k8s.io/v1
  matchImages: [%q]
  defaultCacheDuration: 1m
  args: ["--user=%s", "--password=%s", "--cache-key-type=Registry", "--key=%s"]
`, cp.host, PluginUser, PluginPassword, cp.host)
	return cp, nil
}

// kubeletArgs writes the configuration into the node's directory and returns the kubelet
// flags that name it.
func (cp *credProvider) kubeletArgs(node *realNode) ([]string, error) {
	path := filepath.Join(node.dir, "credential-provider.yaml")
	if err := os.WriteFile(path, []byte(cp.config), 0o600); err != nil {
		return nil, err
	}
	return []string{"--image-credential-provider-config=" + path, "--image-credential-provider-bin-dir=" + cp.binDir}, nil
}

// CredProviderRegistry is the registry only the nodes' credential provider plugin opens.
func (e *Env) CredProviderRegistry() string { return e.credProv.host }

// CredProviderFlags are the pullgate flags that give it the nodes' plugin configuration: the
// very file the first node's kubelet reads, and the same plugin directory.
func (e *Env) CredProviderFlags() []string {
	return []string{
		"--image-credential-provider-config=" + filepath.Join(e.cluster.nodes[0].dir, "credential-provider.yaml"),
		"--image-credential-provider-bin-dir=" + e.credProv.binDir,
	}
}

// PushCredProviderImage pushes the testapp image to the plugin registry as team/app:1.0
// (once) and returns its reference.
func (e *Env) PushCredProviderImage(ctx context.Context) (string, error) {
	ref := e.credProv.host + "/team/app:1.0"
	e.credProv.pushOnce.Do(func() {
		_, e.credProv.pushErr = e.push(ctx, ref, ref, &authn.Basic{Username: PluginUser, Password: PluginPassword}, true, []string{"linux/amd64", "linux/arm64"})
	})
	return ref, e.credProv.pushErr
}

// PushMirror pushes the testapp image to the mirror registry as repoTag.
func (e *Env) PushMirror(ctx context.Context, repoTag string) (string, error) {
	d, err := e.push(ctx, e.Mirror+"/"+repoTag, e.Mirror+"/"+repoTag, authn.Anonymous, true, []string{"linux/amd64", "linux/arm64"})
	return d.String(), err
}

// SetNodeMirror writes, on every node, a containerd hosts.toml that sends pulls from origin
// to mirror first (plain HTTP), then to origin; it returns the first node's config_path
// directory, to give pullgate as --node-registry-config-dir, and a function that removes the
// files again. containerd reads config_path at every pull.
func (e *Env) SetNodeMirror(origin, mirror string) (string, func(), error) {
	var dirs []string
	toml := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+origin, "http://"+mirror)
	for _, n := range e.cluster.nodes {
		dir := filepath.Join(n.dir, "certs.d", origin)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(toml), 0o644); err != nil {
			return "", nil, err
		}
		dirs = append(dirs, dir)
	}
	return filepath.Join(e.cluster.nodes[0].dir, "certs.d"), func() {
		for _, d := range dirs {
			os.RemoveAll(d)
		}
	}, nil
}
