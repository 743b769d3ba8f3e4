package policy

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validate reports every problem with p as a *ValidationError, or nil. It expects a
// complete policy, as Parse and Default produce: an unset OnRegistryError,
// OnMissingSecretInTemplate, LookupTimeout,
// Cache.MaxEntries or NamespaceModeLabel is an error here. Checks may leave checks out
// (they keep their default mode) but may not name unknown ones.
func (p *Policy) Validate() error {
	if errs := p.validate(); len(errs) > 0 {
		return &ValidationError{Errors: errs}
	}
	return nil
}

func (p *Policy) validate() field.ErrorList {
	var errs field.ErrorList

	checksPath := field.NewPath("checks")
	for _, c := range sortedKeys(p.Checks) {
		fp := checksPath.Child(string(c))
		if _, known := defaultModes[c]; !known {
			errs = append(errs, field.NotSupported(fp, shorten(string(c)), Checks()))
			continue
		}
		if m := p.Checks[c]; !m.Valid() {
			errs = append(errs, field.NotSupported(fp, shorten(string(m)), []Mode{Enforce, Warn, Off}))
		}
	}

	if p.OnRegistryError != Enforce && p.OnRegistryError != Warn {
		errs = append(errs, field.NotSupported(field.NewPath("onRegistryError"),
			shorten(string(p.OnRegistryError)), []Mode{Enforce, Warn}))
	}
	if p.OnMissingSecretInTemplate != Enforce && p.OnMissingSecretInTemplate != Warn {
		errs = append(errs, field.NotSupported(field.NewPath("onMissingSecretInTemplate"),
			shorten(string(p.OnMissingSecretInTemplate)), []Mode{Enforce, Warn}))
	}

	timeoutPath := field.NewPath("lookupTimeout")
	switch d := p.LookupTimeout.Duration; {
	case d <= 0:
		errs = append(errs, field.Invalid(timeoutPath, d.String(), "must be greater than 0"))
	case d > MaxLookupTimeout:
		errs = append(errs, field.Invalid(timeoutPath, d.String(),
			fmt.Sprintf("must be at most %s: the API server waits at most 30s for a webhook", MaxLookupTimeout)))
	}

	cachePath := field.NewPath("cache")
	if d := p.Cache.TagTTL.Duration; d < 0 {
		errs = append(errs, field.Invalid(cachePath.Child("tagTTL"), d.String(), "must not be negative"))
	}
	if d := p.Cache.NegativeTTL.Duration; d < 0 {
		errs = append(errs, field.Invalid(cachePath.Child("negativeTTL"), d.String(), "must not be negative"))
	}
	if n := p.Cache.MaxEntries; n < 1 || n > MaxMaxEntries {
		errs = append(errs, field.Invalid(cachePath.Child("maxEntries"), n,
			fmt.Sprintf("must be between 1 and %d", MaxMaxEntries)))
	}

	for i, ns := range p.ExemptNamespaces {
		if msgs := content.IsDNS1123Label(ns); len(msgs) > 0 {
			errs = append(errs, field.Invalid(field.NewPath("exemptNamespaces").Index(i), shorten(ns),
				"must be a namespace name: "+strings.Join(msgs, "; ")))
		}
	}

	for i, pat := range p.ExemptImages {
		fp := field.NewPath("exemptImages").Index(i)
		if pat == "" {
			errs = append(errs, field.Invalid(fp, pat, "must not be empty"))
			continue
		}
		if _, err := path.Match(strings.TrimSuffix(pat, "/**"), ""); err != nil {
			errs = append(errs, field.Invalid(fp, shorten(pat), "must be a path.Match pattern: "+err.Error()))
		}
	}

	for i, pat := range p.NodeCredentials {
		fp := field.NewPath("nodeCredentials").Index(i)
		if err := validMatchImage(pat); err != nil {
			errs = append(errs, field.Invalid(fp, shorten(pat), err.Error()))
		}
	}

	regPath := field.NewPath("registries")
	for _, list := range []struct {
		name    string
		entries []string
	}{
		{"allowed", p.Registries.Allowed},
		{"denied", p.Registries.Denied},
		{"insecure", p.Registries.Insecure},
	} {
		for i, s := range list.entries {
			if _, err := parseHostEntry(s); err != nil {
				errs = append(errs, field.Invalid(regPath.Child(list.name).Index(i), shorten(s), err.Error()))
			}
		}
	}

	if msgs := content.IsLabelKey(p.NamespaceModeLabel); len(msgs) > 0 {
		errs = append(errs, field.Invalid(field.NewPath("namespaceModeLabel"), shorten(p.NamespaceModeLabel),
			"must be a label key: "+strings.Join(msgs, "; ")))
	}

	// Mutations are validated in mutations.go.
	errs = append(errs, p.validateMutations()...)
	return errs
}

// maxValueLen is how much of a bad value an error message quotes.
const maxValueLen = 100

// shorten cuts s to maxValueLen bytes (on a rune boundary) and marks the cut, so that a
// huge bad value does not make a huge error message.
func shorten(s string) string {
	if len(s) <= maxValueLen {
		return s
	}
	cut := maxValueLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func sortedKeys(m map[Check]Mode) []Check {
	keys := make([]Check, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// hostEntry is a parsed registries entry, or a parsed registry host: host in lower case
// (an IP address in canonical form, without brackets), port ("" when absent), and whether
// the entry was "*.host".
type hostEntry struct {
	host     string
	port     string
	wildcard bool
}

// parseHostEntry parses a registries entry: host[:port] or *.domain[:port], where host is a
// DNS name, an IPv4 address or a bracketed IPv6 address.
func parseHostEntry(s string) (hostEntry, error) {
	if s == "" {
		return hostEntry{}, errors.New("must not be empty")
	}
	if strings.Contains(s, "://") {
		return hostEntry{}, errors.New("must be host[:port], without a scheme")
	}
	if strings.Contains(s, "/") {
		return hostEntry{}, errors.New("must be host[:port], without a path")
	}
	var e hostEntry
	rest := strings.ToLower(s)
	if r, ok := strings.CutPrefix(rest, "*."); ok {
		e.wildcard, rest = true, r
	}
	host, port, err := splitHostPort(rest)
	if err != nil {
		return hostEntry{}, err
	}
	if ip := net.ParseIP(host); ip != nil {
		if e.wildcard {
			return hostEntry{}, errors.New(`"*." must be followed by a domain name, not an IP address`)
		}
		host = ip.String()
	} else if msgs := content.IsDNS1123Subdomain(host); len(msgs) > 0 {
		return hostEntry{}, fmt.Errorf("must be host[:port] or *.domain[:port]: %s", strings.Join(msgs, "; "))
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || strings.Trim(port, "0123456789") != "" || n < 1 || n > 65535 {
			return hostEntry{}, fmt.Errorf("port %q must be a number between 1 and 65535", port)
		}
		port = strconv.Itoa(n)
	}
	e.host, e.port = host, port
	return e, nil
}

// splitHostPort splits host[:port] or [ipv6][:port]; port is "" when absent.
func splitHostPort(s string) (host, port string, err error) {
	if r, ok := strings.CutPrefix(s, "["); ok {
		host, rest, found := strings.Cut(r, "]")
		if !found {
			return "", "", errors.New(`missing "]" after an IPv6 address`)
		}
		if ip := net.ParseIP(host); ip == nil || ip.To4() != nil {
			return "", "", errors.New("brackets must hold an IPv6 address")
		}
		if rest == "" {
			return host, "", nil
		}
		port, ok := strings.CutPrefix(rest, ":")
		if !ok || port == "" {
			return "", "", errors.New(`"]" must be followed by ":port" or nothing`)
		}
		return host, port, nil
	}
	switch strings.Count(s, ":") {
	case 0:
		return s, "", nil
	case 1:
		host, port, _ := strings.Cut(s, ":")
		if port == "" {
			return "", "", errors.New(`":" must be followed by a port`)
		}
		return host, port, nil
	}
	return "", "", errors.New("an IPv6 address must be in brackets, e.g. [fd00::1]:5000")
}

// validMatchImage checks a nodeCredentials entry: a credential provider matchImages pattern,
// host[:port][/path] without scheme, whose host parts are path.Match patterns.
func validMatchImage(pat string) error {
	if pat == "" {
		return errors.New("must not be empty")
	}
	if strings.Contains(pat, "://") {
		return errors.New("must not have a scheme")
	}
	u, err := url.Parse("https://" + pat)
	if err != nil || u.Host == "" {
		return errors.New("must be host[:port][/path], as a credential provider's matchImages")
	}
	host := u.Hostname()
	for _, part := range strings.Split(host, ".") {
		if _, err := path.Match(part, ""); err != nil || part == "" {
			return fmt.Errorf("host part %q is not a glob pattern", part)
		}
	}
	return nil
}
