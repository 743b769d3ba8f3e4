package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// MutationPolicy turns on and configures the mutating webhook (/mutate): mirror rewrite,
// pull-secret injection and digest pinning of Pods at creation. Its zero value, the
// default, changes nothing.
type MutationPolicy struct {
	// Enabled is the master switch: false (the default) turns every mutation off, whatever
	// the rules below say.
	Enabled bool `json:"enabled,omitempty"`
	// Mirrors rewrite images of a registry (optionally only below a repository prefix) to the
	// first listed mirror that has the image and the platforms the pod needs.
	Mirrors []MirrorRule `json:"mirrors,omitempty"`
	// PullSecrets add a secret to a pod's imagePullSecrets when the pod has no credential for
	// the registry and the secret exists in the pod's namespace.
	PullSecrets []PullSecretRule `json:"pullSecrets,omitempty"`
	// PinDigests rewrites image:tag to image:tag@sha256:… (the digest the tag names now, looked
	// up with the pod's own credentials), so every node runs the same bytes. Default false.
	PinDigests bool `json:"pinDigests,omitempty"`
}

// MirrorRule maps images of one registry to its mirrors.
type MirrorRule struct {
	// Registry is the registry whose images are rewritten: host[:port], no wildcard.
	// docker.io, index.docker.io and registry-1.docker.io all name Docker Hub, which is where
	// short names such as "nginx" (docker.io/library/nginx) come from. An entry without a port
	// matches the host on any port, as in registries.allowed.
	Registry string `json:"registry"`
	// RepositoryPrefix, when set, limits the rule to repositories equal to it or below it
	// ("bitnami" matches bitnami/redis, not bitnamix/redis), compared with the normalised
	// repository path (Docker Hub's official images are under "library").
	RepositoryPrefix string `json:"repositoryPrefix,omitempty"`
	// Mirrors are tried in order: host[:port] or host[:port]/path. The image's repository path
	// is appended unchanged: docker.io/library/nginx:1.27 with mirror
	// "mirror.internal:5000/dockerhub" becomes mirror.internal:5000/dockerhub/library/nginx:1.27.
	Mirrors []string `json:"mirrors"`
}

// PullSecretRule names the pull secret that holds credentials for a registry.
type PullSecretRule struct {
	// Registry is host[:port], no wildcard, matched as in MirrorRule.
	Registry string `json:"registry"`
	// SecretName is the secret (of type kubernetes.io/dockerconfigjson or dockercfg) in the
	// pod's own namespace. pullgate never creates or copies it.
	SecretName string `json:"secretName"`
}

// MaxMirrorsPerRule bounds MirrorRule.Mirrors: each mirror tried costs a look-up inside one
// admission's lookupTimeout.
const MaxMirrorsPerRule = 5

// MutationsEnabledFor reports whether Pods created in namespace, whose labels are
// namespaceLabels, are mutated at all: mutations are enabled, the namespace is not in
// ExemptNamespaces, and its NamespaceModeLabel does not say "off".
func (p *Policy) MutationsEnabledFor(namespace string, namespaceLabels map[string]string) bool {
	if !p.Mutations.Enabled || p.NamespaceExempt(namespace) {
		return false
	}
	m, ok := p.namespaceMode(namespaceLabels)
	return !ok || m != Off
}

// RegistryMatches reports whether a rule's registry entry (host[:port], as
// MirrorRule.Registry and PullSecretRule.Registry hold it) matches the registry host of an
// image (host[:port], as name.Registry's RegistryStr gives it), with the matching rules of
// registries.allowed: case-insensitive, Docker Hub's names are one registry, an entry without
// a port matches any port.
func RegistryMatches(entry, host string) bool {
	h, ok := parseHost(host)
	return ok && matchesAny([]string{entry}, h)
}

// SplitMirror splits a mirror entry, host[:port] or host[:port]/path, into its registry host
// and repository path ("" when it has none). It reports an error for anything else.
func SplitMirror(mirror string) (host, path string, err error) {
	if strings.Contains(mirror, "://") {
		return "", "", errors.New("must be host[:port][/path], without a scheme")
	}
	host, path, hasPath := strings.Cut(mirror, "/")
	if err := checkRuleRegistry(host); err != nil {
		return "", "", err
	}
	if hasPath {
		if err := checkRepositoryPath(path); err != nil {
			return "", "", fmt.Errorf("path: %w", err)
		}
	}
	return host, path, nil
}

// pathComponent is one component of a repository path, as the distribution reference grammar
// has it.
var pathComponent = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)

// checkRepositoryPath checks a repository path (a/b/c) against the reference grammar.
func checkRepositoryPath(path string) error {
	if path == "" {
		return errors.New("must not be empty")
	}
	if len(path) > 255 {
		return errors.New("must be at most 255 characters")
	}
	for c := range strings.SplitSeq(path, "/") {
		if !pathComponent.MatchString(c) {
			return fmt.Errorf("component %q must be lower-case letters and digits, separated by '.', '_', '__' or '-'", shorten(c))
		}
	}
	return nil
}

// checkRuleRegistry checks a rule's registry: one host[:port], no wildcard, no path.
func checkRuleRegistry(s string) error {
	e, err := parseHostEntry(s)
	if err != nil {
		return err
	}
	if e.wildcard {
		return errors.New("must be one registry host[:port], not a wildcard")
	}
	return nil
}

// canonicalRegistry is a registry entry in the form two entries naming the same registry
// share, for finding duplicate rules.
func canonicalRegistry(s string) string {
	e, err := parseHostEntry(s)
	if err != nil {
		return s
	}
	host := e.host
	for _, alias := range dockerHubHosts {
		if host == alias {
			host = dockerHubHosts[0]
		}
	}
	return host + ":" + e.port
}

// validateMutations reports the problems of p.Mutations. It is part of Validate (and so of
// Parse) whether or not mutations are enabled, so a policy that turns them on later has
// already been checked.
func (p *Policy) validateMutations() field.ErrorList {
	var errs field.ErrorList
	mp := field.NewPath("mutations")

	type ruleKey struct{ registry, prefix string }
	seenRules := make(map[ruleKey]bool)
	for i, r := range p.Mutations.Mirrors {
		rp := mp.Child("mirrors").Index(i)
		regOK := true
		if err := checkRuleRegistry(r.Registry); err != nil {
			regOK = false
			errs = append(errs, field.Invalid(rp.Child("registry"), shorten(r.Registry), err.Error()))
		}
		if r.RepositoryPrefix != "" {
			if err := checkRepositoryPath(r.RepositoryPrefix); err != nil {
				errs = append(errs, field.Invalid(rp.Child("repositoryPrefix"), shorten(r.RepositoryPrefix), err.Error()))
			}
		}
		if regOK {
			k := ruleKey{canonicalRegistry(r.Registry), r.RepositoryPrefix}
			if seenRules[k] {
				errs = append(errs, field.Duplicate(rp, shorten(r.Registry+" "+r.RepositoryPrefix)))
			}
			seenRules[k] = true
		}

		mirrorsPath := rp.Child("mirrors")
		switch n := len(r.Mirrors); {
		case n == 0:
			errs = append(errs, field.Required(mirrorsPath, "list at least one mirror"))
		case n > MaxMirrorsPerRule:
			errs = append(errs, field.TooMany(mirrorsPath, n, MaxMirrorsPerRule))
		}
		seenMirrors := make(map[string]bool, len(r.Mirrors))
		for j, m := range r.Mirrors {
			fp := mirrorsPath.Index(j)
			host, path, err := SplitMirror(m)
			if err != nil {
				errs = append(errs, field.Invalid(fp, shorten(m), err.Error()))
				continue
			}
			if seenMirrors[m] {
				errs = append(errs, field.Duplicate(fp, shorten(m)))
			}
			seenMirrors[m] = true
			if !p.RegistryAllowed(host) {
				errs = append(errs, field.Invalid(fp, shorten(m),
					"its registry is not allowed by registries.allowed/denied, so pods rewritten to it would be denied"))
			}
			if regOK && path == "" && RegistryMatches(r.Registry, host) {
				errs = append(errs, field.Invalid(fp, shorten(m), "must differ from the registry it mirrors"))
			}
		}
	}

	type secretKey struct{ registry, secret string }
	seenSecrets := make(map[secretKey]bool)
	for i, s := range p.Mutations.PullSecrets {
		sp := mp.Child("pullSecrets").Index(i)
		regOK := true
		if err := checkRuleRegistry(s.Registry); err != nil {
			regOK = false
			errs = append(errs, field.Invalid(sp.Child("registry"), shorten(s.Registry), err.Error()))
		}
		secretOK := true
		if s.SecretName == "" {
			secretOK = false
			errs = append(errs, field.Required(sp.Child("secretName"), "name the pull secret in the pod's namespace"))
		} else if msgs := content.IsDNS1123Subdomain(s.SecretName); len(msgs) > 0 {
			secretOK = false
			errs = append(errs, field.Invalid(sp.Child("secretName"), shorten(s.SecretName),
				"must be a secret name: "+strings.Join(msgs, "; ")))
		}
		if regOK && secretOK {
			k := secretKey{canonicalRegistry(s.Registry), s.SecretName}
			if seenSecrets[k] {
				errs = append(errs, field.Duplicate(sp, shorten(s.Registry+" "+s.SecretName)))
			}
			seenSecrets[k] = true
		}
	}
	return errs
}
