package pullsecrets

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	lru "github.com/hashicorp/golang-lru/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ProblemKind says what is wrong with a listed pull secret or the ServiceAccount.
type ProblemKind string

const (
	// Missing: the secret does not exist in the pod's namespace. The kubelet skips it
	// (pkg/kubelet/kubelet_pods.go, getPullSecretsForPod) and pulls with the others.
	Missing ProblemKind = "missing"
	// WrongType: the secret is not of type kubernetes.io/dockerconfigjson or
	// kubernetes.io/dockercfg, or lacks the data key its type requires; the kubelet ignores it.
	WrongType ProblemKind = "wrong type"
	// Unparseable: the docker config in the secret does not decode. The kubelet then builds
	// no keyring for the pod and fails every one of its pulls (see Keyring.Unparseable).
	Unparseable ProblemKind = "unparseable"
	// EntrySkipped: some entries of the secret name a registry that does not parse as a URL;
	// the kubelet skips those entries and uses the rest.
	EntrySkipped ProblemKind = "entry skipped"
	// NoUsername: an entry has no username (only an identitytoken, or nothing). The kubelet
	// passes it on, and the container runtime then pulls anonymously.
	NoUsername ProblemKind = "no username"
	// ServiceAccountMissing: the pod lists no imagePullSecrets and its ServiceAccount does
	// not exist, so the secrets its pods would get are unknown. Problem.Secret is empty.
	ServiceAccountMissing ProblemKind = "service account missing"
)

// Problem is a listed pull secret (or the ServiceAccount) the kubelet cannot use, or cannot
// use entirely. It never holds secret data.
type Problem struct {
	// Secret is the secret's name; empty for ServiceAccountMissing.
	Secret string
	// ServiceAccount is the ServiceAccount's name for ServiceAccountMissing.
	ServiceAccount string
	Kind           ProblemKind
	// Detail is a short human explanation, free of secret data.
	Detail string
}

// Credential is one docker config entry the kubelet tries for a repository, and the secret
// it is in.
type Credential struct {
	// Secret is the pull secret the entry is in; empty for a credential a kubelet credential
	// provider plugin returned (see Provider).
	Secret string
	// Provider is the credential provider plugin that returned the entry (FromProvider);
	// empty for a pull secret's.
	Provider string
	// Entry is the registry the entry is filed under, as the kubelet files it:
	// host[:port][/path] without scheme ("ghcr.io", "registry.example.com:5000/team",
	// "index.docker.io" for "https://index.docker.io/v1/").
	Entry string
	// Auth is what the node's container runtime sends: the entry's username and password,
	// or authn.Anonymous for an entry without a username, which containerd and CRI-O pull
	// anonymously with.
	Auth authn.Authenticator
}

// Keyring is the pull secrets a pod's pulls would use, merged as the kubelet merges them
// into one keyring.
type Keyring struct {
	// SecretNames are the listed secrets, in the order listed, each once.
	SecretNames []string
	// ServiceAccount is the ServiceAccount the names came from, or "" when the pod listed
	// its own imagePullSecrets (or its ServiceAccount does not exist).
	ServiceAccount string
	// Problems lists what among SecretNames (and the ServiceAccount) the kubelet cannot
	// use, in the order listed.
	Problems []Problem

	// scopes[i] says which repositories Problems[i] could explain a failed pull of.
	scopes []scope
	// secrets are the secrets the kubelet reads, in the order listed.
	secrets []*parsedSecret
}

// Credentials returns the credentials the kubelet tries for repo, in its order
// (credentialprovider.BasicDockerKeyring.Lookup): the entries of every listed secret whose
// key matches repo, most specific key first (the keys reverse-sorted, so
// "registry.example.com/team" before "registry.example.com"), secrets in the order listed
// for the same key; when none matches and repo is on Docker Hub, the entries filed under
// index.docker.io. An empty result means the kubelet pulls without credentials (as far as
// pod-level secrets go). While some secret is Unparseable the kubelet pulls nothing at all;
// Credentials still answers for the secrets that parse.
func (k *Keyring) Credentials(repo name.Repository) []Credential {
	if len(k.secrets) == 0 {
		return nil
	}
	image := kubeletImageName(repo)
	var matched []secretEntry
	for _, s := range k.secrets {
		for _, e := range s.matches(image) {
			matched = append(matched, secretEntry{secret: s.name, provider: s.provider, entry: e})
		}
	}
	if len(matched) == 0 && isDefaultRegistryMatch(image) {
		for _, s := range k.secrets {
			for _, e := range s.entries {
				if e.key == defaultRegistryHost {
					matched = append(matched, secretEntry{secret: s.name, provider: s.provider, entry: e})
				}
			}
		}
	}
	if len(matched) == 0 {
		return nil
	}
	// Lookup walks one index of every secret's keys, reverse-sorted, and under each key the
	// entries in the order they were added, i.e. the order the secrets are listed. Each
	// secret's matches are already in key order; a stable sort keeps the secrets' order.
	slices.SortStableFunc(matched, func(a, b secretEntry) int { return strings.Compare(b.entry.key, a.entry.key) })
	out := make([]Credential, len(matched))
	for i, m := range matched {
		out[i] = Credential{Secret: m.secret, Entry: m.entry.key, Auth: m.entry.auth}
		if m.provider {
			out[i].Secret, out[i].Provider = "", m.secret
		}
	}
	return out
}

// Unparseable returns the problems of the listed secrets whose docker config does not
// decode. While there is one, the kubelet fails every pull of the pod, whatever the image:
// MakeDockerKeyring returns the decoding error (pkg/credentialprovider/secrets/secrets.go,
// secretsToTrackedDockerConfigs) and the image manager returns it as the pull's error
// (pkg/kubelet/images/image_manager.go, EnsureImageExists and makeLookupPullCredentialsFunc).
func (k *Keyring) Unparseable() []Problem {
	var out []Problem
	for _, p := range k.Problems {
		if p.Kind == Unparseable {
			out = append(out, p)
		}
	}
	return out
}

// ProblemsFor returns the Problems that could explain why a pull from repo is refused: a
// secret that parsed and has no entry for repo's registry is not among them, since fixing
// it would not change that pull. Missing secrets, an unknown ServiceAccount and secrets
// whose content cannot be read could hold anything, so they always are.
func (k *Keyring) ProblemsFor(repo name.Repository) []Problem {
	var out []Problem
	image := kubeletImageName(repo)
	for i, p := range k.Problems {
		// A problem added by hand (not by ForPod or FromSecrets) has no scope: it could be
		// about anything.
		if i >= len(k.scopes) || k.scopes[i].covers(image) {
			out = append(out, p)
		}
	}
	return out
}

// Join returns the keyring of a pod that lists the secrets of every keyring in krs, in
// order: what a pod's keyring becomes when secrets are appended to its imagePullSecrets.
func Join(krs ...*Keyring) *Keyring {
	out := &Keyring{}
	for _, kr := range krs {
		if kr == nil {
			continue
		}
		if out.ServiceAccount == "" {
			out.ServiceAccount = kr.ServiceAccount
		}
		out.SecretNames = append(out.SecretNames, kr.SecretNames...)
		out.Problems = append(out.Problems, kr.Problems...)
		out.scopes = append(out.scopes, kr.scopes...)
		out.secrets = append(out.secrets, kr.secrets...)
	}
	return out
}

// FromSecrets returns the keyring the kubelet builds from a pod's pull secrets, in the
// order given (credentialprovider/secrets.MakeDockerKeyring). It reads no API: every
// secret is taken to exist. A secret listed twice is added twice, as the kubelet does.
func FromSecrets(secrets []corev1.Secret) *Keyring {
	k := &Keyring{}
	for i := range secrets {
		k.SecretNames = append(k.SecretNames, secrets[i].Name)
		k.add(&secrets[i])
	}
	return k
}

// Option configures ForPod.
type Option func(*options)

type options struct {
	api client.Reader
}

// WithAPIReader makes ForPod read a Secret or ServiceAccount that its reader does not find
// again from api, which should read the API server directly (in the webhook,
// mgr.GetAPIReader()): an object created together with the workload (helm install, an Argo
// CD sync, kubectl apply -f dir/, External Secrets) may not be in the informer's cache yet,
// and the kubelet reads secrets when it pulls, not when the pod is admitted. Default: none,
// what the reader does not find is missing.
func WithAPIReader(api client.Reader) Option {
	return func(o *options) { o.api = api }
}

// get reads key into obj from r, then from the API reader when r does not find it.
func (o *options) get(ctx context.Context, r client.Reader, key types.NamespacedName, obj client.Object) error {
	err := r.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) && o.api != nil {
		err = o.api.Get(ctx, key, obj)
	}
	return err
}

// ForPod builds the Keyring of a pod in namespace. spec.ImagePullSecrets win; when the pod lists
// none, the ServiceAccount's (spec.ServiceAccountName, "default" when empty) are used, as the
// ServiceAccount admission plugin copies them into the pod. A secret listed twice is read
// once: adding its entries again after themselves cannot change what a pull does.
func ForPod(ctx context.Context, r client.Reader, namespace string, spec *corev1.PodSpec, opts ...Option) (*Keyring, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	k := &Keyring{}
	refs := spec.ImagePullSecrets
	if len(refs) == 0 {
		saName := spec.ServiceAccountName
		if saName == "" {
			saName = "default"
		}
		var sa corev1.ServiceAccount
		err := o.get(ctx, r, types.NamespacedName{Namespace: namespace, Name: saName}, &sa)
		switch {
		case apierrors.IsNotFound(err):
			// The "default" ServiceAccount is created by a controller, without pull secrets,
			// moments after its namespace: none is the best guess. A named one is created by
			// whoever creates the workload, and may carry pull secrets pullgate cannot know.
			if saName != "default" {
				k.addProblem(Problem{ServiceAccount: saName, Kind: ServiceAccountMissing,
					Detail: fmt.Sprintf("service account %q does not exist in namespace %q", saName, namespace)}, scope{all: true})
			}
		case err != nil:
			return nil, fmt.Errorf("reading service account %s/%s: %w", namespace, saName, err)
		default:
			refs = sa.ImagePullSecrets
			if len(refs) > 0 {
				k.ServiceAccount = saName
			}
		}
	}
	seen := make(map[string]bool, len(refs))
	for _, ref := range refs {
		// The kubelet ignores an empty name (getPullSecretsForPod).
		if ref.Name == "" || seen[ref.Name] {
			continue
		}
		seen[ref.Name] = true
		k.SecretNames = append(k.SecretNames, ref.Name)

		var secret corev1.Secret
		err := o.get(ctx, r, types.NamespacedName{Namespace: namespace, Name: ref.Name}, &secret)
		if apierrors.IsNotFound(err) {
			k.addProblem(Problem{Secret: ref.Name, Kind: Missing,
				Detail: fmt.Sprintf("secret %q does not exist in namespace %q", ref.Name, namespace)}, scope{all: true})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading secret %s/%s: %w", namespace, ref.Name, err)
		}
		k.add(&secret)
	}
	return k, nil
}

func (k *Keyring) addProblem(p Problem, s scope) {
	k.Problems = append(k.Problems, p)
	k.scopes = append(k.scopes, s)
}

// add adds a secret that exists: its entries when the kubelet reads it, its problems.
func (k *Keyring) add(secret *corev1.Secret) {
	ps := parsedSecretOf(secret)
	for i, p := range ps.problems {
		k.addProblem(p, ps.scopes[i])
	}
	if ps.read && ps.err == nil {
		k.secrets = append(k.secrets, ps)
	}
}

// entry is one docker config entry as the kubelet files it.
type entry struct {
	key  string
	auth authn.Authenticator
}

type secretEntry struct {
	secret   string
	provider bool
	entry    entry
}

// parsedSecret is one version of a pull secret, decoded.
type parsedSecret struct {
	name string
	// provider says name is a credential provider plugin's, not a secret's (FromProvider).
	provider bool
	// read is whether the kubelet reads the secret at all (its type and data key).
	read bool
	// err is the decoding error of a secret the kubelet reads.
	err error
	// entries are sorted by key, reverse, as the kubelet's index; entries under one key by
	// their name in the config. (The kubelet adds them in map order, which is random.)
	entries  []entry
	problems []Problem
	scopes   []scope
	// byImage remembers which entries match an image: matching parses every key as a URL,
	// and the same few images are asked about on every admission. Bounded; safe for
	// concurrent use.
	byImage *lru.Cache[string, []entry]
}

// matches returns the entries whose key matches image, in key order.
func (ps *parsedSecret) matches(image string) []entry {
	if es, ok := ps.byImage.Get(image); ok {
		return es
	}
	var es []entry
	for _, e := range ps.entries {
		if keyMatches(e.key, image) {
			es = append(es, e)
		}
	}
	ps.byImage.Add(image, es)
	return es
}

// parsed keeps the decoded docker config of each pull secret version, so that a warm
// admission does not decode it again. Keyed by UID and resourceVersion: an update is decoded
// afresh. Bounded: a deleted or rotated secret's credentials stay in memory until evicted,
// as the informer's copy of a live secret does.
var parsed = func() *lru.Cache[string, *parsedSecret] {
	c, err := lru.New[string, *parsedSecret](4096)
	if err != nil {
		panic(err)
	}
	return c
}()

func parsedSecretOf(secret *corev1.Secret) *parsedSecret {
	if secret.UID == "" || secret.ResourceVersion == "" {
		return parseSecret(secret)
	}
	key := string(secret.UID) + "@" + secret.ResourceVersion
	if ps, ok := parsed.Get(key); ok && ps.name == secret.Name {
		return ps
	}
	ps := parseSecret(secret)
	parsed.Add(key, ps)
	return ps
}

// parseSecret decodes secret as the kubelet does (dockerConfigOf) and files its entries as
// BasicDockerKeyring.Add does (entryKey).
func parseSecret(secret *corev1.Secret) *parsedSecret {
	ps := &parsedSecret{name: secret.Name}
	ps.byImage, _ = lru.New[string, []entry](64)
	cfg, read, err := dockerConfigOf(secret)
	ps.read, ps.err = read, err
	problem := func(kind ProblemKind, s scope, format string, args ...any) {
		ps.problems = append(ps.problems, Problem{Secret: secret.Name, Kind: kind, Detail: fmt.Sprintf(format, args...)})
		ps.scopes = append(ps.scopes, s)
	}
	switch {
	case !read:
		s := wrongTypeScope(secret)
		switch key := dataKey(secret.Type); {
		case key == "":
			problem(WrongType, s, "secret %q has type %q; the kubelet only reads %q and %q", secret.Name, secret.Type,
				corev1.SecretTypeDockerConfigJson, corev1.SecretTypeDockercfg)
		default:
			problem(WrongType, s, "secret %q of type %q has no %q data", secret.Name, secret.Type, key)
		}
		return ps
	case err != nil:
		problem(Unparseable, scope{all: true}, "secret %q does not hold a docker config the kubelet can parse: %v", secret.Name, err)
		return ps
	}

	var skipped, noUsername []string
	for _, registry := range slices.Sorted(maps.Keys(cfg)) {
		key, ok := entryKey(registry)
		if !ok {
			skipped = append(skipped, strings.ToLower(registry))
			continue
		}
		e := cfg[registry]
		auth := authn.Anonymous
		// containerd's CRI (internal/cri/server/images/image_pull.go, ParseAuth) and CRI-O
		// (server/image_pull.go) send credentials only when there is a username.
		if e.Username != "" {
			auth = authn.FromConfig(authn.AuthConfig{Username: e.Username, Password: e.Password})
		} else {
			noUsername = append(noUsername, key)
		}
		ps.entries = append(ps.entries, entry{key: key, auth: auth})
	}
	if len(noUsername) > 0 {
		// One problem per secret: a docker config.json copied from a machine with a
		// credential store has an empty entry per registry ever logged in to.
		problem(NoUsername, scope{keys: noUsername},
			"%s in secret %q no username (only an identity token, or nothing); the kubelet reads only username and password or auth",
			keysPhrase(noUsername), secret.Name)
	}
	slices.SortStableFunc(ps.entries, func(a, b entry) int { return strings.Compare(b.key, a.key) })
	if len(skipped) > 0 {
		// The names are not quoted: a name that is not a URL may be anything.
		problem(EntrySkipped, scope{names: skipped},
			"%s in secret %q %s not a valid URL", entriesPhrase(len(skipped)), secret.Name, isAre(len(skipped)))
	}
	return ps
}

// dataKey is the data key a docker config secret type keeps its config under, or "".
func dataKey(t corev1.SecretType) string {
	switch t {
	case corev1.SecretTypeDockerConfigJson:
		return corev1.DockerConfigJsonKey
	case corev1.SecretTypeDockercfg:
		return corev1.DockerConfigKey
	}
	return ""
}

// wrongTypeScope is the scope of a secret the kubelet ignores: the registries of the docker
// config its data holds under either key, when that decodes (a kubernetes.io/dockercfg
// secret with a .dockerconfigjson, an Opaque one with either), else every registry.
func wrongTypeScope(secret *corev1.Secret) scope {
	var keys []string
	found := false
	for _, t := range []corev1.SecretType{corev1.SecretTypeDockerConfigJson, corev1.SecretTypeDockercfg} {
		as := corev1.Secret{Type: t, Data: map[string][]byte{dataKey(t): secret.Data[dataKey(t)]}}
		cfg, read, err := dockerConfigOf(&as)
		if !read {
			continue
		}
		if err != nil {
			return scope{all: true}
		}
		found = true
		for registry := range cfg {
			if key, ok := entryKey(registry); ok {
				keys = append(keys, key)
			} else {
				return scope{all: true}
			}
		}
	}
	if !found {
		return scope{all: true}
	}
	return scope{keys: keys}
}

// scope is which images a Problem could explain a refused pull of.
type scope struct {
	// all: any image (the secret's content is unknown or does not decode).
	all bool
	// keys: images that one of these keys matches, as the kubelet matches them.
	keys []string
	// names: images whose registry host is in one of these lower-cased entry names.
	names []string
}

func (s scope) covers(image string) bool {
	if s.all {
		return true
	}
	for _, k := range s.keys {
		if keyMatches(k, image) || (k == defaultRegistryHost && isDefaultRegistryMatch(image)) {
			return true
		}
	}
	host, _, _ := strings.Cut(image, "/")
	host = strings.ToLower(host)
	for _, n := range s.names {
		if strings.Contains(n, host) {
			return true
		}
	}
	return false
}

// keysPhrase names entries by their keys, at most three: `the entry for "a" has`,
// `the entries for "a", "b" and 2 more have`.
func keysPhrase(keys []string) string {
	var quoted []string
	for i, k := range keys {
		if i == 3 {
			quoted[len(quoted)-1] += fmt.Sprintf(" and %d more", len(keys)-3)
			break
		}
		quoted = append(quoted, fmt.Sprintf("%q", truncate(k, 80)))
	}
	if len(keys) == 1 {
		return "the entry for " + quoted[0] + " has"
	}
	return "the entries for " + strings.Join(quoted, ", ") + " have"
}

// truncate bounds a registry key in a message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// entriesPhrase is "1 entry's registry name", "2 entries' registry names".
func entriesPhrase(n int) string {
	if n == 1 {
		return "1 entry's registry name"
	}
	return fmt.Sprintf("%d entries' registry names", n)
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}
