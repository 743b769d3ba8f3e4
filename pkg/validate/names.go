package validate

import (
	"errors"

	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/apimachinery/pkg/util/version"

	"github.com/pullgate/pullgate/pkg/lookup"
)

// registryHost is the registry as users write it: docker.io, not index.docker.io.
func registryHost(repo name.Repository) string {
	if host := repo.RegistryStr(); host != name.DefaultRegistry {
		return host
	}
	return "docker.io"
}

// familiarRepo is host/repository as users write it.
func familiarRepo(repo name.Repository) string {
	return registryHost(repo) + "/" + repo.RepositoryStr()
}

// familiarName is the full normalised reference (docker.io/library/nginx:latest), the form
// the policy's exemptImages patterns match.
func familiarName(ref name.Reference) string {
	repo := familiarRepo(ref.Context())
	if d, ok := ref.(name.Digest); ok {
		return repo + "@" + d.DigestStr()
	}
	return repo + ":" + ref.Identifier()
}

func shortDigest(d string) string { return truncate(d, len("sha256:")+12) }

// truncate keeps messages inside kubectl's warning budget however long the input.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// cause is the part of a lookup error worth showing a user, bounded.
func cause(err error) string {
	var le *lookup.Error
	if errors.As(err, &le) {
		s := le.Kind.String()
		if le.Err != nil {
			s += ": " + le.Err.Error()
		}
		return truncate(s, 100)
	}
	return truncate(err.Error(), 100)
}

// maxTagLength is the longest tag the distribution spec allows
// ("[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"); a longer one in a listing cannot be pulled, so it is
// never suggested, and skipping it keeps the work per tag bounded.
const maxTagLength = 128

// Which kind of suggestion suggestTags made, as the fix text says it.
const (
	suggestClosest  = "closest"
	suggestNewest   = "newest"
	suggestExisting = "existing"
)

// suggestTags chooses the existing tags a TagNotFound fix suggests instead of want: up to n
// of those closest to it when any is close (a typo: closestTags), otherwise the n newest
// by version order (newestTags), otherwise, when no tag reads as a version, n of them
// (reverse lexical order, which puts date-stamped tags newest first). kind says which; it is
// "" when tags is empty. The work is linear in len(tags): each tag costs at most one bounded
// edit distance and one version parse.
func suggestTags(want string, tags []string, n int) (kind string, out []string) {
	if out := closestTags(want, tags, n); len(out) > 0 {
		return suggestClosest, out
	}
	if out := newestTags(tags, n); len(out) > 0 {
		return suggestNewest, out
	}
	for _, t := range tags {
		if len(t) <= maxTagLength {
			out = insertBounded(out, t, n, func(a, b string) bool { return a > b })
		}
	}
	if len(out) == 0 {
		return "", nil
	}
	return suggestExisting, out
}

// closestTags returns up to n of tags nearest to want by edit distance, nearest first.
func closestTags(want string, tags []string, n int) []string {
	type scored struct {
		tag  string
		dist int
	}
	better := func(a, b scored) bool {
		if a.dist != b.dist {
			return a.dist < b.dist
		}
		return a.tag > b.tag // newer-looking versions first on ties
	}
	var best []scored
	for _, t := range tags {
		if len(t) > maxTagLength {
			continue
		}
		// Beyond half the length a suggestion is noise, not a typo.
		limit := max(len(want), len(t))/2 + 1
		if d, ok := boundedEditDistance(want, t, limit); ok {
			best = insertBounded(best, scored{t, d}, n, better)
		}
	}
	out := make([]string, len(best))
	for i, s := range best {
		out[i] = s.tag
	}
	return out
}

// newestTags returns up to n of the tags that read as versions, newest first. A tag reads as
// a version when apimachinery's util/version parses it: strictly as semver (v1.2.3,
// 1.3.0-rc.1: pre-releases order before their release) or else generically (1.27, v1.2.3.4,
// 1.27.3-alpine: two or more numbers, the rest ignored). Tags of the same version are
// ordered plain first (1.27.3 before 1.27.3-alpine), then in reverse lexical order.
func newestTags(tags []string, n int) []string {
	type parsed struct {
		tag string
		v   *version.Version
	}
	newer := func(a, b parsed) bool {
		switch {
		case a.v.GreaterThan(b.v):
			return true
		case b.v.GreaterThan(a.v):
			return false
		case len(a.tag) != len(b.tag):
			return len(a.tag) < len(b.tag)
		}
		return a.tag > b.tag
	}
	var best []parsed
	for _, t := range tags {
		if len(t) > maxTagLength || !startsLikeVersion(t) {
			continue
		}
		v, err := version.ParseSemantic(t)
		if err != nil {
			if v, err = version.ParseGeneric(t); err != nil {
				continue
			}
		}
		best = insertBounded(best, parsed{t, v}, n, newer)
	}
	out := make([]string, len(best))
	for i, p := range best {
		out[i] = p.tag
	}
	return out
}

// startsLikeVersion reports whether t starts as every version does, with a digit or a "v"
// and a digit: a cheap test that spares most other tags the parsers' regular expressions.
func startsLikeVersion(t string) bool {
	if len(t) > 0 && t[0] == 'v' {
		t = t[1:]
	}
	return len(t) > 0 && t[0] >= '0' && t[0] <= '9'
}

// insertBounded inserts x into best, which holds at most n elements ordered by before, and
// drops what falls past n: a top-n selection in O(n) per element, instead of sorting every
// tag of a long listing.
func insertBounded[T any](best []T, x T, n int, before func(a, b T) bool) []T {
	if n <= 0 {
		return best
	}
	i := len(best)
	for i > 0 && before(x, best[i-1]) {
		i--
	}
	if i >= n {
		return best
	}
	if len(best) < n {
		best = append(best, x)
	}
	copy(best[i+1:], best[i:len(best)-1])
	best[i] = x
	return best
}

// boundedEditDistance is the Levenshtein distance of a and b when it is at most limit
// (ok true); it gives up as soon as the distance must exceed limit: when the lengths differ
// by more, or every entry of a row of the table does.
func boundedEditDistance(a, b string, limit int) (dist int, ok bool) {
	if d := len(a) - len(b); d > limit || -d > limit {
		return 0, false
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin > limit {
			return 0, false
		}
		prev, cur = cur, prev
	}
	if prev[len(b)] > limit {
		return 0, false
	}
	return prev[len(b)], true
}
