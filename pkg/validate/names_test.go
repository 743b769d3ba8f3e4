package validate

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestSuggestTags(t *testing.T) {
	tests := []struct {
		desc     string
		want     string
		tags     []string
		wantKind string
		wantOut  []string
	}{
		{"a typo gets the closest tags", "v1.2.5", []string{"v1.2.3", "v1.2.4", "main"}, suggestClosest, []string{"v1.2.4", "v1.2.3"}},
		{"no close tag gets the newest versions", "v999", []string{"v1.2.3", "v1.2.4"}, suggestNewest, []string{"v1.2.4", "v1.2.3"}},
		{"versions compare as numbers, not strings", "release-candidate",
			[]string{"1.9.0", "1.10.0", "1.10.1", "1.2", "latest", "main"}, suggestNewest, []string{"1.10.1", "1.10.0", "1.9.0"}},
		{"a pre-release comes before its release", "nightly-build-x",
			[]string{"2.0.0-rc.1", "2.0.0", "1.9.9", "2.0.0-rc.2"}, suggestNewest, []string{"2.0.0", "2.0.0-rc.2", "2.0.0-rc.1"}},
		// As semver has it, the rest after "-" is a pre-release, ordered before the release.
		{"flavours of one version: the plain one first", "something-else",
			[]string{"1.27.3-alpine", "1.27.3", "1.27.3-bookworm", "1.26.0"}, suggestNewest, []string{"1.27.3", "1.27.3-bookworm", "1.27.3-alpine"}},
		{"tags that read as no version: some of them", "v999",
			[]string{"2024-01-05", "2024-03-11", "edge", "stable"}, suggestExisting, []string{"stable", "edge", "2024-03-11"}},
		{"a tag too long to pull is never suggested", "v999",
			[]string{"v1.0.0", "v9." + strings.Repeat("9", 200)}, suggestNewest, []string{"v1.0.0"}},
		{"no tags", "v1", nil, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			kind, out := suggestTags(tc.want, tc.tags, 3)
			if kind != tc.wantKind {
				t.Errorf("kind = %q, want %q", kind, tc.wantKind)
			}
			if diff := cmp.Diff(tc.wantOut, out, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestSuggestTagsIsBounded: a listing of 100,000 tags (build numbers, versions and long
// junk, none close to the tag asked for) costs linear work, not a sort or a full edit
// distance per tag.
func TestSuggestTagsIsBounded(t *testing.T) {
	var tags []string
	for i := range 100_000 {
		switch i % 3 {
		case 0:
			tags = append(tags, fmt.Sprintf("build-%06d", i))
		case 1:
			tags = append(tags, fmt.Sprintf("v%d.%d.%d", i/1000, i/10%100, i%10))
		default:
			tags = append(tags, strings.Repeat("x", maxTagLength-8)+fmt.Sprintf("%08d", i))
		}
	}
	// How long it takes is BenchmarkSuggestTags's business: a timed unit test fails on a
	// loaded machine, not on slow code.
	kind, out := suggestTags("release-2024", tags, 3)
	if kind != suggestNewest || !cmp.Equal(out, []string{"v99.99.7", "v99.99.4", "v99.99.1"}) {
		t.Errorf("got %s %q, want the newest three versions", kind, out)
	}
}

func BenchmarkSuggestTags(b *testing.B) {
	var tags []string
	for i := range tagListLimit {
		tags = append(tags, fmt.Sprintf("1.%d.%d", i/10, i%10))
	}
	for b.Loop() {
		suggestTags("v999", tags, 3)
	}
}
