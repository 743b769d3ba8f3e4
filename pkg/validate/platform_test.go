package validate

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestClosestTags(t *testing.T) {
	tags := []string{"1.25.0", "1.26.0", "1.26.1", "stable", "latest", "alpine"}
	tests := []struct {
		want string
		n    int
		out  []string
	}{
		{"1.26.2", 3, []string{"1.26.1", "1.26.0", "1.25.0"}},
		{"stabel", 1, []string{"stable"}},
		{"completely-different-name", 3, nil},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if diff := cmp.Diff(tc.out, closestTags(tc.want, tags, tc.n), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
