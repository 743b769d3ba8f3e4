package policy

import (
	"path"
	"slices"
	"strings"
)

// ModeFor returns the mode of check for a pod in a namespace with namespaceLabels. A
// namespace labelled NamespaceModeLabel with a valid mode (enforce, warn or off, exactly)
// gets that mode for every check, whatever Checks says; a label with any other value is
// ignored. Otherwise the mode is Checks[check], or DefaultMode(check) when Checks does not
// set it.
func (p *Policy) ModeFor(check Check, namespaceLabels map[string]string) Mode {
	if m, ok := p.namespaceMode(namespaceLabels); ok {
		return m
	}
	if m, ok := p.Checks[check]; ok && m.Valid() {
		return m
	}
	return DefaultMode(check)
}

// RegistryErrorMode returns what a registry that cannot be asked (unreachable, timeout,
// 429, 5xx) does to a pod in a namespace with namespaceLabels. A namespace labelled "off"
// gets Off (no finding at all) and one labelled "warn" gets Warn, as for ModeFor. A
// namespace labelled "enforce" keeps OnRegistryError as configured: a strict namespace asks
// that definite findings deny, and a registry outage is not a definite finding, so it must
// not start denying pods there unless the policy itself says so.
func (p *Policy) RegistryErrorMode(namespaceLabels map[string]string) Mode {
	if m, ok := p.namespaceMode(namespaceLabels); ok && m != Enforce {
		return m
	}
	if p.OnRegistryError == Enforce || p.OnRegistryError == Warn {
		return p.OnRegistryError
	}
	return DefaultOnRegistryError
}

// MissingSecretInTemplateMode returns what a pull secret or ServiceAccount that does not
// exist does to a workload's pod template in a namespace with namespaceLabels: the mode of
// checks.pullSecrets there (ModeFor), softened to OnMissingSecretInTemplate when that is
// Enforce. As for RegistryErrorMode, a namespace labelled "enforce" keeps
// OnMissingSecretInTemplate as configured: a secret that is yet to be created is not a
// definite finding.
func (p *Policy) MissingSecretInTemplateMode(namespaceLabels map[string]string) Mode {
	m := p.ModeFor(CheckPullSecrets, namespaceLabels)
	if m != Enforce {
		return m
	}
	if p.OnMissingSecretInTemplate == Enforce || p.OnMissingSecretInTemplate == Warn {
		return p.OnMissingSecretInTemplate
	}
	return DefaultOnMissingSecretInTemplate
}

// AllOff reports whether nothing can be reported for a pod in a namespace with
// namespaceLabels: every check is off and so are registry errors (the namespace's
// NamespaceModeLabel says "off"). Such a pod needs no look-up of any kind.
func (p *Policy) AllOff(namespaceLabels map[string]string) bool {
	if p.RegistryErrorMode(namespaceLabels) != Off {
		return false
	}
	for _, c := range Checks() {
		if p.ModeFor(c, namespaceLabels) != Off {
			return false
		}
	}
	return true
}

// namespaceMode returns the mode a namespace's labels set, if they set a valid one.
func (p *Policy) namespaceMode(labels map[string]string) (Mode, bool) {
	if p.NamespaceModeLabel == "" {
		return "", false
	}
	v, ok := labels[p.NamespaceModeLabel]
	if m := Mode(v); ok && m.Valid() {
		return m, true
	}
	return "", false
}

// NamespaceExempt reports whether ns is one of ExemptNamespaces.
func (p *Policy) NamespaceExempt(ns string) bool {
	return slices.Contains(p.ExemptNamespaces, ns)
}

// ImageExempt reports whether the normalised reference (registry/repository[:tag][@digest],
// e.g. "docker.io/library/busybox:1.36") matches one of ExemptImages with path.Match. As in
// path.Match, "*" does not match "/": "registry.k8s.io/*" matches
// "registry.k8s.io/pause:3.10" but not "registry.k8s.io/sig-storage/csi-attacher:v4".
// Docker Hub references match whether they are spelt "docker.io/…" or "index.docker.io/…".
func (p *Policy) ImageExempt(normalizedRef string) bool {
	if len(p.ExemptImages) == 0 {
		return false
	}
	candidates := []string{normalizedRef}
	if rest, ok := strings.CutPrefix(normalizedRef, "index.docker.io/"); ok {
		candidates = append(candidates, "docker.io/"+rest)
	} else if rest, ok := strings.CutPrefix(normalizedRef, "docker.io/"); ok {
		candidates = append(candidates, "index.docker.io/"+rest)
	}
	for _, pat := range p.ExemptImages {
		for _, c := range candidates {
			if exemptMatch(pat, c) {
				return true
			}
		}
	}
	return false
}

// exemptMatch is path.Match, but a pattern "P/**" matches a reference with more path
// components than P has when its leading components match P: "registry.example.com/**"
// matches "registry.example.com/a/b/c:v1", not "registry.example.com" or
// "registry.example.com.evil.com/a:v1".
func exemptMatch(pat, ref string) bool {
	prefix, ok := strings.CutSuffix(pat, "/**")
	if !ok {
		matched, err := path.Match(pat, ref)
		return err == nil && matched
	}
	n := strings.Count(prefix, "/") + 1
	parts := strings.SplitN(ref, "/", n+1)
	if len(parts) <= n || parts[n] == "" {
		return false
	}
	matched, err := path.Match(prefix, strings.Join(parts[:n], "/"))
	return err == nil && matched
}

// RegistryAllowed reports whether images may come from the registry host (host[:port], as
// name.Registry's RegistryStr gives it). Matching ignores case:
//   - a host in Denied is refused, whatever Allowed says;
//   - an empty Allowed allows every host not denied, otherwise the host must match an entry;
//   - an entry without a port matches its host on any port ("registry.local" matches
//     "registry.local:5000"); an entry with a port matches only that port, as spelt in the
//     image ("registry.local:443" does not match "registry.local");
//   - "*.example.com" matches a.example.com and a.b.example.com, never example.com;
//   - docker.io, index.docker.io and registry-1.docker.io are the same registry: an entry
//     naming one matches the others.
//
// A host that is not host[:port] matches no entry.
func (p *Policy) RegistryAllowed(host string) bool {
	if len(p.Registries.Allowed) == 0 && len(p.Registries.Denied) == 0 {
		return true // the default, and asked for every image of every admission
	}
	h, ok := parseHost(host)
	if !ok {
		return len(p.Registries.Allowed) == 0
	}
	if matchesAny(p.Registries.Denied, h) {
		return false
	}
	return len(p.Registries.Allowed) == 0 || matchesAny(p.Registries.Allowed, h)
}

// InsecureRegistry reports whether host (host[:port]) matches an entry of
// Registries.Insecure, with RegistryAllowed's matching rules. The registry client decides by
// itself that loopback hosts may use plain HTTP; this reports only the list.
func (p *Policy) InsecureRegistry(host string) bool {
	if len(p.Registries.Insecure) == 0 {
		return false
	}
	h, ok := parseHost(host)
	return ok && matchesAny(p.Registries.Insecure, h)
}

// parseHost parses a registry host as images name it (no wildcard).
func parseHost(s string) (hostEntry, bool) {
	h, err := parseHostEntry(s)
	if err != nil || h.wildcard {
		return hostEntry{}, false
	}
	return h, true
}

// dockerHubHosts are the names of Docker Hub's registry.
var dockerHubHosts = []string{"docker.io", "index.docker.io", "registry-1.docker.io"}

// matchesAny reports whether h, or an alias of it, matches one of the entries. Entries that
// do not parse match nothing (Validate reports them).
func matchesAny(entries []string, h hostEntry) bool {
	names := []hostEntry{h}
	if slices.Contains(dockerHubHosts, h.host) {
		for _, alias := range dockerHubHosts {
			if alias != h.host {
				names = append(names, hostEntry{host: alias, port: h.port})
			}
		}
	}
	for _, s := range entries {
		e, err := parseHostEntry(s)
		if err != nil {
			continue
		}
		for _, n := range names {
			if e.matches(n) {
				return true
			}
		}
	}
	return false
}

// matches reports whether entry e matches host h.
func (e hostEntry) matches(h hostEntry) bool {
	if e.port != "" && e.port != h.port {
		return false
	}
	if e.wildcard {
		return strings.HasSuffix(h.host, "."+e.host)
	}
	return h.host == e.host
}
