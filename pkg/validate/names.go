package validate

import (
	"errors"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

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

// closestTags returns up to n of tags nearest to want by edit distance, nearest first.
func closestTags(want string, tags []string, n int) []string {
	type scored struct {
		tag  string
		dist int
	}
	var cands []scored
	for _, t := range tags {
		d := editDistance(want, t)
		// Beyond half the length a suggestion is noise, not a typo.
		if d <= max(len(want), len(t))/2+1 {
			cands = append(cands, scored{t, d})
		}
	}
	slices.SortFunc(cands, func(a, b scored) int {
		if a.dist != b.dist {
			return a.dist - b.dist
		}
		return strings.Compare(b.tag, a.tag) // newer-looking versions first on ties
	})
	var out []string
	for i := 0; i < len(cands) && i < n; i++ {
		out = append(out, cands[i].tag)
	}
	return out
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
