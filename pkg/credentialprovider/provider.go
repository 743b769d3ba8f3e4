package credentialprovider

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/sync/singleflight"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubeletconfigv1 "k8s.io/kubelet/config/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"

	"github.com/pullgate/pullgate/pkg/lookup"
	"github.com/pullgate/pullgate/pkg/pullsecrets"
)

// execTimeout is the kubelet's catch-all timeout for one execution (plugin.go, ExecPlugin:
// "Use a catch-all timeout of 1 minute for all exec-based plugins").
const execTimeout = time.Minute

// maxResponse bounds what is read of a plugin's stdout: a response is a few kilobytes.
const maxResponse = 1 << 20

// tokenExpirationSeconds is the lifetime of the tokens minted for tokenAttributes: the
// TokenRequest API's minimum, since the token is used at once and bound to no pod.
const tokenExpirationSeconds = 600

// ServiceAccounts is what tokenAttributes needs of the API server: the pod's ServiceAccount
// (for its UID and annotations) and a token for it (the TokenRequest API, which needs create
// on serviceaccounts/token).
type ServiceAccounts interface {
	Get(ctx context.Context, namespace, name string) (*corev1.ServiceAccount, error)
	CreateToken(ctx context.Context, namespace, name string, tr *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error)
}

// Option configures Load.
type Option func(*Providers)

// WithServiceAccounts gives the providers with tokenAttributes the API they mint tokens
// with. Default: none; Load refuses a configuration with tokenAttributes without it.
func WithServiceAccounts(sa ServiceAccounts) Option {
	return func(p *Providers) { p.sa = sa }
}

// WithEnviron sets the environment a plugin starts from, before the configuration's env is
// added. Default: os.Environ, pullgate's own, as the kubelet passes its own.
func WithEnviron(environ func() []string) Option {
	return func(p *Providers) { p.environ = environ }
}

// withClock sets the clock of the cache (tests).
func withClock(now func() time.Time) Option {
	return func(p *Providers) { p.now = now }
}

// Providers are the configured credential provider plugins. Safe for concurrent use.
type Providers struct {
	plugins []*plugin
	sa      ServiceAccounts
	environ func() []string
	now     func() time.Time
}

// Load reads the configuration at configPath (ReadConfig) and finds every provider's
// executable in binDir, as the kubelet's RegisterCredentialProviderPlugins does: a missing
// directory or executable is an error.
func Load(configPath, binDir string, opts ...Option) (*Providers, error) {
	if _, err := os.Stat(binDir); err != nil {
		return nil, fmt.Errorf("credential provider plugin directory: %w", err)
	}
	cfg, err := ReadConfig(configPath)
	if err != nil {
		return nil, err
	}
	p := &Providers{environ: os.Environ, now: time.Now}
	for _, opt := range opts {
		opt(p)
	}
	for _, c := range cfg.Providers {
		bin, err := binaryPath(binDir, c.Name)
		if err != nil {
			return nil, err
		}
		if c.TokenAttributes != nil && p.sa == nil {
			return nil, fmt.Errorf("provider %q has tokenAttributes, and no API to mint service account tokens with was given", c.Name)
		}
		p.plugins = append(p.plugins, &plugin{
			cfg: c, bin: bin, parent: p,
			cache: map[string]cacheEntry{},
		})
	}
	return p, nil
}

// Names lists the configured providers, in order.
func (p *Providers) Names() []string {
	var out []string
	for _, pl := range p.plugins {
		out = append(out, pl.cfg.Name)
	}
	return out
}

// Error is a plugin that could not give credentials: it failed, timed out, or answered
// something that is not a valid response. It never holds the plugin's output.
type Error struct {
	Provider string
	Err      error
}

func (e *Error) Error() string {
	return fmt.Sprintf("credential provider %q: %v", e.Provider, e.Err)
}
func (e *Error) Unwrap() error { return e.Err }

// PodIdentity is what of a pod the plugins may be given.
type PodIdentity struct {
	Namespace string
	// ServiceAccountName is the pod's spec.serviceAccountName; empty is "default", which the
	// ServiceAccount admission plugin sets.
	ServiceAccountName string
}

// Credentials returns the credentials the kubelet's plugins would give for repo, in the
// kubelet's order (every matching plugin's response in one keyring, looked up as
// pullsecrets.Join does). Plugins whose matchImages do not match repo are not run. A plugin
// that fails makes an *Error, returned with the credentials of the others. Under
// lookup.WithCacheOnly a plugin whose answer is not cached is not run: the error is then
// lookup.ErrNotCached.
func (p *Providers) Credentials(ctx context.Context, repo name.Repository, pod PodIdentity) ([]pullsecrets.Credential, error) {
	if p == nil || len(p.plugins) == 0 {
		return nil, nil
	}
	image := pullsecrets.KubeletImageName(repo)
	var krs []*pullsecrets.Keyring
	var errs []error
	for _, pl := range p.plugins {
		auths, err := pl.provide(ctx, image, registryOf(repo), pod)
		if err != nil {
			if errors.Is(err, lookup.ErrNotCached) {
				return nil, err
			}
			errs = append(errs, &Error{Provider: pl.cfg.Name, Err: err})
			continue
		}
		if auths != nil {
			krs = append(krs, pullsecrets.FromProvider(pl.cfg.Name, auths))
		}
	}
	return pullsecrets.Join(krs...).Credentials(repo), errors.Join(errs...)
}

// Matches reports whether some plugin's matchImages matches repo.
func (p *Providers) Matches(repo name.Repository) bool {
	if p == nil {
		return false
	}
	image := pullsecrets.KubeletImageName(repo)
	for _, pl := range p.plugins {
		if pl.matches(image) {
			return true
		}
	}
	return false
}

// registryOf is the kubelet's parseRegistry(image): the first path component of the
// kubelet's image name, "docker.io" for Docker Hub.
func registryOf(repo name.Repository) string {
	if repo.RegistryStr() == name.DefaultRegistry {
		return "docker.io"
	}
	return repo.RegistryStr()
}

// plugin is one configured provider: pluginProvider and execPlugin in plugin.go.
type plugin struct {
	cfg    kubeletconfigv1.CredentialProvider
	bin    string
	parent *Providers
	group  singleflight.Group

	mu         sync.Mutex
	cache      map[string]cacheEntry
	lastPurged time.Time
}

type cacheEntry struct {
	auths     map[string]pullsecrets.ProviderAuth
	expiresAt time.Time
}

// globalCacheKey is the kubelet's key for cacheKeyType Global.
const globalCacheKey = "<global>"

func (pl *plugin) matches(image string) bool {
	for _, m := range pl.cfg.MatchImages {
		if pullsecrets.KeyMatches(m, image) {
			return true
		}
	}
	return false
}

// provide is pluginProvider.provide: nil and no error when the plugin is not to be run.
func (pl *plugin) provide(ctx context.Context, image, registry string, pod PodIdentity) (map[string]pullsecrets.ProviderAuth, error) {
	if !pl.matches(image) {
		return nil, nil
	}
	var sa *saRequest
	if pl.cfg.TokenAttributes != nil {
		var err error
		sa, err = pl.serviceAccount(ctx, pod)
		if err != nil || sa == nil {
			return nil, err
		}
	}
	saKey := ""
	if sa != nil {
		saKey = sa.cacheKey(pl.cfg.TokenAttributes.CacheType)
	}
	// With cacheType ServiceAccount the cache key does not depend on the token: look before
	// minting one (the kubelet mints first; the answer is the same, one API call fewer).
	if sa == nil || pl.cfg.TokenAttributes.CacheType != kubeletconfigv1.TokenServiceAccountTokenCacheType {
		if auths, ok := pl.cached(image, registry, saKey); ok {
			return auths, nil
		}
	}
	if lookup.CacheOnly(ctx) {
		return nil, lookup.ErrNotCached
	}
	flightKey := image
	if sa != nil {
		if err := sa.mint(ctx, pl.parent.sa, pl.cfg.TokenAttributes.ServiceAccountTokenAudience); err != nil {
			return nil, err
		}
		if pl.cfg.TokenAttributes.CacheType == kubeletconfigv1.TokenServiceAccountTokenCacheType {
			saKey = sa.cacheKey(pl.cfg.TokenAttributes.CacheType)
			if auths, ok := pl.cached(image, registry, saKey); ok {
				return auths, nil
			}
		}
		// generateSingleFlightKey: image, token hash, annotations.
		flightKey = keyOf(image, sa.tokenHash, annotationsKey(sa.annotations))
	}
	// The first caller's deadline bounds the execution the others share, as the kubelet's
	// singleflight shares its first caller's minute.
	res, err, _ := pl.group.Do(flightKey, func() (any, error) {
		return pl.exec(ctx, image, sa)
	})
	if err != nil {
		return nil, err
	}
	resp := res.(*credentialproviderv1.CredentialProviderResponse)
	if sa != nil && pl.cfg.TokenAttributes.CacheType != kubeletconfigv1.TokenServiceAccountTokenCacheType {
		for _, a := range resp.Auth {
			if a.Password == sa.token {
				return nil, errors.New("the plugin returned the service account token as the password, which is not allowed when cacheType is not Token")
			}
		}
	}
	var base string
	switch resp.CacheKeyType {
	case credentialproviderv1.ImagePluginCacheKeyType:
		base = image
	case credentialproviderv1.RegistryPluginCacheKeyType:
		base = registry
	case credentialproviderv1.GlobalPluginCacheKeyType:
		base = globalCacheKey
	default:
		return nil, fmt.Errorf("the plugin did not return a valid cacheKeyType: %q", truncate(string(resp.CacheKeyType), 40))
	}
	auths := make(map[string]pullsecrets.ProviderAuth, len(resp.Auth))
	for k, a := range resp.Auth {
		auths[k] = pullsecrets.ProviderAuth{Username: a.Username, Password: a.Password}
	}
	var ttl time.Duration
	switch {
	case resp.CacheDuration != nil:
		ttl = resp.CacheDuration.Duration
	case pl.cfg.DefaultCacheDuration != nil:
		ttl = pl.cfg.DefaultCacheDuration.Duration
	}
	if ttl > 0 {
		pl.mu.Lock()
		pl.cache[keyOf(base, saKey)] = cacheEntry{auths: auths, expiresAt: pl.parent.now().Add(ttl)}
		pl.mu.Unlock()
	}
	return auths, nil
}

// cached is getCachedCredentials: the image's entry, else its registry's, else the global
// one, each under the service account's key. Expired entries are purged every 15 minutes.
func (pl *plugin) cached(image, registry, saKey string) (map[string]pullsecrets.ProviderAuth, bool) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	now := pl.parent.now()
	if now.Sub(pl.lastPurged) > 15*time.Minute {
		for k, e := range pl.cache {
			if now.After(e.expiresAt) {
				delete(pl.cache, k)
			}
		}
		pl.lastPurged = now
	}
	for _, base := range []string{image, registry, globalCacheKey} {
		if e, ok := pl.cache[keyOf(base, saKey)]; ok && !now.After(e.expiresAt) {
			return e.auths, true
		}
	}
	return nil, false
}

// exec is execPlugin.ExecPlugin: the request on stdin, args and env as configured on top
// of the parent's environment, the response's apiVersion checked, then decoded strictly.
func (pl *plugin) exec(ctx context.Context, image string, sa *saRequest) (*credentialproviderv1.CredentialProviderResponse, error) {
	req := credentialproviderv1.CredentialProviderRequest{
		TypeMeta: metav1.TypeMeta{APIVersion: pl.cfg.APIVersion, Kind: "CredentialProviderRequest"},
		Image:    image,
	}
	if sa != nil {
		req.ServiceAccountToken, req.ServiceAccountAnnotations = sa.token, sa.annotations
	}
	in, err := json.Marshal(&req)
	if err != nil {
		return nil, fmt.Errorf("encoding the request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, execTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, pl.bin, pl.cfg.Args...)
	env := pl.parent.environ()
	for _, e := range pl.cfg.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(in)
	var stdout limitedBuffer
	stdout.limit = maxResponse
	cmd.Stdout = &stdout
	cmd.Stderr = io.Discard
	// A plugin that leaves a child holding stdout open must not hold the admission.
	cmd.WaitDelay = 100 * time.Millisecond
	err = cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("running the plugin: %w", ctx.Err())
	}
	if err != nil {
		return nil, fmt.Errorf("running the plugin: %w", err)
	}
	if stdout.over {
		return nil, fmt.Errorf("the plugin wrote more than %d bytes", maxResponse)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(stdout.Bytes(), &tm); err != nil {
		// The output may hold credentials: not quoted.
		return nil, errors.New("the plugin's output is not a JSON object")
	}
	if tm.APIVersion != pl.cfg.APIVersion {
		return nil, fmt.Errorf("apiVersion from credential plugin response did not match expected apiVersion:%s, actual apiVersion:%s",
			pl.cfg.APIVersion, truncate(tm.APIVersion, 80))
	}
	if tm.Kind != "CredentialProviderResponse" {
		return nil, fmt.Errorf("the plugin's response has kind %q, not CredentialProviderResponse", truncate(tm.Kind, 80))
	}
	dec := json.NewDecoder(bytes.NewReader(stdout.Bytes()))
	dec.DisallowUnknownFields()
	var resp credentialproviderv1.CredentialProviderResponse
	if err := dec.Decode(&resp); err != nil {
		// Not wrapped: the error may quote the response, which holds credentials (as the
		// kubelet's decodeResponse).
		return nil, errors.New("error decoding credential provider plugin response from stdout")
	}
	return &resp, nil
}

// limitedBuffer keeps at most limit bytes and remembers whether more came.
type limitedBuffer struct {
	bytes.Buffer
	limit int
	over  bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.Len(); len(p) > room {
		b.over = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// saRequest is the service account a tokenAttributes plugin is run for.
type saRequest struct {
	namespace, name string
	uid             string
	annotations     map[string]string
	token           string
	tokenHash       string
}

// serviceAccount is the service account part of provide and getServiceAccountData: nil and
// no error when the plugin is not to be run (no service account and requireServiceAccount,
// or a required annotation missing).
func (pl *plugin) serviceAccount(ctx context.Context, pod PodIdentity) (*saRequest, error) {
	t := pl.cfg.TokenAttributes
	saName := pod.ServiceAccountName
	if saName == "" {
		saName = "default"
	}
	sa, err := pl.parent.sa.Get(ctx, pod.Namespace, saName)
	if err != nil {
		return nil, fmt.Errorf("reading service account %s/%s: %w", pod.Namespace, saName, err)
	}
	annotations := map[string]string{}
	for _, k := range t.RequiredServiceAccountAnnotationKeys {
		v, ok := sa.Annotations[k]
		if !ok {
			// The kubelet does not run the plugin (requiredAnnotationNotFoundError).
			return nil, nil
		}
		annotations[k] = v
	}
	for _, k := range t.OptionalServiceAccountAnnotationKeys {
		if v, ok := sa.Annotations[k]; ok {
			annotations[k] = v
		}
	}
	return &saRequest{namespace: pod.Namespace, name: saName, uid: string(sa.UID), annotations: annotations}, nil
}

// mint gets a token for the service account, as getServiceAccountToken does, but bound to
// no pod: the pod does not exist yet.
func (s *saRequest) mint(ctx context.Context, api ServiceAccounts, audience string) error {
	exp := int64(tokenExpirationSeconds)
	tr, err := api.CreateToken(ctx, s.namespace, s.name, &authenticationv1.TokenRequest{
		ObjectMeta: metav1.ObjectMeta{UID: metav1UID(s.uid)},
		Spec:       authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: &exp},
	})
	if err != nil {
		return fmt.Errorf("requesting a token for service account %s/%s: %w", s.namespace, s.name, err)
	}
	s.token = tr.Status.Token
	if s.token != "" {
		s.tokenHash = fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(s.token)))
	}
	return nil
}

// cacheKey is generateServiceAccountCacheKey: namespace, name, UID, annotations, and for
// cacheType Token the token's hash.
func (s *saRequest) cacheKey(t kubeletconfigv1.ServiceAccountTokenCacheType) string {
	parts := []string{s.namespace, s.name, s.uid, annotationsKey(s.annotations)}
	if t == kubeletconfigv1.TokenServiceAccountTokenCacheType {
		parts = append(parts, "token", s.tokenHash)
	}
	return keyOf(parts...)
}

func annotationsKey(a map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(a)) {
		parts = append(parts, k, a[k])
	}
	return keyOf(parts...)
}

// keyOf joins parts unambiguously (length-prefixed, as the kubelet's cryptobyte builder).
func keyOf(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		fmt.Fprintf(&b, "%d:%s;", len(p), p)
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func metav1UID(s string) types.UID { return types.UID(s) }

// NodeCredentials is Credentials for a pod in namespace running as serviceAccount
// (validate.CredentialProviders).
func (p *Providers) NodeCredentials(ctx context.Context, repo name.Repository, namespace, serviceAccount string) ([]pullsecrets.Credential, error) {
	return p.Credentials(ctx, repo, PodIdentity{Namespace: namespace, ServiceAccountName: serviceAccount})
}
