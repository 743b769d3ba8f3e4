package credentialprovider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pullgate/pullgate/pkg/lookup"
)

// pluginBin is the fakeplugin executable, built once by TestMain.
var pluginDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fakeplugin")
	if err != nil {
		panic(err)
	}
	// One executable under several names: a configuration names each provider's binary.
	out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "fake"), "./testdata/fakeplugin").CombinedOutput()
	if err != nil {
		panic(fmt.Sprintf("building fakeplugin: %v\n%s", err, out))
	}
	for _, n := range []string{"fake2", "other"} {
		if err := os.Link(filepath.Join(dir, "fake"), filepath.Join(dir, n)); err != nil {
			panic(err)
		}
	}
	pluginDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// provider is one provider of a test configuration.
type provider struct {
	name, apiVersion string
	match            []string
	args             []string
	env              map[string]string
	defaultCache     string
	tokenAttributes  string
}

func writeConfig(t *testing.T, ps ...provider) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n")
	for _, p := range ps {
		if p.apiVersion == "" {
			p.apiVersion = "credentialprovider.kubelet.k8s.io/v1"
		}
		if p.defaultCache == "" {
			p.defaultCache = "10m"
		}
		fmt.Fprintf(&b, "- name: %s\n  apiVersion: %s\n  defaultCacheDuration: %s\n  matchImages:\n", p.name, p.apiVersion, p.defaultCache)
		for _, m := range p.match {
			fmt.Fprintf(&b, "  - %q\n", m)
		}
		if len(p.args) > 0 {
			b.WriteString("  args:\n")
			for _, a := range p.args {
				fmt.Fprintf(&b, "  - %q\n", a)
			}
		}
		if len(p.env) > 0 {
			b.WriteString("  env:\n")
			for k, v := range p.env {
				fmt.Fprintf(&b, "  - name: %s\n    value: %q\n", k, v)
			}
		}
		if p.tokenAttributes != "" {
			b.WriteString("  tokenAttributes:\n" + p.tokenAttributes)
		}
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type logLine struct {
	Request struct {
		APIVersion          string            `json:"apiVersion"`
		Image               string            `json:"image"`
		ServiceAccountToken string            `json:"serviceAccountToken"`
		Annotations         map[string]string `json:"annotations"`
	} `json:"request"`
	Env  string   `json:"env"`
	Args []string `json:"args"`
}

func readLog(t *testing.T, path string) []logLine {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []logLine
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var ll logLine
		if err := json.Unmarshal([]byte(l), &ll); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, ll)
	}
	return out
}

func repo(t *testing.T, s string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCredentials(t *testing.T) {
	type want struct {
		execs int
		// users are the usernames of the last call's credentials, in order.
		users []string
		// errContains is in the last call's error; "" for none.
		errContains string
	}
	tests := map[string]struct {
		providers func(log string) []provider
		images    []string
		// timeout bounds each call, as the admission deadline does.
		timeout time.Duration
		want    want
	}{
		"match runs the plugin and returns its credential": {
			providers: func(log string) []provider {
				return []provider{{name: "fake", match: []string{"*.dkr.ecr.*.amazonaws.com"}, args: []string{"--log=" + log}}}
			},
			images: []string{"123.dkr.ecr.eu-west-1.amazonaws.com/team/app"},
			want:   want{execs: 1, users: []string{"plugin-user"}},
		},
		"no match: not run, no credentials": {
			providers: func(log string) []provider {
				return []provider{{name: "fake", match: []string{"*.dkr.ecr.*.amazonaws.com"}, args: []string{"--log=" + log}}}
			},
			images: []string{"ghcr.io/acme/app", "123.dkr.ecr.amazonaws.com/app"},
			want:   want{execs: 0},
		},
		"cacheKeyType Image: one run per image": {
			providers: func(log string) []provider {
				return []provider{{name: "fake", match: []string{"registry.example.com"}, args: []string{"--log=" + log, "--cache-key-type=Image"}}}
			},
			images: []string{"registry.example.com/a", "registry.example.com/a", "registry.example.com/b"},
			want:   want{execs: 2, users: []string{"plugin-user"}},
		},
		"cacheKeyType Registry: one run per registry": {
			providers: func(log string) []provider {
				return []provider{{name: "fake", match: []string{"*.example.com"}, args: []string{"--log=" + log, "--cache-key-type=Registry", "--key=*.example.com"}}}
			},
			images: []string{"r1.example.com/a", "r1.example.com/b", "r2.example.com/a", "r2.example.com/c"},
			want:   want{execs: 2, users: []string{"plugin-user"}},
		},
		"cacheKeyType Global: one run for all": {
			providers: func(log string) []provider {
				return []provider{{name: "fake", match: []string{"*.example.com"}, args: []string{"--log=" + log, "--cache-key-type=Global", "--key=*.example.com"}}}
			},
			images: []string{"r1.example.com/a", "r2.example.com/b", "r3.example.com/c"},
			want:   want{execs: 1, users: []string{"plugin-user"}},
		},
		"cacheDuration 0: never cached": {
			providers: func(log string) []provider {
				return []provider{{name: "fake", match: []string{"registry.example.com"}, args: []string{"--log=" + log, "--cache-duration=0s"}}}
			},
			images: []string{"registry.example.com/a", "registry.example.com/a", "registry.example.com/a"},
			want:   want{execs: 3, users: []string{"plugin-user"}},
		},
		"defaultCacheDuration 0 and no cacheDuration: never cached": {
			providers: func(log string) []provider {
				return []provider{{name: "fake", match: []string{"registry.example.com"}, defaultCache: "0s", args: []string{"--log=" + log}}}
			},
			images: []string{"registry.example.com/a", "registry.example.com/a"},
			want:   want{execs: 2, users: []string{"plugin-user"}},
		},
		"response key that does not match the image gives nothing": {
			providers: func(log string) []provider {
				return []provider{{name: "fake", match: []string{"registry.example.com"}, args: []string{"--log=" + log, "--key=other.example.com"}}}
			},
			images: []string{"registry.example.com/a"},
			want:   want{execs: 1},
		},
		"failing plugin is an error": {
			providers: func(log string) []provider {
				return []provider{{name: "fake", match: []string{"registry.example.com"}, args: []string{"--log=" + log, "--mode=fail"}}}
			},
			images: []string{"registry.example.com/a"},
			want:   want{execs: 1, errContains: "exit status 1"},
		},
		"hanging plugin ends at the deadline": {
			providers: func(log string) []provider {
				return []provider{{name: "fake", match: []string{"registry.example.com"}, args: []string{"--log=" + log, "--mode=hang"}}}
			},
			images:  []string{"registry.example.com/a"},
			timeout: 500 * time.Millisecond,
			want:    want{execs: 1, errContains: "context deadline exceeded"},
		},
		"apiVersion mismatch is an error": {
			providers: func(log string) []provider {
				return []provider{{name: "fake", match: []string{"registry.example.com"}, args: []string{"--log=" + log, "--api-version=credentialprovider.kubelet.k8s.io/v1beta1"}}}
			},
			images: []string{"registry.example.com/a"},
			want:   want{execs: 1, errContains: "did not match expected apiVersion"},
		},
		"v1beta1 provider gets and must answer v1beta1": {
			providers: func(log string) []provider {
				return []provider{{name: "fake", apiVersion: "credentialprovider.kubelet.k8s.io/v1beta1", match: []string{"registry.example.com"},
					args: []string{"--log=" + log, "--api-version=credentialprovider.kubelet.k8s.io/v1beta1"}}}
			},
			images: []string{"registry.example.com/a"},
			want:   want{execs: 1, users: []string{"plugin-user"}},
		},
		"garbage output is an error": {
			providers: func(log string) []provider {
				return []provider{{name: "fake", match: []string{"registry.example.com"}, args: []string{"--log=" + log, "--mode=garbage"}}}
			},
			images: []string{"registry.example.com/a"},
			want:   want{execs: 1, errContains: "not a JSON object"},
		},
		"invalid cacheKeyType is an error": {
			providers: func(log string) []provider {
				return []provider{{name: "fake", match: []string{"registry.example.com"}, args: []string{"--log=" + log, "--cache-key-type=Bogus"}}}
			},
			images: []string{"registry.example.com/a"},
			want:   want{execs: 1, errContains: "valid cacheKeyType"},
		},
		"two plugins: both credentials, the more specific key first": {
			providers: func(log string) []provider {
				return []provider{
					{name: "fake", match: []string{"registry.example.com"}, args: []string{"--log=" + log, "--key=registry.example.com", "--user=first"}},
					{name: "fake2", match: []string{"registry.example.com"}, args: []string{"--log=" + log, "--key=registry.example.com/team", "--user=second"}},
				}
			},
			images: []string{"registry.example.com/team/app"},
			want:   want{execs: 2, users: []string{"second", "first"}},
		},
		"one plugin fails, the other's credentials are kept": {
			providers: func(log string) []provider {
				return []provider{
					{name: "fake", match: []string{"registry.example.com"}, args: []string{"--log=" + log, "--mode=fail"}},
					{name: "fake2", match: []string{"registry.example.com"}, args: []string{"--log=" + log, "--user=second"}},
				}
			},
			images: []string{"registry.example.com/app"},
			want:   want{execs: 2, users: []string{"second"}, errContains: `credential provider "fake"`},
		},
	}
	for desc, tc := range tests {
		t.Run(desc, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "log")
			p, err := Load(writeConfig(t, tc.providers(log)...), pluginDir)
			if err != nil {
				t.Fatal(err)
			}
			var creds []string
			for _, img := range tc.images {
				ctx := t.Context()
				if tc.timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tc.timeout)
					defer cancel()
				}
				cs, err := p.Credentials(ctx, repo(t, img), PodIdentity{Namespace: "ns"})
				creds = nil
				for _, c := range cs {
					a, _ := c.Auth.Authorization()
					creds = append(creds, a.Username)
					if c.Provider == "" || c.Secret != "" {
						t.Errorf("credential %+v: want Provider set, Secret empty", c)
					}
				}
				if tc.want.errContains == "" && err != nil {
					t.Fatalf("Credentials(%s): %v", img, err)
				}
				if tc.want.errContains != "" {
					var pe *Error
					if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.want.errContains) {
						t.Fatalf("Credentials(%s) error = %v, want an *Error containing %q", img, err, tc.want.errContains)
					}
					if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "plugin-pass") {
						t.Errorf("error %q holds plugin output", err)
					}
				}
			}
			if diff := cmp.Diff(tc.want.users, creds); diff != "" {
				t.Errorf("credentials of the last call (-want +got):\n%s", diff)
			}
			if got := len(readLog(t, log)); got != tc.want.execs {
				t.Errorf("plugin ran %d times, want %d", got, tc.want.execs)
			}
		})
	}
}

func TestRequestArgsEnv(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	p, err := Load(writeConfig(t, provider{name: "fake", match: []string{"docker.io"},
		args: []string{"--log=" + log, "extra-arg"}, env: map[string]string{"FAKEPLUGIN_ENV": "from-config"}}), pluginDir,
		WithEnviron(func() []string { return []string{"PATH=" + os.Getenv("PATH"), "FAKEPLUGIN_ENV=from-pullgate"} }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Credentials(t.Context(), repo(t, "nginx"), PodIdentity{Namespace: "ns"}); err != nil {
		t.Fatal(err)
	}
	lines := readLog(t, log)
	if len(lines) != 1 {
		t.Fatalf("%d runs, want 1", len(lines))
	}
	l := lines[0]
	// The kubelet sends the image as it looks credentials up: Docker Hub as docker.io/library/….
	if l.Request.Image != "docker.io/library/nginx" || l.Request.APIVersion != "credentialprovider.kubelet.k8s.io/v1" {
		t.Errorf("request = %+v", l.Request)
	}
	// The configuration's env comes after pullgate's, and wins (mergeEnvVars).
	if l.Env != "from-config" {
		t.Errorf("FAKEPLUGIN_ENV = %q, want from-config", l.Env)
	}
	if diff := cmp.Diff([]string{"extra-arg"}, l.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
}

func TestCacheOnly(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	p, err := Load(writeConfig(t, provider{name: "fake", match: []string{"registry.example.com"}, args: []string{"--log=" + log}}), pluginDir)
	if err != nil {
		t.Fatal(err)
	}
	r := repo(t, "registry.example.com/a")
	if _, err := p.Credentials(lookup.WithCacheOnly(t.Context()), r, PodIdentity{}); !errors.Is(err, lookup.ErrNotCached) {
		t.Fatalf("cache-only before a run: %v, want ErrNotCached", err)
	}
	if _, err := p.Credentials(t.Context(), r, PodIdentity{}); err != nil {
		t.Fatal(err)
	}
	if cs, err := p.Credentials(lookup.WithCacheOnly(t.Context()), r, PodIdentity{}); err != nil || len(cs) != 1 {
		t.Fatalf("cache-only after a run: %v, %v", cs, err)
	}
	if n := len(readLog(t, log)); n != 1 {
		t.Errorf("%d runs, want 1", n)
	}
}

func TestCacheExpires(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	p, err := Load(writeConfig(t, provider{name: "fake", match: []string{"registry.example.com"}, args: []string{"--log=" + log, "--cache-duration=1m"}}), pluginDir, withClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	r := repo(t, "registry.example.com/a")
	for _, step := range []time.Duration{0, 59 * time.Second, 2 * time.Second} {
		mu.Lock()
		now = now.Add(step)
		mu.Unlock()
		if _, err := p.Credentials(t.Context(), r, PodIdentity{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(readLog(t, log)); n != 2 {
		t.Errorf("%d runs, want 2 (cached for the response's cacheDuration, then run again)", n)
	}
}

func TestSingleflight(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	p, err := Load(writeConfig(t, provider{name: "fake", match: []string{"registry.example.com"}, args: []string{"--log=" + log}}), pluginDir)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := p.Credentials(t.Context(), repo(t, "registry.example.com/a"), PodIdentity{}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := len(readLog(t, log)); n != 1 {
		t.Errorf("20 concurrent look-ups ran the plugin %d times, want 1", n)
	}
}

// fakeSAs is the API server's ServiceAccount and TokenRequest answers.
type fakeSAs struct {
	mu     sync.Mutex
	sas    map[string]*corev1.ServiceAccount
	minted []authenticationv1.TokenRequest
}

func (f *fakeSAs) Get(_ context.Context, ns, n string) (*corev1.ServiceAccount, error) {
	sa, ok := f.sas[ns+"/"+n]
	if !ok {
		return nil, fmt.Errorf("serviceaccount %s/%s not found", ns, n)
	}
	return sa, nil
}

func (f *fakeSAs) CreateToken(_ context.Context, ns, n string, tr *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.minted = append(f.minted, *tr)
	out := tr.DeepCopy()
	out.Status.Token = fmt.Sprintf("token-%s-%s-%d", ns, n, len(f.minted))
	return out, nil
}

func TestTokenAttributes(t *testing.T) {
	sas := &fakeSAs{sas: map[string]*corev1.ServiceAccount{
		"ns/app":     {ObjectMeta: metav1.ObjectMeta{Name: "app", UID: "uid-app", Annotations: map[string]string{"eks.amazonaws.com/role-arn": "arn:role/app"}}},
		"ns/default": {ObjectMeta: metav1.ObjectMeta{Name: "default", UID: "uid-default"}},
		"ns/other":   {ObjectMeta: metav1.ObjectMeta{Name: "other", UID: "uid-other", Annotations: map[string]string{"eks.amazonaws.com/role-arn": "arn:role/other"}}},
	}}
	log := filepath.Join(t.TempDir(), "log")
	p, err := Load(writeConfig(t, provider{name: "fake", match: []string{"registry.example.com"}, args: []string{"--log=" + log, "--cache-key-type=Registry", "--key=registry.example.com"},
		tokenAttributes: "    serviceAccountTokenAudience: registry.example.com\n    requireServiceAccount: true\n    cacheType: ServiceAccount\n    requiredServiceAccountAnnotationKeys: [eks.amazonaws.com/role-arn]\n"}),
		pluginDir, WithServiceAccounts(sas))
	if err != nil {
		t.Fatal(err)
	}
	call := func(sa, img string) int {
		cs, err := p.Credentials(t.Context(), repo(t, img), PodIdentity{Namespace: "ns", ServiceAccountName: sa})
		if err != nil {
			t.Fatal(err)
		}
		return len(cs)
	}
	if n := call("app", "registry.example.com/a"); n != 1 {
		t.Errorf("app: %d credentials, want 1", n)
	}
	call("app", "registry.example.com/b") // cached for the registry and the same ServiceAccount
	if n := call("other", "registry.example.com/a"); n != 1 {
		t.Errorf("other: %d credentials, want 1", n)
	}
	// The required annotation is missing: the kubelet does not run the plugin.
	if n := call("", "registry.example.com/a"); n != 0 {
		t.Errorf("default (no annotation): %d credentials, want 0", n)
	}
	lines := readLog(t, log)
	if len(lines) != 2 {
		t.Fatalf("%d runs, want 2 (one per ServiceAccount)", len(lines))
	}
	if lines[0].Request.ServiceAccountToken != "token-ns-app-1" {
		t.Errorf("first run's token = %q", lines[0].Request.ServiceAccountToken)
	}
	if len(sas.minted) != 2 || sas.minted[0].Spec.Audiences[0] != "registry.example.com" || sas.minted[0].UID != "uid-app" {
		t.Errorf("minted = %+v", sas.minted)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, fmt.Sprintf("c%d.yaml", time.Now().UnixNano()))
		os.WriteFile(p, []byte(s), 0o600)
		return p
	}
	tests := map[string]struct {
		config, binDir, want string
	}{
		"no such binary":                {config: "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- {name: nope, apiVersion: credentialprovider.kubelet.k8s.io/v1, matchImages: [a.io], defaultCacheDuration: 1m}\n", want: "nope"},
		"bin dir missing":               {config: "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- {name: fake, apiVersion: credentialprovider.kubelet.k8s.io/v1, matchImages: [a.io], defaultCacheDuration: 1m}\n", binDir: "/nonexistent", want: "plugin directory"},
		"unknown plugin apiVersion":     {config: "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- {name: fake, apiVersion: credentialprovider.kubelet.k8s.io/v2, matchImages: [a.io], defaultCacheDuration: 1m}\n", want: "Unsupported value"},
		"no matchImages":                {config: "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- {name: fake, apiVersion: credentialprovider.kubelet.k8s.io/v1, defaultCacheDuration: 1m}\n", want: "matchImages"},
		"no defaultCacheDuration":       {config: "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- {name: fake, apiVersion: credentialprovider.kubelet.k8s.io/v1, matchImages: [a.io]}\n", want: "defaultCacheDuration"},
		"unknown field":                 {config: "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- {name: fake, apiVersion: credentialprovider.kubelet.k8s.io/v1, matchImages: [a.io], defaultCacheDuration: 1m, bogus: 1}\n", want: "bogus"},
		"wrong kind":                    {config: "apiVersion: kubelet.config.k8s.io/v1\nkind: KubeletConfiguration\n", want: "kind"},
		"tokenAttributes without API":   {config: "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- {name: fake, apiVersion: credentialprovider.kubelet.k8s.io/v1, matchImages: [a.io], defaultCacheDuration: 1m, tokenAttributes: {serviceAccountTokenAudience: a, requireServiceAccount: true, cacheType: Token}}\n", want: "tokenAttributes"},
		"tokenAttributes bad cacheType": {config: "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- {name: fake, apiVersion: credentialprovider.kubelet.k8s.io/v1, matchImages: [a.io], defaultCacheDuration: 1m, tokenAttributes: {serviceAccountTokenAudience: a, requireServiceAccount: true, cacheType: Pod}}\n", want: "cacheType"},
	}
	for desc, tc := range tests {
		t.Run(desc, func(t *testing.T) {
			bin := tc.binDir
			if bin == "" {
				bin = pluginDir
			}
			_, err := Load(write(tc.config), bin)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestRealRegistry: a registry that accepts only the plugin's credential.
func TestRealRegistry(t *testing.T) {
	reg := registry.New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, pw, ok := r.BasicAuth(); !ok || u != "plugin-user" || pw != "plugin-pass" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref, err := name.ParseReference(host+"/team/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := random.Image(64, 1)
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "plugin-user", Password: "plugin-pass"})); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Head(ref); err == nil {
		t.Fatal("anonymous HEAD succeeded; the registry must refuse it")
	}
	p, err := Load(writeConfig(t, provider{name: "fake", match: []string{host}, args: []string{"--cache-key-type=Registry", "--key=" + host}}), pluginDir)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := p.Credentials(t.Context(), ref.Context(), PodIdentity{})
	if err != nil || len(creds) != 1 {
		t.Fatalf("Credentials: %v, %v", creds, err)
	}
	if _, err := remote.Head(ref, remote.WithAuth(creds[0].Auth)); err != nil {
		t.Fatalf("HEAD with the plugin's credential: %v", err)
	}
}
