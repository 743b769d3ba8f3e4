package pullsecrets

import (
	"net"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// The functions in this file are the kubelet's keyring rules, from k8s.io/kubernetes
// pkg/credentialprovider/keyring.go, statement for statement where a rule is subtle: how an
// entry's key is filed (BasicDockerKeyring.Add), how a key matches an image
// (URLsMatchStr, URLsMatch, SplitURL, ParseSchemelessURL), the order of matches
// (BasicDockerKeyring.Lookup: the index reverse-sorted) and the Docker Hub fallback
// (isDefaultRegistryMatch, defaultRegistryHost). hack/tools/keyringdiff runs them against
// the kubelet's own code.

// defaultRegistryHost is the key whose credentials the kubelet uses for a Docker Hub image
// when no key matched it (credentialprovider.defaultRegistryHost). Keys "index.docker.io",
// "https://index.docker.io/v1/" and "index.docker.io/v2/" are all filed under it; "docker.io"
// is not, but matches Docker Hub images directly, since the kubelet looks them up as
// docker.io/….
const defaultRegistryHost = "index.docker.io"

// entryKey is where BasicDockerKeyring.Add files a docker config entry: the host (with its
// port) and the path of the entry's name read as an https URL (a scheme it names is
// dropped), a leading /v1/ or /v2/ path segment removed, a path of "" or "/" dropped. ok is
// false for a name that does not parse as a URL, which the kubelet logs and skips.
func entryKey(registry string) (key string, ok bool) {
	if !strings.HasPrefix(registry, "https://") && !strings.HasPrefix(registry, "http://") {
		registry = "https://" + registry
	}
	parsed, err := url.Parse(registry)
	if err != nil {
		return "", false
	}
	// "The docker client allows exact matches: foo.bar.com/namespace, or hostname matches:
	// foo.bar.com. It also considers /v2/ and /v1/ equivalent to the hostname." (Add)
	effectivePath := parsed.Path
	if strings.HasPrefix(effectivePath, "/v2/") || strings.HasPrefix(effectivePath, "/v1/") {
		effectivePath = effectivePath[3:]
	}
	if len(effectivePath) > 0 && effectivePath != "/" {
		return parsed.Host + effectivePath, true
	}
	return parsed.Host, true
}

// kubeletImageName is the name the kubelet looks an image's credentials up by: the
// repository as github.com/distribution/reference's ParseNormalizedNamed(image).Name()
// gives it (pkg/util/parsers.ParseImageName), Docker Hub as docker.io and official images
// under library/: "docker.io/library/nginx", "ghcr.io/acme/app", "localhost:5000/app".
func kubeletImageName(repo name.Repository) string {
	host := repo.RegistryStr()
	if host == name.DefaultRegistry {
		host = "docker.io"
	}
	return host + "/" + repo.RepositoryStr()
}

// isDefaultRegistryMatch is credentialprovider.isDefaultRegistryMatch: whether the kubelet
// takes image to be on Docker Hub, which only decides whether keys filed under
// defaultRegistryHost are used when no key matched. Like the kubelet, it also says yes for a
// first component without "." or ":" (such as "localhost/app").
func isDefaultRegistryMatch(image string) bool {
	parts := strings.SplitN(image, "/", 2)
	if len(parts[0]) == 0 {
		return false
	}
	if len(parts) == 1 {
		return true
	}
	if parts[0] == "docker.io" || parts[0] == "index.docker.io" {
		return true
	}
	return !strings.ContainsAny(parts[0], ".:")
}

// keyMatches is credentialprovider.URLsMatchStr(key, image): both read as schemeless URLs;
// the ports must be equal (no port matches only no port), the hosts must have as many
// dot-separated parts and each key part must filepath.Match the image's (so "*.example.com"
// matches a.example.com, not example.com or a.b.example.com), and the key's path must be a
// string prefix of the image's ("example.com/team" matches "example.com/teamster/app" too).
// A key or image that does not parse, or a malformed pattern, matches nothing.
func keyMatches(key, image string) bool {
	globURL, err := parseSchemelessURL(key)
	if err != nil {
		return false
	}
	targetURL, err := parseSchemelessURL(image)
	if err != nil {
		return false
	}
	globParts, globPort := splitURL(globURL)
	targetParts, targetPort := splitURL(targetURL)
	if globPort != targetPort {
		return false
	}
	if len(globParts) != len(targetParts) {
		return false
	}
	if !strings.HasPrefix(targetURL.Path, globURL.Path) {
		return false
	}
	for i, globPart := range globParts {
		// filepath.Match, as the kubelet: on Linux nodes it is path.Match.
		matched, err := filepath.Match(globPart, targetParts[i])
		if err != nil || !matched {
			return false
		}
	}
	return true
}

// parseSchemelessURL is credentialprovider.ParseSchemelessURL.
func parseSchemelessURL(schemelessURL string) (*url.URL, error) {
	parsed, err := url.Parse("https://" + schemelessURL)
	if err != nil {
		return nil, err
	}
	parsed.Scheme = ""
	return parsed, nil
}

// splitURL is credentialprovider.SplitURL: the host's dot-separated parts and the port.
func splitURL(u *url.URL) (parts []string, port string) {
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		host, port = u.Host, ""
	}
	return strings.Split(host, "."), port
}

// KeyMatches reports whether a docker config key or a credential provider's matchImages
// entry matches image, the name KubeletImageName gives, as the kubelet's
// credentialprovider.URLsMatchStr does (see keyMatches).
func KeyMatches(key, image string) bool { return keyMatches(key, image) }

// KubeletImageName is the name the kubelet looks repo's credentials up by, and sends to
// credential provider plugins as CredentialProviderRequest.image: "docker.io/library/nginx",
// "ghcr.io/acme/app" (pkg/kubelet/images/image_manager.go, makeLookupPullCredentialsFunc:
// "repoToPull, _, _, err := parsers.ParseImageName(image)" then "keyring.Lookup(repoToPull)").
func KubeletImageName(repo name.Repository) string { return kubeletImageName(repo) }
