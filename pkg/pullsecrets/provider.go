package pullsecrets

import (
	"maps"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	lru "github.com/hashicorp/golang-lru/v2"
)

// ProviderAuth is one entry of a kubelet credential provider plugin's response
// (credentialprovider.kubelet.k8s.io/v1 CredentialProviderResponse.Auth).
type ProviderAuth struct {
	Username string
	Password string
}

// FromProvider returns the keyring of the credentials a kubelet credential provider plugin
// named provider returned, filed as the kubelet files them: the kubelet adds every plugin's
// response to one BasicDockerKeyring (k8s.io/kubernetes pkg/credentialprovider/plugin/
// plugins.go, externalCredentialProviderKeyring.Lookup: "keyring.Add(..., dockerConfig)",
// then "keyring.Lookup(image)"), so the keys of a response match images by the same rules as
// a pull secret's, and Join of the plugins' keyrings, in the configuration's order, is that
// keyring. Its Credentials carry Provider, not Secret. An entry whose name is not a URL is
// skipped, as Add skips it; one without a username is pulled with anonymously.
func FromProvider(provider string, auths map[string]ProviderAuth) *Keyring {
	ps := &parsedSecret{name: provider, provider: true, read: true}
	ps.byImage, _ = lru.New[string, []entry](64)
	for _, registry := range slices.Sorted(maps.Keys(auths)) {
		key, ok := entryKey(registry)
		if !ok {
			continue
		}
		a := auths[registry]
		auth := authn.Anonymous
		if a.Username != "" {
			auth = authn.FromConfig(authn.AuthConfig{Username: a.Username, Password: a.Password})
		}
		ps.entries = append(ps.entries, entry{key: key, auth: auth})
	}
	slices.SortStableFunc(ps.entries, func(a, b entry) int { return strings.Compare(b.key, a.key) })
	return &Keyring{secrets: []*parsedSecret{ps}}
}
