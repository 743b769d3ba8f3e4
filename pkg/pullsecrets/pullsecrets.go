package pullsecrets

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/authn"
	kauth "github.com/google/go-containerregistry/pkg/authn/kubernetes"
	"github.com/google/go-containerregistry/pkg/name"
	lru "github.com/hashicorp/golang-lru/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ProblemKind says what is wrong with a listed pull secret.
type ProblemKind string

const (
	// Missing: the secret does not exist in the pod's namespace.
	Missing ProblemKind = "missing"
	// WrongType: the secret is not of type kubernetes.io/dockerconfigjson or
	// kubernetes.io/dockercfg, or lacks the data key its type requires; the kubelet ignores it.
	WrongType ProblemKind = "wrong type"
	// Unparseable: the docker config in the secret cannot be parsed.
	Unparseable ProblemKind = "unparseable"
)

// Problem is a listed pull secret the kubelet cannot use. It never holds secret data.
type Problem struct {
	Secret string
	Kind   ProblemKind
	// Detail is a short human explanation, free of secret data.
	Detail string
}

// Credential is one docker config entry that applies to a repository, and the secret it is in.
type Credential struct {
	Secret string
	Auth   authn.Authenticator
}

// Keyring is the set of pull secrets a pod's pulls would use.
type Keyring struct {
	// SecretNames are the secrets in the order the kubelet tries them.
	SecretNames []string
	// ServiceAccount is the ServiceAccount the names came from, or "" when the pod listed
	// its own imagePullSecrets.
	ServiceAccount string
	// Problems lists the secrets among SecretNames the kubelet cannot use.
	Problems []Problem

	usable []secretKeychain
}

type secretKeychain struct {
	name     string
	keychain authn.Keychain
}

// Credentials returns the credentials that apply to repo, in the order the kubelet tries
// them. An empty result means the kubelet pulls anonymously (as far as pod-level secrets go).
func (k *Keyring) Credentials(repo name.Repository) []Credential {
	var out []Credential
	for _, s := range k.usable {
		auth, err := s.keychain.Resolve(repo)
		if err != nil || auth == authn.Anonymous {
			continue
		}
		out = append(out, Credential{Secret: s.name, Auth: auth})
	}
	return out
}

// ForPod builds the Keyring of a pod in namespace. spec.ImagePullSecrets win; when the pod lists
// none, the ServiceAccount's (spec.ServiceAccountName, "default" when empty) are used. A missing
// ServiceAccount is not an error: the pod then has no pull secrets.
func ForPod(ctx context.Context, r client.Reader, namespace string, spec *corev1.PodSpec) (*Keyring, error) {
	k := &Keyring{}
	refs := spec.ImagePullSecrets
	if len(refs) == 0 {
		saName := spec.ServiceAccountName
		if saName == "" {
			saName = "default"
		}
		var sa corev1.ServiceAccount
		err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: saName}, &sa)
		switch {
		case apierrors.IsNotFound(err):
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
		if ref.Name == "" || seen[ref.Name] {
			continue
		}
		seen[ref.Name] = true
		k.SecretNames = append(k.SecretNames, ref.Name)

		var secret corev1.Secret
		err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.Name}, &secret)
		if apierrors.IsNotFound(err) {
			k.Problems = append(k.Problems, Problem{Secret: ref.Name, Kind: Missing,
				Detail: fmt.Sprintf("secret %q does not exist in namespace %q", ref.Name, namespace)})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading secret %s/%s: %w", namespace, ref.Name, err)
		}
		if p := usableProblem(&secret); p != nil {
			k.Problems = append(k.Problems, *p)
			continue
		}
		kc, err := keychainFor(ctx, &secret)
		if err != nil {
			// The parser's error can quote the config; say where, not what.
			k.Problems = append(k.Problems, Problem{Secret: ref.Name, Kind: Unparseable,
				Detail: fmt.Sprintf("secret %q does not hold a valid docker config", ref.Name)})
			continue
		}
		k.usable = append(k.usable, secretKeychain{name: ref.Name, keychain: kc})
	}
	return k, nil
}

// usableProblem reports why the kubelet would skip secret, or nil when it would read it.
func usableProblem(secret *corev1.Secret) *Problem {
	var key string
	switch secret.Type {
	case corev1.SecretTypeDockerConfigJson:
		key = corev1.DockerConfigJsonKey
	case corev1.SecretTypeDockercfg:
		key = corev1.DockerConfigKey
	default:
		return &Problem{Secret: secret.Name, Kind: WrongType, Detail: fmt.Sprintf(
			"secret %q has type %q; the kubelet only reads %q and %q", secret.Name, secret.Type,
			corev1.SecretTypeDockerConfigJson, corev1.SecretTypeDockercfg)}
	}
	if len(secret.Data[key]) == 0 {
		return &Problem{Secret: secret.Name, Kind: WrongType, Detail: fmt.Sprintf(
			"secret %q of type %q has no %q data", secret.Name, secret.Type, key)}
	}
	return nil
}

// keychains keeps the parsed docker config of each pull secret version, so that a warm
// admission does not parse it again. Keyed by UID and resourceVersion: an update is parsed
// afresh. Bounded: a deleted or rotated secret's credentials stay in memory until evicted,
// as the informer's copy of a live secret does.
var keychains = func() *lru.Cache[string, authn.Keychain] {
	c, err := lru.New[string, authn.Keychain](4096)
	if err != nil {
		panic(err)
	}
	return c
}()

func keychainFor(ctx context.Context, secret *corev1.Secret) (authn.Keychain, error) {
	if secret.UID == "" || secret.ResourceVersion == "" {
		return kauth.NewFromPullSecrets(ctx, []corev1.Secret{*secret})
	}
	key := string(secret.UID) + "@" + secret.ResourceVersion
	if kc, ok := keychains.Get(key); ok {
		return kc, nil
	}
	kc, err := kauth.NewFromPullSecrets(ctx, []corev1.Secret{*secret})
	if err != nil {
		return nil, err
	}
	memo := &memoKeychain{keychain: kc}
	memo.byRepo, _ = lru.New[string, authn.Authenticator](64)
	keychains.Add(key, memo)
	return memo, nil
}

// memoKeychain remembers what a parsed pull secret answers for each repository: matching a
// repository against the secret's entries parses every entry as a URL, and the same few
// repositories are asked about on every admission.
var _ authn.Keychain = (*memoKeychain)(nil)

type memoKeychain struct {
	keychain authn.Keychain
	byRepo   *lru.Cache[string, authn.Authenticator] // bounded; safe for concurrent use
}

func (m *memoKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	key := r.String()
	if auth, ok := m.byRepo.Get(key); ok {
		return auth, nil
	}
	auth, err := m.keychain.Resolve(r)
	if err != nil {
		return nil, err
	}
	m.byRepo.Add(key, auth)
	return auth, nil
}
