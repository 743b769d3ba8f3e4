package testregistry

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// DeleteTag deletes the tag repo:tag (the manifest stays under its digest), as deleting a
// tag in a registry's UI does.
func (r *Registry) DeleteTag(t testing.TB, repo, tag string) {
	t.Helper()
	ref, err := name.NewTag(strings.TrimPrefix(r.push.URL, "http://") + "/" + repo + ":" + tag)
	if err != nil {
		t.Fatalf("parsing tag reference: %v", err)
	}
	if err := remote.Delete(ref); err != nil {
		t.Fatalf("deleting %s: %v", ref, err)
	}
}
